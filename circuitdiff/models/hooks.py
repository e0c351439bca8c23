"""Models the transformer_lens bridge does not cover, on plain ``transformers`` forward hooks.

Used for ``DistilBertForMaskedLM`` (transformer_lens 4.x has no DistilBERT adapter) and, after
testing, for ``BertForMaskedLM`` too: both adapters give the same numbers on BERT
(tests/engine/test_hooks_adapter.py), and running teacher and student through the *same* hook points
means "z", "pattern" and "mlp_out" mean exactly the same thing on both sides of a BERT →
DistilBERT comparison. GPT-2 is covered as well, so the two adapters can be checked against each
other on a decoder.

Where each capture is read and where each ablation acts (per layer, one site each; each model
type's modules: its ``hooks`` in :mod:`circuitdiff.architectures`):

- ``z`` [batch, pos, head, d_head]: the *input* of the attention output linear (DistilBERT
  ``attention.out_lin``, BERT ``attention.output.dense``, GPT-2 ``attn.c_proj``, Llama / Mistral /
  Qwen2 ``self_attn.o_proj``), split into heads (for grouped-query attention: *query* heads).
  That input is the per-head context vectors concatenated head-major, so head h is the slice
  ``[h*d_head, (h+1)*d_head)``. A head is ablated by a forward-*pre*-hook that replaces its slice
  before W_O is applied (docs/design.md; docs/authors-code.md §7 pitfall 4: the authors' HF code zeroed a
  *sequence position* of the attention output instead). The output bias b_O is untouched, as
  with transformer_lens ``hook_z``.
- ``pattern`` [batch, head, query, key]: the softmax probabilities the self-attention module
  returns as its second output. They exist only with eager attention (SDPA/flash return None),
  so the adapter switches the model to ``attn_implementation="eager"`` when built.
- ``mlp_out`` [batch, pos, d_model]: the output of the feed-forward block's second linear
  (DistilBERT ``ffn.lin2``, BERT ``output.dense``, GPT-2 ``mlp`` output), i.e. the MLP's
  contribution *before* dropout (identity in eval), the residual add and, for the post-LN BERT
  family, the LayerNorm that follows the add. This is the tensor transformer_lens calls
  ``hook_mlp_out`` for BERT (``mlp.out.hook_out``), and the only point where "the MLP's
  output" is separable from the residual stream in a post-LN block. An MLP is ablated by a
  forward hook that replaces this output; the LayerNorm then normalises residual + replacement.
  (The authors zeroed the *first* FFN linear's output, which still leaves the second linear's
  bias in; zero ablation here removes the whole contribution.)

Logits are those of the model's own LM head at each row's ``end_pos`` (the ``[MASK]`` for a
masked LM). Weights load as safetensors only (circuitdiff.models.loading); nothing here runs
remote code.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import torch

from ..architectures import ARCHITECTURES, architecture
from ..errors import UnsupportedArchitectureError
from .adapter import Batch, Capture, Intervention, ModelAdapter, RunOutput, apply_replacement, gather_end_logits


def supports(hf_model: Any) -> bool:
    """Whether ``hf_model`` is the class its model type's hook layout was written against
    (circuitdiff.architectures)."""
    arch = architecture(getattr(hf_model.config, "model_type", None))
    return arch is not None and type(hf_model).__name__ == arch.hf_class


class HooksAdapter(ModelAdapter):
    """:class:`ModelAdapter` on forward hooks registered for one ``run`` and removed after it."""

    adapter_name = "hooks"

    def __init__(self, hf_model: Any, tokenizer: Any, info: dict[str, Any], device: torch.device, dtype: torch.dtype):
        if not supports(hf_model):
            raise UnsupportedArchitectureError(
                f"no forward-hook layout for {type(hf_model).__name__} "
                f"(supported: {', '.join(a.hf_class for a in ARCHITECTURES.values())})"
            )
        cfg = hf_model.config
        arch = ARCHITECTURES[cfg.model_type]
        self.layout = arch.hooks
        # Attention probabilities exist only on the eager path; the maths is the same as SDPA's.
        if getattr(cfg, "_attn_implementation", "eager") != "eager":
            hf_model.set_attn_implementation("eager")
        self._hf_model = hf_model.eval()
        self.blocks = list(self.layout.layers(hf_model))
        # Chunked feed-forward would call the MLP-output hook once per chunk of positions; the
        # unchunked call computes the same numbers, so turn chunking off.
        for b in self.blocks:
            for mod in (b, getattr(b, "ffn", None)):
                if mod is not None and getattr(mod, "chunk_size_feed_forward", 0):
                    mod.chunk_size_feed_forward = 0
        self.family = arch.family
        self.tokenizer = tokenizer
        self.n_layers = len(self.blocks)
        self.n_heads = int(self.layout.n_heads(cfg))
        self.d_model = int(self.layout.d_model(cfg))
        self.d_head = int(self.layout.d_head(cfg) or self.d_model // self.n_heads)
        self.vocab_size = int(cfg.vocab_size)
        self.n_params = int(info.get("n_params") or sum(p.numel() for p in hf_model.parameters()))
        self.device = torch.device(device)
        self.dtype = dtype
        self.info = dict(info)
        self.info.update(
            adapter="hooks", family=self.family, architecture=type(hf_model).__name__, n_layers=self.n_layers,
            n_heads=self.n_heads, d_model=self.d_model, n_params=self.n_params, vocab_size=self.vocab_size,
        )

    @property
    def hf_model(self) -> Any:
        return self._hf_model

    def run(
        self,
        batch: Batch,
        interventions: Sequence[Intervention] = (),
        *,
        token_ids: torch.Tensor | None = None,
        capture: Iterable[Capture] = (),
        all_positions: bool = False,
    ) -> RunOutput:
        capture = tuple(capture)
        captures: dict[str, list[torch.Tensor | None]] = {c: [None] * self.n_layers for c in capture}
        heads: dict[int, list[Intervention]] = {}
        mlps: dict[int, list[Intervention]] = {}
        for iv in interventions:
            self.check_intervention(iv)
            (heads if iv.component.head is not None else mlps).setdefault(iv.component.layer, []).append(iv)

        handles = []
        try:
            for layer, block in enumerate(self.blocks):
                if layer in heads or "z" in captures:
                    handles.append(self.layout.out_proj(block).register_forward_pre_hook(
                        self._z_hook(layer, heads.get(layer, []), captures.get("z"))))
                if layer in mlps or "mlp_out" in captures:
                    handles.append(self.layout.mlp_out(block).register_forward_hook(
                        self._mlp_hook(layer, mlps.get(layer, []), captures.get("mlp_out"))))
                if "pattern" in captures:
                    handles.append(self.layout.attention(block).register_forward_hook(
                        _pattern_hook(layer, captures["pattern"], self.device)))
            batch = batch.to(self.device)
            with torch.no_grad():
                logits = self._hf_model(input_ids=batch.tokens, attention_mask=batch.attention_mask).logits
        finally:
            for h in handles:
                h.remove()
        # logits: [batch, pos, vocab]
        return RunOutput(logits if all_positions else gather_end_logits(logits, batch.end_pos, token_ids), captures)  # type: ignore[arg-type]

    def _z_hook(self, layer: int, ivs: list[Intervention], store: list | None):
        H, dh = self.n_heads, self.d_head

        def hook(module: Any, args: tuple) -> tuple | None:
            x = args[0]  # [batch, pos, head * d_head], head-major
            z = x.view(*x.shape[:-1], H, dh)  # [batch, pos, head, d_head]
            for iv in ivs:
                z = apply_replacement(z, iv, iv.component.head)
            if store is not None:  # gathered on the adapter's device (a device_map spreads the layers)
                store[layer] = z.detach().to(self.device)
            if not ivs:
                return None
            return (z.reshape(x.shape), *args[1:])

        return hook

    def _mlp_hook(self, layer: int, ivs: list[Intervention], store: list | None):
        def hook(module: Any, args: tuple, out: torch.Tensor) -> torch.Tensor | None:
            for iv in ivs:  # out: [batch, pos, d_model]
                out = apply_replacement(out, iv, None)
            if store is not None:
                store[layer] = out.detach().to(self.device)
            return out if ivs else None

        return hook


def _pattern_hook(layer: int, store: list, device: torch.device):
    def hook(module: Any, args: tuple, out: Any) -> None:
        probs = out[1] if isinstance(out, tuple) and len(out) > 1 else None
        if probs is None:
            raise RuntimeError(
                f"layer {layer}: the attention module returned no probabilities; the model must run with "
                "attn_implementation='eager'"
            )
        store[layer] = probs.detach().to(device)  # [batch, head, query, key]

    return hook
