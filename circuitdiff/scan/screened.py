"""Screened scan: exact influences where they decide the result, a cheap estimate elsewhere.

What a comparison reads most from the influences is their top: the components that carry the
task (they dominate the alignment score's weights, the circuit, the matched pairs people inspect).
So ``scan: "screened"`` spends exact work only where an estimate could change that top:

1. **Screen.** Attribution patching (:mod:`.attribution`) estimates every component's influence
   from one forward and one backward pass. It is the screen because it costs ~1/30 of the exact
   scan, whereas the bfloat16 exact scan costs ~1/3 and could not make the whole ≥ 4x faster than
   the float32 exact scan (benchmarks/README.md, issue #13).
2. **Re-scan the top.** The ``screen_top`` (k) components with the largest estimates get their
   exact value (:func:`.exact.exact_scan`, the same arithmetic as ``scan: "exact"``).
3. **Measure the screen's error and widen.** On the re-scanned set R the estimate's error is known:
   ``err = max_{c in R} |Î_c − I_c|``. The k-th largest exact influence in R, τ, is a lower bound of
   the true k-th largest influence (any k exact values are), so a component can belong to the top-k
   only if its true influence reaches τ. Its influence is at most ``Î_c + margin`` with
   ``margin = SAFETY · err``, so every component with ``Î_c + margin ≥ τ`` is re-scanned too, and
   steps 3-4 repeat with the larger R (err and τ can only grow) until no component is left that
   could reach τ.
4. Everything else keeps its estimate, marked ``exact: false`` in the result.

``SAFETY`` is measured, not assumed (tests/test_screened.py, benchmarks/README.md): the error the
screen makes on components it did *not* re-scan, as a multiple of ``err`` measured on those it did,
stayed below 1 on the bundled pairs (attribution's error grows with the size of an ablation's
effect, so the largest estimates carry the largest errors); 2 leaves headroom for pairs unlike
them. The returned scan's ``agreement`` states the measured error, the margin, τ, how many
components were re-scanned and the estimate's rank agreement with the exact values there.

The top-k of a screened scan is the top-k of the exact scan whenever the margin holds (tests check
it on the bundled pairs, with every re-scanned value equal to the exact scan's to 1e-5 of the LD
scale).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from ..errors import Cancelled
from ..models.functional import UnsupportedArchitectureError
from ..vocabulary import SCREEN_TOP, Ablation, Component
from .attribution import agreement, attribution_scan
from .exact import exact_scan, task_tensors
from .influence import InfluenceScan, Progress, naive_scan

SAFETY = 2.0
"""Multiple of the screen's error measured on the re-scanned components that bounds its error on the
others (module docstring: measured below 1 on the bundled pairs)."""


def screen(
    estimate: dict[str, float], exact_of: Callable[[list[str]], dict[str, float]], top: int,
    safety: float = SAFETY,
) -> tuple[dict[str, float], dict]:
    """The screening rule on influences alone: ``estimate`` (component -> estimated influence) and
    ``exact_of(ids) -> {id: exact influence}``. Returns the exact influences it computed and how
    (``err``, ``margin``, ``threshold``, ``rounds``)."""
    ids = sorted(estimate, key=lambda c: -estimate[c])
    k = min(top, len(ids))
    exact: dict[str, float] = {}
    todo = ids[:k]
    rounds, err, margin, tau = 0, 0.0, 0.0, float("-inf")
    while todo:
        exact.update(exact_of(todo))
        rounds += 1
        err = max(abs(estimate[c] - exact[c]) for c in exact)
        margin = safety * err
        tau = sorted(exact.values(), reverse=True)[k - 1]
        todo = [c for c in ids if c not in exact and estimate[c] + margin >= tau]
    return exact, {"max_abs_error": err, "margin": margin, "threshold": tau, "rounds": rounds}


def screened_method(
    adapter, view, ablation: Ablation, *, components: Sequence[Component], batch_size: int = 32,
    progress: Progress | None = None, cancelled: Callable[[], bool] | None = None, stage: str = "influence",
    screen_top: int = SCREEN_TOP,
) -> InfluenceScan:
    """``scan(method="screened")``: attribution for every component, exact values for the top
    ``screen_top`` and every component that could join them (module docstring). Architectures
    without a functional view run the naive scan (every value exact; the scan says ``naive``)."""
    try:
        stack = adapter.functional()
    except UnsupportedArchitectureError:
        return naive_scan(adapter, view, ablation, components=components, batch_size=batch_size,
                          progress=progress, cancelled=cancelled, stage=stage)
    inputs = task_tensors(view)
    wanted = [c.id for c in components]
    cheap = attribution_scan(stack, ablation=ablation, **inputs)
    index = {c: i for i, c in enumerate(cheap.components)}
    delta = torch.stack([cheap.ablated_ld[index[c]] - cheap.clean_ld for c in wanted]).double().cpu()  # [C, n]
    estimate = {c: abs(float(d.mean())) for c, d in zip(wanted, delta)}

    rows: dict[str, torch.Tensor] = {}
    clean_ld: list[torch.Tensor] = []

    def exact_of(ids: list[str]) -> dict[str, float]:
        if cancelled is not None and cancelled():
            raise Cancelled(f"cancelled during {stage} after {len(rows)} exact components")
        out = exact_scan(stack, ablation=ablation, components=ids, **inputs)
        base = out.clean_ld.double().cpu()
        clean_ld.append(base)
        for c, r in zip(out.components, out.ablated_ld.double().cpu()):
            rows[c] = r
        if progress is not None:
            progress(stage, len(rows), len(wanted))
        return {c: abs(float((rows[c] - base).mean())) for c in ids}

    exact, how = screen(estimate, exact_of, screen_top)
    base = clean_ld[0]
    ablated = torch.stack([rows[c] if c in rows else base + delta[i] for i, c in enumerate(wanted)])
    scale = float(base.abs().mean())
    agree = agreement({c: estimate[c] for c in exact}, exact, top_k=min(screen_top, len(exact)))
    agree.update(
        screen="attribution", n_components=len(wanted), n_exact=len(exact), screen_top=screen_top,
        safety=SAFETY, error_margin=how["margin"], threshold=how["threshold"], rounds=how["rounds"],
        max_abs_error_rel=how["max_abs_error"] / scale if scale > 0 else None,
    )
    if progress is not None:
        progress(stage, len(wanted), len(wanted))
    return InfluenceScan(
        components=wanted, clean_ld=base, ablated_ld=ablated, ablation=ablation, method="screened",
        agreement=agree, exact=[c in exact for c in wanted],
    )
