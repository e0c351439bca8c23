"""Decoder models through transformer_lens 4.x ``TransformerBridge``.

The bridge wraps the HF model in place and exposes HookedTransformer hook names without any
weight processing: ``blocks.{l}.attn.hook_z`` ([batch, pos, head, d_head], the o-projection
input), ``blocks.{l}.attn.hook_pattern`` ([batch, head, q, k]) and ``blocks.{l}.hook_mlp_out``
([batch, pos, d_model]) all exist on the default bridge. ``enable_compatibility_mode()`` is
deliberately *not* called: it folds LayerNorm, centres writing weights and folds the value bias
into the output bias, which changes what "z = 0" means and the MLP-output basis (docs/authors-code.md §7
pitfall 14). Without it, logits equal the plain HF forward (checked in tests/engine/test_models.py) and
zeroing ``hook_z`` equals zeroing the ``c_proj`` input slice of the HF module.
"""

from __future__ import annotations

import copy
from typing import Any, Iterable, Sequence

import torch

from .adapter import Batch, Capture, Intervention, ModelAdapter, RunOutput, apply_replacement, gather_end_logits

Z = "blocks.{}.attn.hook_z"
PATTERN = "blocks.{}.attn.hook_pattern"
MLP_OUT = "blocks.{}.hook_mlp_out"


def boot_bridge(hf_model: Any, tokenizer: Any, name: str, device: torch.device, dtype: torch.dtype):
    """``TransformerBridge.boot_transformers`` around an already loaded model, fully offline.

    The bridge normalises the tokenizer it is given (padding side, and a reload with
    ``add_bos_token=True`` from ``name_or_path`` unless the flag is already set), so it gets its
    own copy flagged as BOS-aware: our tokenizer stays untouched and nothing is fetched. We never
    let the bridge tokenize (inputs are token ids; the task layer owns the BOS policy).
    """
    from transformer_lens.model_bridge import TransformerBridge

    btok = copy.deepcopy(tokenizer)
    btok.init_kwargs["name_or_path"] = btok.init_kwargs.get("name_or_path") or name
    btok.init_kwargs["add_bos_token"] = True
    return TransformerBridge.boot_transformers(name, hf_model=hf_model, tokenizer=btok, device=device, dtype=dtype)


class BridgeAdapter(ModelAdapter):
    adapter_name = "bridge"
    family = "causal"

    def __init__(self, bridge: Any, tokenizer: Any, info: dict[str, Any], device: torch.device, dtype: torch.dtype):
        cfg = bridge.cfg
        self.bridge = bridge
        self.tokenizer = tokenizer
        self.n_layers = int(cfg.n_layers)
        self.n_heads = int(cfg.n_heads)
        self.d_head = int(cfg.d_head)
        self.d_model = int(cfg.d_model)
        self.vocab_size = int(cfg.d_vocab)
        # info["n_params"] is counted before booting (the bridge adds split q/k/v weights)
        self.n_params = int(info.get("n_params") or sum(p.numel() for p in bridge.original_model.parameters()))
        self.device = torch.device(device)
        self.dtype = dtype
        self.info = dict(info)
        self.info.update(
            adapter="bridge", family="causal", n_layers=self.n_layers, n_heads=self.n_heads,
            d_model=self.d_model, n_params=self.n_params, vocab_size=self.vocab_size,
        )
        bridge.eval()

    @property
    def hf_model(self) -> Any:
        return self.bridge.original_model

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
        hooks: list[tuple[str, Any]] = []

        # Interventions first, captures after: a capture sees the activation the run used.
        by_name: dict[str, list[Intervention]] = {}
        for iv in interventions:
            self.check_intervention(iv)
            c = iv.component
            by_name.setdefault((Z if c.head is not None else MLP_OUT).format(c.layer), []).append(iv)
        for name, ivs in by_name.items():
            hooks.append((name, _intervene(ivs)))
        for what, template in (("z", Z), ("pattern", PATTERN), ("mlp_out", MLP_OUT)):
            if what in captures:
                for layer in range(self.n_layers):
                    hooks.append((template.format(layer), _keep(captures[what], layer)))

        batch = batch.to(self.device)
        with torch.no_grad():
            logits = self.bridge.run_with_hooks(
                batch.tokens, fwd_hooks=hooks, attention_mask=batch.attention_mask
            )  # [batch, pos, vocab]
        return RunOutput(logits if all_positions else gather_end_logits(logits, batch.end_pos, token_ids), captures)  # type: ignore[arg-type]


def _intervene(ivs: list[Intervention]):
    def hook(act: torch.Tensor, hook: Any) -> torch.Tensor:
        for iv in ivs:
            act = apply_replacement(act, iv, iv.component.head)
        return act

    return hook


def _keep(store: list, layer: int):
    def hook(act: torch.Tensor, hook: Any) -> torch.Tensor:
        store[layer] = act.detach()
        return act

    return hook
