"""How many bytes a model and its scan take, from its config's sizes alone: torch-free, so the API can
decide before any worker loads anything (the placement module, circuitdiff.models.placement, makes
the binding plan on the worker with the exact parameter count from a meta-device build).

- :func:`activation_bytes`: what the exact scan keeps for one model (clean and corrupted pass, per
  layer the residuals, per-head ``z`` and MLP output, for every prompt and position), one
  micro-batch row of the blocks above a layer (:func:`bytes_per_row`), and one forward's float32
  logits over the vocabulary for a batch of prompts;
- :func:`estimated_params`: the parameter count the config implies (attention with grouped key/value
  heads, the Llama layout's gated MLP, embeddings, an untied unembedding); norms and biases left out;
- :func:`estimated_bytes`: weights in the dtype the plan would choose plus activations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .architectures import LLAMA_MODEL_TYPES
from .vocabulary import BF16_ABOVE_PARAMS

ITEMSIZE = {"float32": 4, "float16": 2, "bfloat16": 2}
DEFAULT_SEQ_LEN = 64
"""Tokens per prompt assumed before the task is tokenised (the bundled tasks' prompts are shorter);
the pipeline checks again with the real length before the scan (placement.check_activations)."""


@dataclass
class Workload:
    """What the scan will hold: prompts and their padded length (tokens)."""

    n_prompts: int
    seq_len: int = DEFAULT_SEQ_LEN
    batch_size: int = 32


def _get(config: Any, *names: str, default: Any = None) -> Any:
    for name in names:
        value = config.get(name) if isinstance(config, dict) else getattr(config, name, None)
        if value is not None:
            return value
    return default


def shape(config: Any) -> dict[str, int]:
    """The sizes every estimate needs, under each family's config names (a dict or a config object)."""
    d_model = int(_get(config, "hidden_size", "n_embd", "dim"))
    n_heads = int(_get(config, "num_attention_heads", "n_head", "n_heads"))
    return dict(
        d_model=d_model, n_heads=n_heads,
        n_layers=int(_get(config, "num_hidden_layers", "n_layer", "n_layers")),
        d_head=int(_get(config, "head_dim", default=None) or d_model // n_heads),
        n_kv_heads=int(_get(config, "num_key_value_heads", default=n_heads)),
        d_mlp=int(_get(config, "intermediate_size", "n_inner", default=None) or 4 * d_model),
        vocab=int(_get(config, "vocab_size")),
        positions=int(_get(config, "n_positions", default=0) or 0),  # learned position embeddings (GPT-2)
    )


def bytes_per_row(d_model: int, d_mlp: int, n_heads: int, seq_len: int, itemsize: int) -> int:
    """Working memory of one sequence while one block runs (residuals, MLP hidden, attention scores)."""
    return itemsize * seq_len * (8 * d_model + 2 * d_mlp + 2 * n_heads * seq_len)


def choose_dtype(dtype: str, n_params: int) -> str:
    if dtype != "auto":
        return dtype
    return "bfloat16" if n_params > BF16_ABOVE_PARAMS else "float32"


def activation_bytes(config: Any, workload: Workload, itemsize: int) -> int:
    s = shape(config)
    n, t = workload.n_prompts, workload.seq_len
    kept = 2 * s["n_layers"] * n * t * (3 * s["d_model"] + s["n_heads"] * s["d_head"]) * itemsize  # clean + corrupted
    one_row = bytes_per_row(s["d_model"], s["d_mlp"], s["n_heads"], t, itemsize)
    logits = min(n, workload.batch_size) * t * s["vocab"] * 4
    return kept + one_row + logits


def estimated_params(config: Any) -> int:
    s = shape(config)
    d, h, kv, dh = s["d_model"], s["n_heads"], s["n_kv_heads"], s["d_head"]
    attention = d * h * dh * 2 + d * kv * dh * 2  # q and o; k and v (grouped heads)
    gated = _get(config, "model_type") in LLAMA_MODEL_TYPES  # gate, up and down projections
    mlp = (3 if gated else 2) * d * s["d_mlp"]
    tied = bool(_get(config, "tie_word_embeddings", default=True))
    embeddings = s["vocab"] * d * (1 if tied else 2) + s["positions"] * d
    return s["n_layers"] * (attention + mlp) + embeddings


def estimated_bytes(config: Any, dtype: str, workload: Workload) -> int:
    """Weights (in the dtype ``auto`` would choose) plus the scan's activations, for one model."""
    n = estimated_params(config)
    size = ITEMSIZE[choose_dtype(dtype, n)]
    return n * size + activation_bytes(config, workload, size)
