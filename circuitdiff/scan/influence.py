"""Influence of every component: ablate it alone, measure the logit difference (PAPER.md §Method 1).

For prompt i, LD_i = logit[answer_i] − logit[distractor_i] at the prompt's end position. For a
component c ablated alone (heads at their pre-W_O output ``z``, MLPs at ``mlp_out``; see
:mod:`circuitdiff.analysis.ablation` for zero / mean / resample):

    LD_c        = mean_i LD_i(c ablated)
    delta_c     = LD_c − LD_clean                    (signed; negative = the component helped)
    influence_c = |delta_c|                          (logit units; the alignment score normalises
                                                       influences by their sum, so units cancel)
    retained_c  = 100 · LD_c / LD_clean              (None when LD_clean ≤ 0: a model that does not
                                                       perform the task has no meaningful "%",
                                                       paper-notes §7 pitfall 2)

Per-prompt LDs are kept (``InfluenceScan.ablated_ld``) so that confidence intervals can resample
prompts.

This module holds the result type and ``naive``, the reference: one forward pass per component
(per prompt batch). The faster methods (:mod:`.exact`, :mod:`.attribution`) return the same
:class:`InfluenceScan`; :func:`circuitdiff.scan.scan` dispatches between them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from ..errors import Cancelled
from ..models.adapter import Batch, ModelAdapter
from ..vocabulary import Ablation, Component
from .ablation import AblationValues, ablation_values

Progress = Callable[[str, int, int], None]


@dataclass
class InfluenceScan:
    components: list[str]  # component ids, canonical order (heads row-major, then MLPs)
    clean_ld: torch.Tensor  # [n] float64
    ablated_ld: torch.Tensor  # [C, n] float64, row c = per-prompt LD with component c ablated
    ablation: str
    method: str
    agreement: dict | None = None  # attribution with a check / screened: agreement with the exact scan
    exact: list[bool] | None = None  # per component: an exact value (True) or an estimate; None = by method

    def is_exact(self) -> list[bool]:
        """Per component: whether its LDs are exact (naive, exact) or estimated (attribution, and the
        components a screened scan did not re-scan)."""
        if self.exact is not None:
            return list(self.exact)
        return [self.method != "attribution"] * len(self.components)

    @property
    def ld_clean(self) -> float:
        return float(self.clean_ld.mean())

    def summary(self) -> dict[str, dict]:
        """component id -> {logit_diff, delta, influence, retained_pct} (result.json ``influence``)."""
        base = self.ld_clean
        out = {}
        for cid, row, exact in zip(self.components, self.ablated_ld, self.is_exact()):
            ld = float(row.mean())
            out[cid] = {
                "logit_diff": ld,
                "delta": ld - base,
                "influence": abs(ld - base),
                "retained_pct": 100.0 * ld / base if base > 0 else None,
                "exact": exact,
            }
        return out

    def influences(self) -> dict[str, float]:
        return {cid: v["influence"] for cid, v in self.summary().items()}

    def retained(self) -> dict[str, float | None]:
        return {cid: v["retained_pct"] for cid, v in self.summary().items()}


def logit_diffs(adapter: ModelAdapter, batch: Batch, answer_distractor: torch.Tensor, interventions=()) -> torch.Tensor:
    """[batch] float64: logit[answer] − logit[distractor] at each end position."""
    out = adapter.run(batch, interventions, token_ids=answer_distractor)
    lg = out.logits.double()  # [batch, 2]
    return (lg[:, 0] - lg[:, 1]).cpu()


def clean_logit_diffs(adapter: ModelAdapter, view, batch_size: int = 32) -> torch.Tensor:
    ad = view.answer_distractor()
    n = view.n
    return torch.cat([
        logit_diffs(adapter, view.clean.slice(s, s + batch_size), ad[s : s + batch_size])
        for s in range(0, n, batch_size)
    ])


def naive_scan(
    adapter: ModelAdapter, view, ablation: Ablation, *, components: Sequence[Component],
    batch_size: int = 32, progress: Progress | None = None, cancelled: Callable[[], bool] | None = None,
    stage: str = "influence", values: AblationValues | None = None,
) -> InfluenceScan:
    """The reference: for each component, one forward per prompt batch with it ablated alone."""
    if values is None:
        values = ablation_values(adapter, view.corrupted, ablation, batch_size)
    clean = clean_logit_diffs(adapter, view, batch_size)
    ad = view.answer_distractor()
    n = view.n
    rows = []
    total = len(components)
    for k, comp in enumerate(components):
        if cancelled is not None and cancelled():
            raise Cancelled(f"cancelled during {stage} after {k} of {total} components")
        parts = []
        for s in range(0, n, batch_size):
            e = min(n, s + batch_size)
            iv = values.intervention(comp, s, e)
            parts.append(logit_diffs(adapter, view.clean.slice(s, e), ad[s:e], [iv]))
        rows.append(torch.cat(parts))
        if progress is not None:
            progress(stage, k + 1, total)
    return InfluenceScan(
        components=[c.id for c in components], clean_ld=clean, ablated_ld=torch.stack(rows),
        ablation=ablation, method="naive",
    )

