"""Where the bundled zoo models live. Torch-free (the service lists them)."""

from __future__ import annotations

from pathlib import Path

ZOO_DIR = Path(__file__).resolve().parent / "models"
TRAINED = ("gpt-teacher", "gpt-student", "bert-teacher", "distilbert-student")
RANDOM = ("gpt2-small-random", "distilgpt2-random")

# Shapes of the random benchmark models (GPT-2 small and DistilGPT2), built at load time.
RANDOM_SHAPES: dict[str, dict[str, int]] = {
    "gpt2-small-random": {"n_layer": 12, "n_head": 12, "n_embd": 768, "vocab_size": 50257, "n_positions": 1024},
    "distilgpt2-random": {"n_layer": 6, "n_head": 12, "n_embd": 768, "vocab_size": 50257, "n_positions": 1024},
}
# The pairs a comparison usually takes: teacher -> its distilled student.
PAIRS: dict[str, str] = {
    "gpt-teacher": "gpt-student",
    "bert-teacher": "distilbert-student",
    "gpt2-small-random": "distilgpt2-random",
}


def _bare(name: str) -> str:
    return name.removeprefix("zoo:")


def is_random(name: str) -> bool:
    """True for zoo models with seeded random weights built at load time (``zoo:`` prefix optional)."""
    return _bare(name) in RANDOM


def is_masked_lm(name: str) -> bool:
    """True for the BERT-family zoo models (cloze / [MASK] task form)."""
    return _bare(name) in ("bert-teacher", "distilbert-student")


def zoo_path(name: str) -> Path:
    """Directory of a trained zoo model (``zoo:NAME`` without the prefix)."""
    if name not in TRAINED:
        raise KeyError(name)
    return ZOO_DIR / name


def list_zoo() -> list[dict]:
    from ..spec import ZOO_MODELS  # imported here so the zoo itself does not need pydantic

    return [
        {"id": f"zoo:{n}", "description": d, "available": n in RANDOM or (ZOO_DIR / n / "config.json").exists()}
        for n, d in ZOO_MODELS.items()
    ]
