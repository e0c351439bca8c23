"""GPT-2-small-shaped models with seeded random weights, for benchmarks only (never committed).

``zoo:gpt2-small-random`` (12 layers x 12 heads, d_model 768) and ``zoo:distilgpt2-random`` (6 x 12)
have exactly the shapes, parameter counts and cost of GPT-2 small / DistilGPT2 (vocabulary 50257,
1024 positions). Their tokenizer is the zoo GPT tokenizer: its ids are all < 50257, so every task
prompt tokenises exactly as for the trained GPT pair.
"""

from __future__ import annotations

import torch
from transformers import GPT2Config, GPT2LMHeadModel

from ..errors import UnknownModelError
from ..catalogue import ZOO, zoo_path

TOKENIZER_FROM = "gpt-teacher"


def random_config(name: str, bos_token_id: int = 50256) -> GPT2Config:
    if name not in ZOO or ZOO[name].shape is None:
        raise UnknownModelError(f"unknown random zoo model {name!r}", field="model")
    s = ZOO[name].shape
    return GPT2Config(
        vocab_size=s["vocab_size"], n_positions=s["n_positions"], n_embd=s["n_embd"], n_layer=s["n_layer"],
        n_head=s["n_head"], bos_token_id=bos_token_id, eos_token_id=bos_token_id,
    )


def build_random(name: str, seed: int = 0):
    """(GPT2LMHeadModel with seeded random init in eval mode, zoo GPT tokenizer)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(zoo_path(TOKENIZER_FROM))
    config = random_config(name, bos_token_id=tok.bos_token_id)
    # Seed a private generator state: building a model must not disturb the caller's RNG stream.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GPT2LMHeadModel(config)
    return model.eval(), tok
