"""Text-level generators for the built-in tasks (docs/method.md §Tasks).

Pure Python, no tokenizer: each generator yields :class:`TextItem` records (clean prompt, answer,
distractor, corrupted prompt, cloze form). Tokenisation, single-token checks and batching live in
the task layer on top of this. The zoo's training corpus uses the same generators with
``split="train"``; evaluation and analyses use ``split="eval"``, which holds out a fixed share of
name / noun combinations so that evaluation prompts are unseen in training.

Answers and distractors are bare words ("Mary", "5"); the decoder task form prepends the space that
follows the prompt, the masked-LM form puts ``[MASK]`` where the answer goes.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Iterator, Literal

from . import wordlists

Split = Literal["train", "eval", "all"]
MASK = "[MASK]"
HOLDOUT_PERCENT = 20


@dataclass(frozen=True)
class TextItem:
    prompt: str  # decoder form: the answer is the next token, " " + answer
    answer: str
    distractor: str
    corrupted_prompt: str  # same template, answer-determining words replaced (same token count)
    masked_prompt: str  # masked-LM form: MASK stands where the answer goes
    corrupted_masked_prompt: str
    meta: dict
    kind: Literal["answers", "text"] = "answers"  # text: a plain text in ``prompt`` (no answer), corrupted in corrupted_prompt


def in_split(key: tuple, split: Split) -> bool:
    """Deterministic hold-out: HOLDOUT_PERCENT% of combination keys are 'eval', the rest 'train'."""
    if split == "all":
        return True
    h = int(hashlib.sha1(repr(key).encode()).hexdigest()[:8], 16) % 100
    return (h < HOLDOUT_PERCENT) == (split == "eval")


def _cloze(prompt: str) -> str:
    return f"{prompt} {MASK}."


# --------------------------------------------------------------------------- IOI
def ioi_items(
    n: int, seed: int = 0, split: Split = "eval", templates: Literal["mixed", "ABBA", "BABA"] = "mixed"
) -> list[TextItem]:
    """IOI prompts; corrupted set = the three name slots replaced by random other names ("ABC")."""
    rng = random.Random(f"ioi:{seed}")
    pools = {"ABBA": wordlists.IOI_TEMPLATES_ABBA, "BABA": wordlists.IOI_TEMPLATES_BABA}
    chosen = (
        [("BABA", t) for t in pools["BABA"]] + [("ABBA", t) for t in pools["ABBA"]]
        if templates == "mixed"
        else [(templates, t) for t in pools[templates]]
    )
    items: list[TextItem] = []
    guard = 0
    while len(items) < n:
        guard += 1
        if guard > 200 * n + 1000:
            raise RuntimeError("could not draw enough IOI prompts for this split")
        order, tpl = rng.choice(chosen)
        a, b = rng.sample(wordlists.NAMES, 2)
        place, obj = rng.choice(wordlists.PLACES), rng.choice(wordlists.OBJECTS)
        if not in_split(("ioi", a, b), split):
            continue
        prompt = _fill_ioi(tpl, a, b, b, place, obj)
        c, d, e = rng.sample([x for x in wordlists.NAMES if x not in (a, b)], 3)
        corrupted = _fill_ioi(tpl, c, e, d, place, obj)
        items.append(
            TextItem(
                prompt=prompt, answer=a, distractor=b, corrupted_prompt=corrupted,
                masked_prompt=_cloze(prompt), corrupted_masked_prompt=_cloze(corrupted),
                meta={"order": order, "template": tpl, "place": place, "object": obj},
            )
        )
    return items


def _fill_ioi(tpl: str, a: str, b_first: str, b_second: str, place: str, obj: str) -> str:
    # The subject appears twice; the corrupted ("ABC") form gives each slot its own random name.
    first, rest = tpl.split("{B}", 1)
    return (first + b_first + rest.replace("{B}", b_second)).format(A=a, PLACE=place, OBJECT=obj)


# --------------------------------------------------------------------------- sequence
def sequence_items(
    n: int,
    seed: int = 0,
    split: Split = "eval",
    members: Literal["numerals", "numwords", "months"] = "numerals",
    frame: Literal["done", "lost", "names"] = "done",
) -> list[TextItem]:
    """'Van done in 1. Hat done in 2. Ring done in 3. Desk done in 4. Sun done in' -> 5 vs 4.

    Starts cycle through 1..8 as in the seqcont data; corrupted prompts replace the four members by
    random members of the same kind (never the clean sequence's continuation pattern).
    """
    rng = random.Random(f"seq:{members}:{frame}:{seed}")
    seq = wordlists.SEQ_MEMBERS[members]
    verb = wordlists.SEQ_VERBS[frame]
    words = wordlists.NAMES if frame == "names" else wordlists.SEQ_NOUNS
    items: list[TextItem] = []
    guard = 0
    while len(items) < n:
        guard += 1
        if guard > 200 * n + 1000:
            raise RuntimeError("could not draw enough sequence prompts for this split")
        start = len(items) % 8  # 0-based index of s1: members s1..s5 = seq[start..start+4]
        ws = tuple(rng.sample(words, 5))
        if not in_split(("seq", frame, ws), split):
            continue
        s = seq[start : start + 5]
        prompt = _fill_seq(ws, verb, s[:4])
        while True:
            r = [rng.randrange(len(seq)) for _ in range(4)]
            if r[3] - 1 != r[2] or r[2] - 1 != r[1]:  # not itself a run ending like the clean one
                break
        corrupted = _fill_seq(ws, verb, [seq[i] for i in r])
        items.append(
            TextItem(
                prompt=prompt, answer=s[4], distractor=s[3], corrupted_prompt=corrupted,
                masked_prompt=_cloze(prompt), corrupted_masked_prompt=_cloze(corrupted),
                meta={"members": members, "frame": frame, "start": start + 1},
            )
        )
    return items


def _fill_seq(words: tuple[str, ...], verb: str, members: list[str] | tuple[str, ...]) -> str:
    clauses = [f"{w} {verb} in {m}." for w, m in zip(words[:4], members)]
    return " ".join(clauses) + f" {words[4]} {verb} in"


# --------------------------------------------------------------------------- QA
def qa_question(country: str) -> str:
    return f"Q: What is the capital of {country}? A:"


def qa_statement(country: str, capital: str) -> str:
    return f"The capital of {country} is {capital}."


def qa_items(
    n: int, seed: int = 0, split: Split = "eval", facts: Literal["zoo", "world"] = "zoo"
) -> list[TextItem]:
    """Factual questions; distractor = another fact's answer; corrupted = another country's question.

    The facts themselves are fixed (knowing them is the task); ``split`` only varies which
    distractor and corrupting country are drawn. ``n`` larger than the number of facts cycles.
    """
    rng = random.Random(f"qa:{facts}:{seed}:{split}")
    table = wordlists.ZOO_FACTS if facts == "zoo" else wordlists.WORLD_FACTS
    order = list(range(len(table)))
    rng.shuffle(order)
    items: list[TextItem] = []
    for k in range(n):
        i = order[k % len(table)]
        country, capital = table[i]
        j = rng.choice([x for x in range(len(table)) if x != i])
        other_country, other_capital = table[j]
        prompt, corrupted = qa_question(country), qa_question(other_country)
        items.append(
            TextItem(
                prompt=prompt, answer=capital, distractor=other_capital, corrupted_prompt=corrupted,
                masked_prompt=_cloze(prompt), corrupted_masked_prompt=_cloze(corrupted),
                meta={"facts": facts, "country": country},
            )
        )
    return items


def iter_all_task_kinds() -> Iterator[tuple[str, dict]]:
    """Every (task, options) combination the evaluation table reports."""
    yield "ioi", {}
    for members in wordlists.SEQ_MEMBERS:
        for frame in wordlists.SEQ_VERBS:
            yield "sequence", {"members": members, "frame": frame}
    yield "qa", {"facts": "zoo"}
