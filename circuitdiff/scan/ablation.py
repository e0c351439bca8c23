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
  docs/authors-code.md §3.1 D), which the ``paper`` preset uses for Llama-family pairs. The BOS
  token, when prepended, counts among the real tokens, as in the authors' notebook (its mask covers
  every non-pad position). The choice matters: BOS activations are far from every other token's,
  and leaving BOS out moves the bundled Llama teacher's L2MLP influence on ``sequence`` (100 prompts)
  from 4.589 to 2.780, the largest influence being 10.69. ``scan.ablation_protocol`` says so.

:data:`ABLATIONS` holds one :class:`AblationRule` per name of :data:`~circuitdiff.vocabulary.Ablation`:
its replacement values on both paths and which corrupted tokens they read. The scans ask the rule,
never the name:

- the adapter path (naive scan, naive circuit scores): :func:`ablation_values` makes one pass over
  the corrupted prompts with the model unmodified (the rule's ``collect``), and
  :meth:`AblationValues.intervention` hands each component its slice;
- the functional path (exact scan, attribution, exact circuit scores): :func:`replacement` (the
  rule's ``replace``) turns a clean activation and the corrupted pass's into the replacement, from
  the corrupted prompts cut to :meth:`AblationRule.corrupted_length`.

Both paths compute the same values, each accumulated in float64 (tests/test_fast_scan.py checks the
scans against each other for every ablation). A new ablation is its literal plus one record here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from ..models.adapter import Batch, Intervention, ModelAdapter
from ..vocabulary import Ablation, Component, choices

PerLayer = tuple[list[torch.Tensor], list[torch.Tensor]]  # (z per layer, mlp_out per layer)


@dataclass(frozen=True)
class AblationRule:
    """One ablation on both paths.

    uses_corrupted: reads the corrupted prompts (``zero`` does not: it needs no values at all).
    per_prompt: one value per clean prompt (row i = corrupted prompt i), so the corrupted set must
      have one prompt per clean prompt; otherwise one value for every prompt.
    whole_corrupted: the functional path reads every corrupted token, also those after the clean
      prompts' last end position (``token_mean`` averages them all); otherwise the corrupted prompts
      are cut to the clean length (later positions never reach an answer). The adapter path always
      reads the whole corrupted prompts; an intervention's value is cut to the batch it acts on.
    replace: the functional path. ``(clean [batch, pos, ...], corrupted [batch', pos', ...] | None,
      corrupted_mask [batch', pos'] | None)`` -> the replacement broadcast to ``clean``'s shape.
    collect: the adapter path. ``(adapter, corrupted batch, batch_size)`` -> (z, mlp) per layer:
      ``[T, head, d_head]`` / ``[T, d_model]``, or with ``per_prompt`` ``[n, T, ...]``; None for
      ``zero`` (an intervention without a value zeroes).
    """

    name: Ablation
    uses_corrupted: bool
    per_prompt: bool
    whole_corrupted: bool
    replace: Callable[[torch.Tensor, torch.Tensor | None, torch.Tensor | None], torch.Tensor]
    collect: Callable[[ModelAdapter, Batch, int], PerLayer] | None

    def corrupted_length(self, clean_length: int, corrupted_length: int) -> int:
        """Positions of the corrupted prompts the functional path runs (see ``whole_corrupted``)."""
        return corrupted_length if self.whole_corrupted else clean_length


# ----------------------------------------------------------------------------- the functional path
def _mask_like(c: torch.Tensor, corrupted_mask: torch.Tensor | None) -> torch.Tensor:
    """The corrupted prompts' real-token mask [batch', pos', 1, ...] in float64, broadcastable to ``c``."""
    m = torch.ones(c.shape[:2], device=c.device) if corrupted_mask is None else corrupted_mask[:, : c.shape[1]]
    return m.to(c.device, torch.float64).view(*c.shape[:2], *([1] * (c.dim() - 2)))


def _zeros(clean, corrupted, corrupted_mask):
    return torch.zeros_like(clean)


def _position_mean(clean, corrupted, corrupted_mask):
    """At each position, the mean over the corrupted prompts with a real token there."""
    c = corrupted[:, : clean.shape[1]].double()
    m = _mask_like(c, corrupted_mask)
    mean = (c * m).sum(0) / m.sum(0).clamp(min=1)  # [pos, ...]
    return mean.to(clean.dtype)[None].expand_as(clean)


def _token_mean(clean, corrupted, corrupted_mask):
    """One mean over every real token of the corrupted prompts, at every position."""
    c = corrupted.double()
    m = _mask_like(c, corrupted_mask)
    mean = (c * m).sum((0, 1)) / m.sum().clamp(min=1)  # [...]: one vector
    return mean.to(clean.dtype).expand_as(clean)


def _own_corrupted(clean, corrupted, corrupted_mask):
    return corrupted[:, : clean.shape[1]]


# ----------------------------------------------------------------------------- the adapter path
def _captures(adapter: ModelAdapter, corrupted: Batch, batch_size: int):
    """(batch, its z and mlp_out captures) of one unmodified pass over the corrupted prompts."""
    for start in range(0, len(corrupted), batch_size):
        b = corrupted.slice(start, start + batch_size)
        out = adapter.run(b, token_ids=b.tokens[:, :1], capture=("z", "mlp_out"))
        yield b, out.captures["z"], out.captures["mlp_out"]


def _masked_sums(adapter: ModelAdapter, corrupted: Batch, batch_size: int):
    """Per layer, the float64 sums over the corrupted prompts' real tokens at each position of z
    [T, head, d_head] and mlp_out [T, d_model], and how many real tokens each position has [T]."""
    z_sum = mlp_sum = None
    count = torch.zeros(corrupted.tokens.shape[1], device=adapter.device, dtype=torch.float64)  # [T]
    for b, z_caps, mlp_caps in _captures(adapter, corrupted, batch_size):
        mask = b.attention_mask.to(adapter.device, torch.float64)  # [b, T]
        count += mask.sum(0)
        zs = [torch.einsum("bp,bphd->phd", mask, z.double()) for z in z_caps]
        ms = [torch.einsum("bp,bpd->pd", mask, m.double()) for m in mlp_caps]
        z_sum = zs if z_sum is None else [a + c for a, c in zip(z_sum, zs)]
        mlp_sum = ms if mlp_sum is None else [a + c for a, c in zip(mlp_sum, ms)]
    return z_sum, mlp_sum, count


def _collect_position_mean(adapter, corrupted, batch_size) -> PerLayer:
    z_sum, mlp_sum, count = _masked_sums(adapter, corrupted, batch_size)
    denom, dtype = count.clamp(min=1), adapter.dtype
    return ([(s / denom[:, None, None]).to(dtype) for s in z_sum],  # [T, head, d_head]
            [(s / denom[:, None]).to(dtype) for s in mlp_sum])  # [T, d_model]


def _collect_token_mean(adapter, corrupted, batch_size) -> PerLayer:
    """One vector over every real token, repeated at every position."""
    z_sum, mlp_sum, count = _masked_sums(adapter, corrupted, batch_size)
    t, total, dtype = count.shape[0], count.sum().clamp(min=1), adapter.dtype
    return ([(s.sum(0) / total).to(dtype).expand(t, *s.shape[1:]) for s in z_sum],  # [T, head, d_head]
            [(s.sum(0) / total).to(dtype).expand(t, -1) for s in mlp_sum])  # [T, d_model]


def _collect_own_corrupted(adapter, corrupted, batch_size) -> PerLayer:
    z_parts: list[list[torch.Tensor]] = [[] for _ in range(adapter.n_layers)]
    mlp_parts: list[list[torch.Tensor]] = [[] for _ in range(adapter.n_layers)]
    for _, z_caps, mlp_caps in _captures(adapter, corrupted, batch_size):
        for layer in range(adapter.n_layers):
            z_parts[layer].append(z_caps[layer])
            mlp_parts[layer].append(mlp_caps[layer])
    return [torch.cat(p) for p in z_parts], [torch.cat(p) for p in mlp_parts]  # [n, T, ...]


# ----------------------------------------------------------------------------- the records
ABLATIONS: dict[str, AblationRule] = {
    "zero": AblationRule("zero", uses_corrupted=False, per_prompt=False, whole_corrupted=False,
                         replace=_zeros, collect=None),
    "mean": AblationRule("mean", uses_corrupted=True, per_prompt=False, whole_corrupted=False,
                         replace=_position_mean, collect=_collect_position_mean),
    "resample": AblationRule("resample", uses_corrupted=True, per_prompt=True, whole_corrupted=False,
                             replace=_own_corrupted, collect=_collect_own_corrupted),
    "token_mean": AblationRule("token_mean", uses_corrupted=True, per_prompt=False, whole_corrupted=True,
                               replace=_token_mean, collect=_collect_token_mean),
}
assert tuple(ABLATIONS) == choices(Ablation) and all(k == r.name for k, r in ABLATIONS.items())


def ablation_rule(name: str) -> AblationRule:
    if name not in ABLATIONS:
        raise ValueError(f"unknown ablation {name!r}; choose one of: {', '.join(ABLATIONS)}")
    return ABLATIONS[name]


def replacement(
    clean: torch.Tensor,
    corrupted: torch.Tensor | None,
    ablation: Ablation,
    corrupted_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """What an ablated activation is replaced by on the functional path, broadcast to ``clean``'s
    shape [batch, pos, ...]; ``corrupted`` [batch', pos', ...] is the corrupted pass's activation and
    ``corrupted_mask`` [batch', pos'] its real tokens (every token when None)."""
    rule = ablation_rule(ablation)
    if rule.uses_corrupted and corrupted is None:
        raise ValueError(f"{ablation} ablation needs the corrupted prompts")
    return rule.replace(clean, corrupted, corrupted_mask)


# ----------------------------------------------------------------------------- adapter-path values
@dataclass
class AblationValues:
    """Replacement activations for one model, from :func:`ablation_values`.

    mean, token_mean: z[l]: [T, head, d_head], mlp[l]: [T, d_model] (token_mean: one row repeated).
    resample: z[l]: [n, T, head, d_head], mlp[l]: [n, T, d_model] (row i = corrupted prompt i).
    """

    kind: Ablation
    z: list[torch.Tensor] = field(default_factory=list)
    mlp: list[torch.Tensor] = field(default_factory=list)

    def intervention(self, component: Component, start: int = 0, stop: int | None = None) -> Intervention:
        """The intervention ablating ``component`` on prompts [start, stop) of the task."""
        rule = ABLATIONS[self.kind]
        if rule.collect is None:
            return Intervention(component)
        layer, h = component.layer, component.head
        if rule.per_prompt:
            value = self.mlp[layer][start:stop] if h is None else self.z[layer][start:stop, :, h]  # [b, T, d]
        else:
            value = self.mlp[layer] if h is None else self.z[layer][:, h]  # [T, d]
        return Intervention(component, value)


def ablation_values(
    adapter: ModelAdapter, corrupted: Batch, kind: Ablation, batch_size: int = 32
) -> AblationValues:
    """One unmodified pass over the corrupted prompts collecting what ``kind`` needs."""
    rule = ablation_rule(kind)
    if rule.collect is None:
        return AblationValues(rule.name)
    z, mlp = rule.collect(adapter, corrupted, batch_size)
    return AblationValues(rule.name, z, mlp)
