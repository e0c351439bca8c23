"""What an ablated component's activation is replaced with (docs/method.md §Method 1).

- ``zero``: the activation is set to 0 (heads at ``z``, before W_O; MLPs at ``mlp_out``).
- ``mean``: the per-position mean of the component's activation over the corrupted set (the
  seqcont choice, docs/authors-code.md §3.1 A). Prompts of different lengths are right-padded; a position's
  mean is taken only over corrupted prompts that have a real token there (the authors averaged
  padding in, pitfall 8).
- ``resample``: the activation the component had on prompt i's own corrupted prompt, position by
  position (clean and corrupted prompts have the same token length, checked by the task layer).
- ``token_mean``: one mean vector per head / MLP over every real (non-pad) token of every corrupted
  prompt, the same at every position: the authors' Llama choice (``llama_influence.ipynb``,
  docs/authors-code.md §3.1 D), which the ``paper`` preset uses for Llama-family pairs.

The values come from one pass over the corrupted set with the model unmodified.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..models.adapter import Batch, Intervention, ModelAdapter
from ..vocabulary import Ablation, Component


@dataclass
class AblationValues:
    """Replacement activations for one model.

    mean, token_mean: z[l]: [T, head, d_head], mlp[l]: [T, d_model] (token_mean: one row repeated).
    resample: z[l]: [n, T, head, d_head], mlp[l]: [n, T, d_model] (row i = corrupted prompt i).
    """

    kind: Ablation
    z: list[torch.Tensor] = field(default_factory=list)
    mlp: list[torch.Tensor] = field(default_factory=list)

    def intervention(self, component: Component, start: int = 0, stop: int | None = None) -> Intervention:
        """The intervention ablating ``component`` on prompts [start, stop) of the task."""
        if self.kind == "zero":
            return Intervention(component)
        layer, h = component.layer, component.head
        if self.kind in ("mean", "token_mean"):
            value = self.mlp[layer] if h is None else self.z[layer][:, h]  # [T, d]
        else:
            value = self.mlp[layer][start:stop] if h is None else self.z[layer][start:stop, :, h]  # [b, T, d]
        return Intervention(component, value)


def ablation_values(
    adapter: ModelAdapter, corrupted: Batch, kind: Ablation, batch_size: int = 32
) -> AblationValues:
    """One unmodified pass over the corrupted prompts collecting what ``kind`` needs."""
    if kind == "zero":
        return AblationValues("zero")
    if kind not in ("mean", "resample", "token_mean"):
        raise ValueError(f"unknown ablation {kind!r}")
    n = len(corrupted)
    z_parts: list[list[torch.Tensor]] = [[] for _ in range(adapter.n_layers)]
    mlp_parts: list[list[torch.Tensor]] = [[] for _ in range(adapter.n_layers)]
    z_sum = mlp_sum = None
    count = torch.zeros(corrupted.tokens.shape[1], device=adapter.device, dtype=torch.float64)  # [T]
    for start in range(0, n, batch_size):
        b = corrupted.slice(start, start + batch_size)
        out = adapter.run(b, token_ids=b.tokens[:, :1], capture=("z", "mlp_out"))
        if kind == "resample":
            for layer in range(adapter.n_layers):
                z_parts[layer].append(out.captures["z"][layer])
                mlp_parts[layer].append(out.captures["mlp_out"][layer])
            continue
        mask = b.attention_mask.to(adapter.device, torch.float64)  # [b, T]
        count += mask.sum(0)
        zs = [torch.einsum("bp,bphd->phd", mask, z.double()) for z in out.captures["z"]]
        ms = [torch.einsum("bp,bpd->pd", mask, m.double()) for m in out.captures["mlp_out"]]
        z_sum = zs if z_sum is None else [a + c for a, c in zip(z_sum, zs)]
        mlp_sum = ms if mlp_sum is None else [a + c for a, c in zip(mlp_sum, ms)]
    if kind == "resample":
        return AblationValues("resample", [torch.cat(p) for p in z_parts], [torch.cat(p) for p in mlp_parts])
    dtype = adapter.dtype
    if kind == "token_mean":  # one vector over every real token, repeated at every position
        t, total = count.shape[0], count.sum().clamp(min=1)
        return AblationValues(
            "token_mean",
            [(s.sum(0) / total).to(dtype).expand(t, *s.shape[1:]) for s in z_sum],  # [T, head, d_head]
            [(s.sum(0) / total).to(dtype).expand(t, -1) for s in mlp_sum],  # [T, d_model]
        )
    denom = count.clamp(min=1)
    return AblationValues(
        "mean",
        [(s / denom[:, None, None]).to(dtype) for s in z_sum],  # [T, head, d_head]
        [(s / denom[:, None]).to(dtype) for s in mlp_sum],  # [T, d_model]
    )
