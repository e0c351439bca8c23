"""Tokenizers of the zoo, trained by the `tokenizers` library on the zoo corpus.

- GPT family: byte-level BPE as in GPT-2 (leading-space ``Ġ`` tokens, ``<|endoftext|>`` as bos, eos
  and pad, nothing prepended automatically: the engine owns the BOS policy).
- BERT family: uncased WordPiece with ``[PAD] [UNK] [CLS] [SEP] [MASK]``, shared by bert-teacher and
  distilbert-student; its vocabulary is every corpus word plus single characters.

The GPT tokenizer is trained until no pair is left to merge, on the corpus plus every task word on
its own, so every word the tasks need is one token (with and without a leading space for GPT).
:func:`check_single_tokens` asserts it; the training script and the tests call it.
"""

from __future__ import annotations

import json
import string
from collections import Counter

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import BertTokenizer, GPT2Tokenizer, PreTrainedTokenizerBase

from ..vocabulary import Family
from .corpus import single_token_words

EOT = "<|endoftext|>"
BERT_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
MAX_VOCAB = 8192  # an upper bound; training stops earlier, once every word is a single token


class TokenizerGuaranteeError(AssertionError):
    """A word the tasks need is not a single token."""


def build_gpt_tokenizer(texts: list[str]) -> GPT2Tokenizer:
    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=MAX_VOCAB, min_frequency=2, special_tokens=[EOT], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    raw.train_from_iterator(texts, trainer=trainer)
    model = json.loads(raw.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    tok = GPT2Tokenizer(
        vocab=model["vocab"], merges=merges, unk_token=EOT, bos_token=EOT, eos_token=EOT,
        pad_token=EOT, add_prefix_space=False, add_bos_token=False, model_max_length=128,
    )
    check_single_tokens(tok, "causal")
    return tok


def build_bert_tokenizer(texts: list[str]) -> BertTokenizer:
    # A word-level WordPiece vocabulary: every word that occurs at least twice is a token, and every
    # single character (plus its "##" continuation) lets any other word still be spelled out.
    # tokenizers' WordPieceTrainer is not used: it breaks frequency ties differently from run to
    # run, and the training script must be deterministic. Ids: specials first, then sorted tokens.
    normalizer = normalizers.BertNormalizer(lowercase=True)
    pre = pre_tokenizers.BertPreTokenizer()
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(w for w, _ in pre.pre_tokenize_str(normalizer.normalize_str(text)))
    chars = set(string.ascii_lowercase + string.digits + string.punctuation)
    chars |= {c for w in counts for c in w}
    tokens = {w for w, n in counts.items() if n >= 2} | chars | {f"##{c}" for c in chars}
    vocab = {t: i for i, t in enumerate(list(BERT_SPECIALS) + sorted(tokens - set(BERT_SPECIALS)))}
    tok = BertTokenizer(vocab=vocab, do_lower_case=True, model_max_length=128)
    check_single_tokens(tok, "masked")
    return tok


def answer_token(word: str, family: Family) -> str:
    """The text whose single token stands for ``word`` as an answer in this model family."""
    return f" {word}" if family == "causal" else word.lower()


def check_single_tokens(tok: PreTrainedTokenizerBase, family: Family) -> None:
    """Raise :class:`TokenizerGuaranteeError` unless every task word is exactly one token."""
    forms = [" ", ""] if family == "causal" else [""]
    bad = []
    for w in single_token_words():
        for pre in forms:
            ids = tok(pre + w, add_special_tokens=False)["input_ids"]
            if len(ids) != 1:
                bad.append((pre + w, tok.convert_ids_to_tokens(ids)))
    if bad:
        raise TokenizerGuaranteeError(f"{family} tokenizer splits task words: {bad[:10]} ({len(bad)} in all)")
    if family == "masked":
        enc = tok("to [MASK].")["input_ids"]
        if tok.mask_token_id not in enc or enc[0] != tok.cls_token_id or enc[-1] != tok.sep_token_id:
            raise TokenizerGuaranteeError(f"bert tokenizer does not frame / keep [MASK]: {enc}")
    else:
        if tok(f"{EOT}Mary")["input_ids"][0] != tok.eos_token_id or tok("Mary")["input_ids"][0] == tok.bos_token_id:
            raise TokenizerGuaranteeError("gpt tokenizer must keep <|endoftext|> and prepend nothing")
