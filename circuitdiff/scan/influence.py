"""Influence of every component: ablate it alone, measure the job's metric (docs/method.md §Method 1).

For prompt i, m_i is the job's metric (:mod:`circuitdiff.metrics`; the paper's is the logit
difference LD_i = logit[answer_i] − logit[distractor_i] at the prompt's end position). For a
component c ablated alone (heads at their pre-W_O output ``z``, MLPs at ``mlp_out``; see
:mod:`circuitdiff.scan.ablation` for zero / mean / resample):

    m_c         = mean_i m_i(c ablated)
    delta_c     = m_c − m_clean                      (signed; for LD negative = the component helped)
    influence_c = |delta_c|                          (the metric's units; the alignment score normalises
                                                       influences by their sum, so units cancel; for
                                                       ``kl`` m_clean = 0 and this is the mean KL)
    retained_c  = the metric's retained % (circuitdiff.metrics.retained_pct; for LD 100 · m_c / m_clean,
                                           None when m_clean ≤ 0: a model that does not perform the
                                           task has no meaningful "%", docs/authors-code.md §7 pitfall 2)

Per-prompt values are kept (``InfluenceScan.ablated_ld``) so that confidence intervals can resample
prompts; the field names keep the paper's "ld" whatever the metric (``InfluenceScan.metric`` says which).

This module holds the result type and ``naive``, the reference: one forward pass per component
(per prompt batch), the metric read from the adapter's logits (:mod:`.readout`). The faster methods
(:mod:`.exact`, :mod:`.attribution`) return the same :class:`InfluenceScan`;
:func:`circuitdiff.scan.scan` dispatches between them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from ..errors import Cancelled
from ..models.adapter import Batch, ModelAdapter
from ..metrics import DEFAULT_METRIC, retained_pct
from ..vocabulary import Ablation, Component, Metric
from .ablation import AblationValues, ablation_values
from .readout import Readout

Progress = Callable[[str, int, int], None]


@dataclass
class InfluenceScan:
    components: list[str]  # component ids, canonical order (heads row-major, then MLPs)
    clean_ld: torch.Tensor  # [n] float64, the metric per prompt (LD for logit_diff)
    ablated_ld: torch.Tensor  # [C, n] float64, row c = per-prompt metric with component c ablated
    ablation: str
    method: str
    agreement: dict | None = None  # attribution with a check / screened: agreement with the exact scan
    metric: str = DEFAULT_METRIC
    microbatch_rows: int | None = None  # exact scan: the micro-batch size that ran (sized from free memory)
    exact: list[bool] | None = None  # per component: an exact value (True) or an estimate; None = by method
    estimator: str | None = None  # attribution / screened: the estimator that made the estimates (vocabulary.Estimator)

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
        """component id -> {value, logit_diff, delta, influence, retained_pct} (result.json ``influence``;
        ``logit_diff`` repeats ``value`` for the logit-difference metric and is None otherwise)."""
        base = self.ld_clean
        out = {}
        for cid, row, exact in zip(self.components, self.ablated_ld, self.is_exact()):
            v = float(row.mean())
            out[cid] = {
                "value": v,
                "logit_diff": v if self.metric == "logit_diff" else None,
                "delta": v - base,
                "influence": abs(v - base),
                "retained_pct": retained_pct(self.metric, v, base),
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
    stage: str = "influence", values: AblationValues | None = None, metric: Metric = DEFAULT_METRIC,
) -> InfluenceScan:
    """The reference: for each component, one forward per prompt batch with it ablated alone."""
    if values is None:
        values = ablation_values(adapter, view.corrupted, ablation, batch_size)
    readout = Readout.for_task(metric, view)
    clean = readout.clean(adapter, view.clean, batch_size)
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
            parts.append(readout.run(adapter, view.clean.slice(s, e), s, [iv]))
        rows.append(torch.cat(parts))
        if progress is not None:
            progress(stage, k + 1, total)
    return InfluenceScan(
        components=[c.id for c in components], clean_ld=clean, ablated_ld=torch.stack(rows),
        ablation=ablation, method="naive", metric=metric,
    )
