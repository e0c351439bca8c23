"""Shared fixtures: real tiny models, no mocks.

``tiny_gpt_dir`` is a GPT-2-architecture checkpoint built from a config (seeded random weights)
plus a word-level byte-level tokenizer over every word the bundled tasks use, saved as a real
local checkpoint directory (config.json + model.safetensors + tokenizer files). It never depends on
the zoo being trained; tests that need trained weights call ``require_zoo``.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # build machines have no hub: fail fast, never hang
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# Tests never write outside temporary directories: the activation cache, matplotlib's font cache,
# Hugging Face's and Chromium's caches all go to one directory removed when the session ends. Set
# before anything imports matplotlib; subprocesses (CLI, API, workers) inherit it.
_SCRATCH = Path(tempfile.mkdtemp(prefix="circuitdiff-tests-"))
atexit.register(shutil.rmtree, _SCRATCH, ignore_errors=True)
for _var, _sub in (("CIRCUITDIFF_CACHE_DIR", "activation-cache"), ("MPLCONFIGDIR", "matplotlib"),
                   ("HF_HOME", "huggingface"), ("XDG_CACHE_HOME", "xdg-cache"), ("XDG_CONFIG_HOME", "xdg-config"),
                   ("XDG_DATA_HOME", "xdg-data")):
    os.environ[_var] = str(_SCRATCH / _sub)

REPO = Path(__file__).resolve().parent.parent
pytest_plugins = ["tests.service_fixtures"]  # real Redis / API / worker fixtures for the service tests


def task_words() -> list[str]:
    """Every byte-level pre-token of every task prompt and answer (and the bare words)."""
    from tokenizers import pre_tokenizers

    from circuitdiff.tasks import generate, wordlists

    texts: list[str] = []
    for it in generate.ioi_items(300, seed=1, split="all"):
        texts += [it.prompt, it.corrupted_prompt]
    for members in wordlists.SEQ_MEMBERS:
        for frame in wordlists.SEQ_VERBS:
            for it in generate.sequence_items(40, seed=1, split="all", members=members, frame=frame):
                texts += [it.prompt, it.corrupted_prompt]
    for facts in ("zoo", "world"):
        for it in generate.qa_items(80, seed=1, split="all", facts=facts):
            texts += [it.prompt, it.corrupted_prompt]
    words = set(wordlists.NAMES) | set(wordlists.SEQ_NOUNS) | set(wordlists.NUMERALS) | set(wordlists.NUMBER_WORDS)
    words |= set(wordlists.MONTHS) | set(wordlists.QA_CAPITALS) | {c for _, c in wordlists.WORLD_FACTS}
    texts += [" " + w for w in words] + sorted(words)
    pre = pre_tokenizers.ByteLevel(add_prefix_space=False)
    pieces = {p for t in texts for p, _ in pre.pre_tokenize_str(t)}
    return sorted(pieces)


def build_word_tokenizer(extra: tuple[str, ...] = ()):
    """Byte-level BPE (GPT-2 style) trained until every task word is one token; any other word
    still tokenises, into several pieces, as with a real tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    eot = "<|endoftext|>"
    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=5000, min_frequency=1, special_tokens=[eot], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    words = [w.replace("Ġ", " ") for w in task_words()] + [" " + w for w in extra]
    raw.train_from_iterator(words * 3, trainer=trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=raw, bos_token=eot, eos_token=eot, unk_token=eot, pad_token=eot, model_max_length=128
    )
    for w in task_words():
        assert len(tok(w.replace("Ġ", " "), add_special_tokens=False)["input_ids"]) == 1, w
    return tok


