"""Load zoo models as (hf_model, tokenizer): trained ones from their directories, random ones built.

Imports torch and transformers; the zoo's torch-free side (names, descriptions, paths) is
:mod:`circuitdiff.catalogue`. Weights are read from safetensors only and no remote code is ever run.
"""

from __future__ import annotations

from pathlib import Path

from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer

from ..catalogue import zoo_model
from ..errors import ModelLoadError, UnknownModelError
from ..architectures import family_of_model_type


def load_model_dir(path: str | Path):
    """A trained zoo model directory -> (hf_model in eval mode, tokenizer)."""
    path = Path(path)
    if not (path / "config.json").exists() or not (path / "model.safetensors").exists():
        raise ModelLoadError(f"no zoo model at {path} (config.json and model.safetensors expected)",
                             fix="retrain the zoo with `make zoo`")
    config = AutoConfig.from_pretrained(path, trust_remote_code=False)
    auto = AutoModelForMaskedLM if family_of_model_type(config.model_type) == "masked" else AutoModelForCausalLM
    model = auto.from_pretrained(path, use_safetensors=True, trust_remote_code=False)
    tok = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    return model.eval(), tok


def load_zoo(name: str, seed: int = 0):
    """``zoo:NAME`` (prefix optional) -> (hf_model, tokenizer)."""
    try:
        entry = zoo_model(name)
    except KeyError:
        raise UnknownModelError(f"unknown zoo model {name!r}", field="model") from None
    if not entry.trained:
        from .random_models import build_random

        return build_random(entry.name, seed=seed)
    return load_model_dir(entry.path)
