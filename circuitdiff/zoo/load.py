"""Load zoo models as (hf_model, tokenizer): trained ones from their directories, random ones built.

Imports torch and transformers; :mod:`circuitdiff.zoo.registry` is the torch-free side. Weights are
read from safetensors only and no remote code is ever run.
"""

from __future__ import annotations

from pathlib import Path

from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, AutoConfig, AutoTokenizer, PreTrainedModel

from ..errors import ModelLoadError, UnknownModelError
from .registry import is_random, zoo_path

MASKED_LM_TYPES = ("bert", "distilbert")


def family(model: PreTrainedModel) -> str:
    """'gpt' (next-token prediction) or 'bert' (masked-LM cloze)."""
    return "bert" if model.config.model_type in MASKED_LM_TYPES else "gpt"


def load_model_dir(path: str | Path):
    """A trained zoo model directory -> (hf_model in eval mode, tokenizer)."""
    path = Path(path)
    if not (path / "config.json").exists() or not (path / "model.safetensors").exists():
        raise ModelLoadError(f"no zoo model at {path} (config.json and model.safetensors expected)")
    config = AutoConfig.from_pretrained(path, trust_remote_code=False)
    auto = AutoModelForMaskedLM if config.model_type in MASKED_LM_TYPES else AutoModelForCausalLM
    model = auto.from_pretrained(path, use_safetensors=True, trust_remote_code=False)
    tok = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    return model.eval(), tok


def load_zoo(name: str, seed: int = 0):
    """``zoo:NAME`` (prefix optional) -> (hf_model, tokenizer)."""
    name = name.removeprefix("zoo:")
    if is_random(name):
        from .random_models import build_random

        return build_random(name, seed=seed)
    try:
        path = zoo_path(name)
    except KeyError:
        raise UnknownModelError(f"unknown zoo model {name!r}", field="model") from None
    return load_model_dir(path)
