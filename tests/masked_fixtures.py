"""Tiny masked-LM checkpoints for the issue #4 tests: a BERT "teacher" and a DistilBERT "student"
built from configs (seeded random weights) with one small uncased WordPiece tokenizer over the
task words, saved as real local checkpoint directories (config.json + model.safetensors +
tokenizer files). They never depend on the zoo being trained.

Import the fixtures into a test module: ``from tests.masked_fixtures import tiny_bert_dir``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

# 10x the HF default: random heads attend unevenly and single ablations move the logits visibly
INIT_RANGE = 0.2


def build_wordpiece_tokenizer():
    """The zoo's WordPiece recipe on a small corpus: every task word is one token."""
    from circuitdiff.zoo import corpus
    from circuitdiff.zoo.tokenizer import build_bert_tokenizer

    docs = corpus.build_corpus(0, corpus.CorpusSize(ioi=200, seq_per_kind=20, qa_repeats=1, filler=100))
    return build_bert_tokenizer(corpus.tokenizer_texts(docs, repeats=3))


def build_tiny_bert(tok, seed: int = 0, n_layers: int = 3, n_heads: int = 4, d_model: int = 32):
    import torch
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(seed)
    cfg = BertConfig(
        vocab_size=len(tok), hidden_size=d_model, num_hidden_layers=n_layers, num_attention_heads=n_heads,
        intermediate_size=2 * d_model, max_position_embeddings=128, type_vocab_size=1,
        pad_token_id=tok.pad_token_id, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
        initializer_range=INIT_RANGE,
    )
    return BertForMaskedLM(cfg).eval()


def build_tiny_distilbert(tok, seed: int = 1, n_layers: int = 2, n_heads: int = 4, d_model: int = 32):
    import torch
    from transformers import DistilBertConfig, DistilBertForMaskedLM

    torch.manual_seed(seed)
    cfg = DistilBertConfig(
        vocab_size=len(tok), dim=d_model, n_layers=n_layers, n_heads=n_heads, hidden_dim=2 * d_model,
        max_position_embeddings=128, dropout=0.0, attention_dropout=0.0, pad_token_id=tok.pad_token_id,
        initializer_range=INIT_RANGE,
    )
    return DistilBertForMaskedLM(cfg).eval()


@pytest.fixture(scope="session")
def wordpiece_tok():
    return build_wordpiece_tokenizer()


def _save(model, tok, d: Path) -> Path:
    model.save_pretrained(d, safe_serialization=True)
    tok.save_pretrained(d)
    return d


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory, wordpiece_tok) -> Path:
    """A 3-layer x 4-head BertForMaskedLM checkpoint directory (random weights)."""
    return _save(build_tiny_bert(wordpiece_tok), wordpiece_tok, tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def tiny_distilbert_dir(tmp_path_factory, wordpiece_tok) -> Path:
    """A 2-layer x 4-head DistilBertForMaskedLM with the same tokenizer: the 'student'."""
    return _save(build_tiny_distilbert(wordpiece_tok), wordpiece_tok, tmp_path_factory.mktemp("tiny-distilbert"))
