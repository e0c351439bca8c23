"""One record per transformers ``config.model_type`` circuitdiff runs: the one place a model family lives.

An :class:`Architecture` says everything the engine and the service know of a model type:

- ``family``: ``causal`` or ``masked`` (which task form a model reads, which ``AutoModelFor...``
  class loads it and the memory plan builds it as, which metrics it can run);
- ``hf_class``: the transformers class its hook layout was written against (a ``BertModel`` without
  an LM head has no logits, so only this class is accepted);
- ``hooks``: where the forward-hook adapter (:mod:`circuitdiff.models.hooks`) finds the layers and
  reads and replaces ``z``, ``pattern`` and ``mlp_out`` in them;
- ``stack``: the name of its :class:`~circuitdiff.models.functional.LayerStack` class, the functional
  view the exact scan and attribution patching run on; None where there is none (the scans then
  run naive, and say so);
- ``layout``: the layout several model types share (``llama`` for Llama, Mistral and Qwen2: GQA,
  RoPE, RMSNorm, SwiGLU); the ``paper`` preset follows the authors' Llama notebook for a pair of
  ``llama``-layout models.

A model type missing here may still run through the transformer_lens bridge (decoders it knows);
it is then causal, with no hook layout and no functional view. A new model family is its name in
:data:`~circuitdiff.vocabulary.ModelType` plus one record here (and, for the exact scan, its
LayerStack class when no existing one fits).

Torch-free (the hook layout is attribute access on modules and configs): the service and the spec
may ask a model type's family before any weight is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from .vocabulary import Family, ModelType, choices

__all__ = ["HookLayout", "Architecture", "ARCHITECTURES", "architecture", "family_of_model_type",
           "MASKED_LM_MODEL_TYPES", "LLAMA_MODEL_TYPES"]


@dataclass(frozen=True)
class HookLayout:
    """Where the three sites live in one HF architecture (circuitdiff.models.hooks)."""

    layers: Callable[[Any], Sequence[Any]]  # model -> per-layer blocks
    attention: Callable[[Any], Any]  # block -> module returning (output, attention probabilities)
    out_proj: Callable[[Any], Any]  # block -> linear whose input is the concatenated heads
    mlp_out: Callable[[Any], Any]  # block -> module whose output is the MLP contribution
    n_heads: Callable[[Any], int]  # config -> heads (query heads)
    d_model: Callable[[Any], int]
    d_head: Callable[[Any], int | None] = lambda c: None  # config -> head width where it is not d_model / heads


@dataclass(frozen=True)
class Architecture:
    """One ``config.model_type`` (see the module docstring)."""

    model_type: ModelType
    family: Family
    hf_class: str
    hooks: HookLayout
    stack: str | None = None
    layout: str | None = None


_DISTILBERT = HookLayout(
    layers=lambda m: m.distilbert.transformer.layer,
    attention=lambda b: b.attention,
    out_proj=lambda b: b.attention.out_lin,
    mlp_out=lambda b: b.ffn.lin2,
    n_heads=lambda c: c.n_heads,
    d_model=lambda c: c.dim,
)
_BERT = HookLayout(
    layers=lambda m: m.bert.encoder.layer,
    attention=lambda b: b.attention.self,
    out_proj=lambda b: b.attention.output.dense,
    mlp_out=lambda b: b.output.dense,
    n_heads=lambda c: c.num_attention_heads,
    d_model=lambda c: c.hidden_size,
)
_GPT2 = HookLayout(
    layers=lambda m: m.transformer.h,
    attention=lambda b: b.attn,
    out_proj=lambda b: b.attn.c_proj,
    mlp_out=lambda b: b.mlp,
    n_heads=lambda c: c.n_head,
    d_model=lambda c: c.n_embd,
)
# Llama and the models sharing its layout: z = the o_proj input, split into *query* heads (with
# grouped-query attention a key/value head serves several query heads, but each query head has its
# own slice of the o_proj input, so ablating one never touches the others); the MLP's output is the
# SwiGLU block's (``down_proj``'s) output; eager attention returns per-query-head probabilities.
_LLAMA = HookLayout(
    layers=lambda m: m.model.layers,
    attention=lambda b: b.self_attn,
    out_proj=lambda b: b.self_attn.o_proj,
    mlp_out=lambda b: b.mlp,
    n_heads=lambda c: c.num_attention_heads,
    d_model=lambda c: c.hidden_size,
    d_head=lambda c: getattr(c, "head_dim", None),
)

ARCHITECTURES: dict[str, Architecture] = {
    a.model_type: a
    for a in (
        Architecture("gpt2", "causal", "GPT2LMHeadModel", _GPT2, stack="Gpt2Stack", layout="gpt2"),
        Architecture("llama", "causal", "LlamaForCausalLM", _LLAMA, stack="LlamaStack", layout="llama"),
        Architecture("mistral", "causal", "MistralForCausalLM", _LLAMA, stack="LlamaStack", layout="llama"),
        Architecture("qwen2", "causal", "Qwen2ForCausalLM", _LLAMA, stack="LlamaStack", layout="llama"),
        Architecture("bert", "masked", "BertForMaskedLM", _BERT),
        Architecture("distilbert", "masked", "DistilBertForMaskedLM", _DISTILBERT),
    )
}
assert tuple(ARCHITECTURES) == choices(ModelType)

MASKED_LM_MODEL_TYPES: tuple[str, ...] = tuple(t for t, a in ARCHITECTURES.items() if a.family == "masked")
"""``config.model_type`` values of the masked family; every other type is causal."""

LLAMA_MODEL_TYPES: tuple[str, ...] = tuple(t for t, a in ARCHITECTURES.items() if a.layout == "llama")
"""``config.model_type`` values of the Llama layout (GQA, RoPE, RMSNorm, SwiGLU): the paper's v2 pair and
the layout most distillation uses today; the ``paper`` preset follows the authors' Llama notebook for them."""


def architecture(model_type: str | None) -> Architecture | None:
    """The record of a ``config.model_type``; None for a type circuitdiff has no record of."""
    return ARCHITECTURES.get(model_type or "")


def family_of_model_type(model_type: str) -> Family:
    """The family of a transformers ``config.model_type`` (causal for a type without a record: the
    bridge runs only decoders)."""
    a = architecture(model_type)
    return a.family if a is not None else "causal"
