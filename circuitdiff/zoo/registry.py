"""Where the bundled zoo models live. Torch-free (the service lists them)."""

from __future__ import annotations

from pathlib import Path

from ..spec import ZOO_MODELS

ZOO_DIR = Path(__file__).resolve().parent / "models"
TRAINED = ("gpt-teacher", "gpt-student", "bert-teacher", "distilbert-student")
RANDOM = ("gpt2-small-random", "distilgpt2-random")


def zoo_path(name: str) -> Path:
    """Directory of a trained zoo model (``zoo:NAME`` without the prefix)."""
    if name not in TRAINED:
        raise KeyError(name)
    return ZOO_DIR / name


def list_zoo() -> list[dict]:
    return [
        {"id": f"zoo:{n}", "description": d, "available": n in RANDOM or (ZOO_DIR / n / "config.json").exists()}
        for n, d in ZOO_MODELS.items()
    ]
