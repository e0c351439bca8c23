"""The zoo's training corpus: task sentences from the task generators plus generic filler text.

Every task sentence is the cloze form of a ``split="train"`` :class:`~circuitdiff.tasks.generate.TextItem`
with the answer filled in ("... Bob gave a drink to Mary."), so the decoder models see the answer as
the token after the prompt and the masked-LM models see it where ``masked_prompt`` has ``[MASK]``.
Evaluation draws ``split="eval"`` prompts with another seed: their name / noun combinations never
occur here. The QA facts are the exception by design: knowing the 64 invented facts *is* the task,
so every fact is stated and asked back.

Filler comes from a small grammar over the same word lists (and a few generic words), so the models
are language models over a shared vocabulary rather than lookup tables for four sentence shapes.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from ..tasks import generate, wordlists


@dataclass(frozen=True)
class Doc:
    text: str
    has_answer: bool  # the second-to-last word (before the final ".") is a task answer


@dataclass(frozen=True)
class CorpusSize:
    ioi: int = 16000
    seq_per_kind: int = 1200  # for each of the 3 member kinds x 3 frames
    qa_repeats: int = 24  # each fact: this many statements and this many questions
    filler: int = 6000


# --------------------------------------------------------------------------- filler grammar
_ADJECTIVES = ("red", "small", "old", "new", "big", "green", "quiet", "bright")
_VERBS_PAST = ("saw", "liked", "found", "cleaned", "painted", "watched", "kept", "sold")
_WEATHER = ("sunny", "cold", "warm", "rainy", "windy", "quiet")


def _filler_sentence(rng: random.Random) -> str:
    n1, n2 = rng.sample(wordlists.NAMES, 2)
    place, obj = rng.choice(wordlists.PLACES), rng.choice(wordlists.OBJECTS)
    adj, verb = rng.choice(_ADJECTIVES), rng.choice(_VERBS_PAST)
    month, word = rng.choice(wordlists.MONTHS), rng.choice(wordlists.NUMBER_WORDS)
    num = rng.choice(wordlists.NUMERALS)
    noun = rng.choice(wordlists.SEQ_NOUNS).lower()
    country, _ = rng.choice(wordlists.ZOO_FACTS)
    forms = (
        f"{n1} {verb} the {adj} {obj} at the {place}.",
        f"The {obj} was in the {place}.",
        f"{n1} and {n2} talked for a long time.",
        f"In {month}, {n1} went to the {place}.",
        f"{n1} has {word} {noun}s and {n2} has {num}.",
        f"It was a {rng.choice(_WEATHER)} day in {month}.",
        f"The {adj} {noun} is {rng.choice(_ADJECTIVES)}.",
        f"{n1} wrote a {obj} about {country}.",
        f"{n1} said that the {place} was {rng.choice(_WEATHER)}.",
        f"{n1} {verb} a {adj} {noun} in {month}.",
        f"We met {n1} at the {place} and {n2} was there too.",
        f"The number {num} comes after the number {wordlists.NUMERALS[int(num) - 2] if num != '1' else '0'}.",
    )
    return rng.choice(forms)


# --------------------------------------------------------------------------- task sentences
def _filled(item: generate.TextItem) -> str:
    # masked_prompt ends " [MASK]."; the filled cloze form is the training sentence for both families
    return item.masked_prompt.replace(generate.MASK, item.answer)


def build_corpus(seed: int = 0, size: CorpusSize = CorpusSize()) -> list[Doc]:
    """All training documents, in a deterministic order (the trainer shuffles with its own RNG)."""
    docs: list[Doc] = []
    docs += [Doc(_filled(it), True) for it in generate.ioi_items(size.ioi, seed=seed, split="train")]
    for members in wordlists.SEQ_MEMBERS:
        for frame in wordlists.SEQ_VERBS:
            items = generate.sequence_items(
                size.seq_per_kind, seed=seed, split="train", members=members, frame=frame  # type: ignore[arg-type]
            )
            docs += [Doc(_filled(it), True) for it in items]
    for _ in range(size.qa_repeats):
        for country, capital in wordlists.ZOO_FACTS:
            docs.append(Doc(generate.qa_statement(country, capital), True))
            docs.append(Doc(f"{generate.qa_question(country)} {capital}.", True))
    rng = random.Random(f"filler:{seed}")
    docs += [Doc(_filler_sentence(rng), False) for _ in range(size.filler)]
    return docs


def single_token_words() -> list[str]:
    """Every word the tasks need as one token (answers, distractors, names, members, facts)."""
    words = (
        list(wordlists.NAMES) + list(wordlists.PLACES) + list(wordlists.OBJECTS) + list(wordlists.SEQ_NOUNS)
        + list(wordlists.NUMERALS) + list(wordlists.NUMBER_WORDS) + list(wordlists.MONTHS)
        + list(wordlists.QA_COUNTRIES) + list(wordlists.QA_CAPITALS)
    )
    return list(dict.fromkeys(words))


def tokenizer_texts(docs: list[Doc], repeats: int = 50) -> list[str]:
    """Texts the tokenizers are trained on: the corpus plus every required word alone and after a
    space, repeated, so that byte-level BPE merges each of them into one token in both forms."""
    extra = []
    for w in single_token_words():
        extra += [w, f" {w}"] * repeats
    return [d.text for d in docs] + extra


HELDOUT_SEED_OFFSET = 1000  # documents of the same distribution, drawn with another seed: not trained on
HELDOUT_SIZE = CorpusSize(ioi=256, seq_per_kind=16, qa_repeats=1, filler=64)


def heldout_docs(seed: int = 0) -> list[Doc]:
    """Documents the zoo never trains on, for training-time decisions (the Llama student's pruning);
    the evaluation prompts (``split="eval"``) stay untouched."""
    return build_corpus(seed + HELDOUT_SEED_OFFSET, HELDOUT_SIZE)