def build_tiny_gpt(tokenizer, seed: int = 0, n_layer: int = 2, n_head: int = 4, n_embd: int = 32):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = GPT2Config(
        vocab_size=len(tokenizer), n_positions=128, n_embd=n_embd, n_layer=n_layer, n_head=n_head,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return GPT2LMHeadModel(cfg).eval()


def save_tiny_gpt(d: Path, seed: int = 0, n_layer: int = 2, extra_words: tuple[str, ...] = ()) -> Path:
    """Write a tiny GPT-2 checkpoint (config, safetensors weights, task-word tokenizer) into ``d``."""
    tok = build_word_tokenizer(extra=extra_words)
    build_tiny_gpt(tok, seed=seed, n_layer=n_layer).save_pretrained(d, safe_serialization=True)
    tok.save_pretrained(d)
    return d


# The real Llama pair's ratios (Llama-3.1-8B -> Minitron-4B-Depth): 4 query heads per key/value
# head (32 / 8), the student half the teacher's depth (32 -> 16 layers).
LLAMA_RATIOS = {"heads_per_kv": 4, "student_depth": 0.5}


def build_tiny_llama(tokenizer, seed: int = 0, n_layer: int = 4, n_head: int = 8, d: int = 64, loud: float = 1.0):
    """A random ``LlamaForCausalLM`` (GQA with the real models' 4:1 query : key/value ratio, RoPE,
    RMSNorm, SwiGLU), weights outside the norms scaled by ``loud`` so single ablations visibly move
    the logit difference."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=d, intermediate_size=2 * d, num_hidden_layers=n_layer,
        num_attention_heads=n_head, num_key_value_heads=n_head // LLAMA_RATIOS["heads_per_kv"],
        max_position_embeddings=128, tie_word_embeddings=False, attn_implementation="eager",
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" not in name:
                p.mul_(loud)
    return model


def save_tiny_llama(d: Path, seed: int = 0, n_layer: int = 4, extra_words: tuple[str, ...] = (),
                    keep_layers: list[int] | None = None) -> Path:
    """Write a tiny Llama checkpoint into ``d``; ``keep_layers`` depth-prunes it the Minitron way
    (the teacher's blocks at those indices, embeddings / norm / unembedding kept)."""
    import torch

    tok = build_word_tokenizer(extra=extra_words)
    model = build_tiny_llama(tok, seed=seed, n_layer=n_layer, loud=3.0)
    if keep_layers is not None:
        model.model.layers = torch.nn.ModuleList([model.model.layers[i] for i in keep_layers])
        for i, layer in enumerate(model.model.layers):
            layer.self_attn.layer_idx = i
        model.config.num_hidden_layers = len(keep_layers)
        model.config.layer_types = model.config.layer_types[: len(keep_layers)] if getattr(
            model.config, "layer_types", None) else None
    model.save_pretrained(d, safe_serialization=True)
    tok.save_pretrained(d)
    return d


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory) -> Path:
    """A 4-layer, 8-query-head / 2-key-value-head Llama checkpoint (random weights, task-word tokenizer)."""
    return save_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_llama_student_dir(tmp_path_factory) -> Path:
    """The tiny Llama depth-pruned to half its layers (blocks 0 and 3), as Minitron-Depth prunes 32 -> 16."""
    return save_tiny_llama(tmp_path_factory.mktemp("tiny-llama-student"), keep_layers=[0, 3])


@pytest.fixture(scope="session")
def tiny_llama_other_vocab_dir(tmp_path_factory) -> Path:
    """A tiny Llama whose tokenizer has extra words: pairs with the GPT-2 fixtures need word alignment."""
    return save_tiny_llama(tmp_path_factory.mktemp("tiny-llama-other"), seed=3, extra_words=("zyx", "qwv"))


@pytest.fixture(scope="session")
def tiny_gpt_dir(tmp_path_factory) -> Path:
    """A 2-layer x 4-head GPT-2 checkpoint directory (random weights, task-word tokenizer)."""
    return save_tiny_gpt(tmp_path_factory.mktemp("tiny-gpt"))


@pytest.fixture(scope="session")
def tiny_gpt_dir_b(tmp_path_factory) -> Path:
    """A different tiny GPT-2 (3 layers, other seed) with the same tokenizer: a 'student'."""
    return save_tiny_gpt(tmp_path_factory.mktemp("tiny-gpt-b"), seed=1, n_layer=3)


@pytest.fixture(scope="session")
def tiny_gpt_other_vocab_dir(tmp_path_factory) -> Path:
    """A tiny GPT-2 whose tokenizer has extra words: a different vocabulary."""
    return save_tiny_gpt(tmp_path_factory.mktemp("tiny-gpt-other"), seed=2, extra_words=("zyx", "qwv"))


@pytest.fixture(scope="session")
def loud_gpt_dir(tmp_path_factory, tiny_gpt_dir) -> Path:
    """The tiny checkpoint with weights x3 (LayerNorms kept): distinct heads, single ablations move
    the logit difference visibly."""
    import torch
    from transformers import GPT2LMHeadModel

    d = tmp_path_factory.mktemp("loud-gpt")
    m = GPT2LMHeadModel.from_pretrained(tiny_gpt_dir)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if "ln" not in name:
                p.mul_(3.0)
    m.save_pretrained(d, safe_serialization=True)
    for f in tiny_gpt_dir.iterdir():
        if f.name.startswith(("tokenizer", "special_tokens")):
            (d / f.name).write_bytes(f.read_bytes())
    return d


def causal_batch(tok, texts):
    """BOS + each text, right-padded: a :class:`circuitdiff.models.adapter.Batch` read at the last
    real token."""
    import torch

    from circuitdiff.models.adapter import Batch

    ids = [[tok.bos_token_id] + tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    T = max(map(len, ids))
    tokens = torch.full((len(ids), T), tok.pad_token_id)
    mask = torch.zeros(len(ids), T, dtype=torch.long)
    for i, s in enumerate(ids):
        tokens[i, : len(s)] = torch.tensor(s)
        mask[i, : len(s)] = 1
    return Batch(tokens, mask, mask.sum(1) - 1)


def require_zoo(*names: str) -> None:
    """The trained zoo models are committed: a missing one is a broken checkout, so fail, never skip."""
    from circuitdiff.catalogue import ZOO_DIR

    missing = [n for n in names if not (ZOO_DIR / n / "model.safetensors").is_file()]
    if missing:
        pytest.fail(f"zoo models {missing} are missing from circuitdiff/zoo/models (retrain with `make zoo`)")


@pytest.fixture
def zoo_gpt_pair():
    """Skip unless the trained zoo GPT pair is present (it is trained by `make zoo`)."""
    require_zoo("gpt-teacher", "gpt-student")
    return "zoo:gpt-teacher", "zoo:gpt-student"


class CliRun:
    """What one in-process ``circuitdiff`` command returned and printed."""

    def __init__(self, returncode: int, stdout: str, stderr: str):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


@pytest.fixture
def cli(capsys, monkeypatch):
    """Run ``circuitdiff ARGS`` in this process (``circuitdiff.cli.main``), optionally in ``cwd``.

    For tests whose subject is what a command does, not how a new Python process starts: the
    subprocess path is covered once by tests/engine/test_cli.py. A user error is exit 2 with one line."""
    from circuitdiff.cli import main

    def run(*args: str, cwd: Path | None = None) -> CliRun:
        if cwd is not None:
            monkeypatch.chdir(cwd)
        capsys.readouterr()
        code = main(list(args))
        out, err = capsys.readouterr()
        return CliRun(code, out, err)

    return run
