"""Screened scan: exact influences where they decide the result, a cheap estimate elsewhere.

What a comparison reads most from the influences is their top: the components that carry the
task (they dominate the alignment score's weights, the circuit, the matched pairs people inspect).
So ``scan: "screened"`` spends exact work only where an estimate could change that top:

1. **Screen.** Attribution patching (:mod:`.attribution`, by the spec's ``estimator``) estimates every
   component's influence from one forward and one backward pass. It is the screen because it costs a few percent of the
   exact scan, whereas the bfloat16 exact scan costs ~1/3 of the float32 one on the build machine
   and could not make the whole >= 4x faster by itself (benchmarks/README.md, issue #13).
2. **Re-scan the top, and every MLP.** The ``screen_top`` (k) heads with the largest estimates get
   their exact value (:func:`.exact.exact_scan`, the same arithmetic as ``scan: "exact"``), and so
   does every MLP: attribution's error on an MLP is too large to screen with (measured on the
   bundled zoo pair, IOI: L0MLP estimated 1.04, exact 8.80 in LD units; on the GPT-2-small-shaped
   random student the four largest errors are MLPs), and MLPs are 1 in n_heads + 1 components.
   Screening MLPs with their own measured error (#28 §2) was replayed on the exact values of the
   GPT-2-small-shaped random teacher (IOI, 20 prompts): at ``screen_top`` 20 it re-scans 111 of 156
   components (0.76 of the exact scan's cost) where this rule re-scans 64 (0.50), because the MLPs'
   exact values, large and cheap (7% of the exact scan's cost), raise τ for every head; at
   ``screen_top`` 5 it would save 6 points of cost (0.07 against 0.13). Not worth a second rule.
3. **Measure the screen's error and widen.** On the re-scanned heads R the estimate's error is
   known: ``err = max_{c in R} |Î_c − I_c|``. The k-th largest exact influence found so far, τ, is a
   lower bound of the true k-th largest influence (any k exact values are), so a head can belong to
   the top-k only if its true influence reaches τ. Its influence is taken to be at most
   ``Î_c + margin`` with ``margin = SAFETY · err``; every head with ``Î_c + margin ≥ τ`` is
   re-scanned too, and this step repeats with the larger R (err and τ can only grow) until no
   head is left that could reach τ.
4. Everything else keeps its estimate, marked ``exact: false`` in the result.

``SAFETY`` is measured, not assumed: the error the screen makes on heads it did *not* re-scan, as a
multiple of ``err`` measured on those it did, reached 2.4 on the GPT-2-small-shaped random student
(``zoo:distilgpt2-random``, IOI, 10 prompts: L0H5 estimated 0.0074, exact 0.0117, while the
re-scanned heads' largest error was 0.0019) and stayed below 1 on the bundled tiny checkpoints
(tests/engine/test_screened.py prints it); 3 covers the worst case measured. The returned scan's
``agreement`` states the measured error, the margin, τ, how many components were re-scanned and
the estimate's rank agreement with the exact values on the re-scanned heads.

Every re-scanned value is the exact scan's (tests check 1e-5 of the LD scale on the bundled pairs),
and the top-k is the exact scan's top-k whenever the margin holds (checked there too).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from ..errors import Cancelled
from ..models.functional import LayerStack
from ..metrics import DEFAULT_METRIC
from ..vocabulary import DEFAULT_ESTIMATOR, SCREEN_TOP, Ablation, Component, Estimator, Metric
from .attribution import agreement, agreement_by_kind, attribution_scan
from .exact import ExactScanner, task_tensors
from .influence import InfluenceScan, Progress

SAFETY = 3.0
"""Multiple of the screen's error measured on the re-scanned heads taken to bound its error on the
others (module docstring: the worst ratio measured was 2.4)."""


def screen(
    estimate: dict[str, float], exact_of: Callable[[list[str]], dict[str, float]], top: int,
    safety: float = SAFETY, always: Sequence[str] = (),
) -> tuple[dict[str, float], dict]:
    """The screening rule on influences alone: ``estimate`` (component -> estimated influence),
    ``exact_of(ids) -> {id: exact influence}``, ``always``: components re-scanned whatever their
    estimate (the screen's error is measured on the others). Returns the exact influences it
    computed and how (``max_abs_error``, ``margin``, ``threshold``, ``rounds``)."""
    ids = sorted(estimate, key=lambda c: -estimate[c])
    k = min(top, len(ids))
    fixed = set(always)
    screened = [c for c in ids if c not in fixed]
    exact: dict[str, float] = {}
    todo = [c for c in ids if c in fixed] + screened[:k]
    rounds, err, margin, tau = 0, 0.0, 0.0, float("-inf")
    while todo:
        exact.update(exact_of(todo))
        rounds += 1
        err = max((abs(estimate[c] - exact[c]) for c in exact if c not in fixed), default=0.0)
        margin = safety * err
        tau = sorted(exact.values(), reverse=True)[k - 1]
        todo = [c for c in screened if c not in exact and estimate[c] + margin >= tau]
    return exact, {"max_abs_error": err, "margin": margin, "threshold": tau, "rounds": rounds}


def screened_method(
    adapter, view, ablation: Ablation, *, stack: LayerStack, components: Sequence[Component], batch_size: int = 32,
    progress: Progress | None = None, cancelled: Callable[[], bool] | None = None, stage: str = "influence",
    screen_top: int = SCREEN_TOP, metric: Metric = DEFAULT_METRIC, estimator: Estimator | None = None,
) -> InfluenceScan:
    """``scan(method="screened")``: attribution for every component, exact values for the top
    ``screen_top`` and every component that could join them (module docstring), on the adapter's
    functional view ``stack`` (:func:`circuitdiff.scan.scan` runs the naive scan, every value exact,
    for architectures without one)."""
    inputs = dict(task_tensors(view), metric=metric)
    wanted = [c.id for c in components]
    estimator = estimator or DEFAULT_ESTIMATOR
    cheap = attribution_scan(stack, ablation=ablation, estimator=estimator, **inputs)
    index = {c: i for i, c in enumerate(cheap.components)}
    delta = torch.stack([cheap.ablated_ld[index[c]] - cheap.clean_ld for c in wanted]).double().cpu()  # [C, n]
    estimate = {c: abs(float(d.mean())) for c, d in zip(wanted, delta)}

    rows: dict[str, torch.Tensor] = {}
    clean_ld: list[torch.Tensor] = []

    scanner = ExactScanner(stack, ablation=ablation, **inputs)  # clean and corrupted passes, once for every round

    def exact_of(ids: list[str]) -> dict[str, float]:
        if cancelled is not None and cancelled():
            raise Cancelled(f"cancelled during {stage} after {len(rows)} exact components")
        out = scanner.scan(ids)
        base = out.clean_ld.double().cpu()
        clean_ld.append(base)
        for c, r in zip(out.components, out.ablated_ld.double().cpu()):
            rows[c] = r
        if progress is not None:
            progress(stage, len(rows), len(wanted))
        return {c: abs(float((rows[c] - base).mean())) for c in ids}

    mlps = [c.id for c in components if c.head is None]
    exact, how = screen(estimate, exact_of, screen_top, always=mlps)
    base = clean_ld[0]
    ablated = torch.stack([rows[c] if c in rows else base + delta[i] for i, c in enumerate(wanted)])
    scale = float(base.abs().mean())
    heads = [c for c in exact if c not in mlps]
    agree = agreement({c: estimate[c] for c in heads}, {c: exact[c] for c in heads},
                      top_k=min(screen_top, len(heads)))
    agree.update(
        by_kind=agreement_by_kind(estimate, exact, top_k=screen_top, scale=scale),
        screen="attribution", estimator=estimator, n_components=len(wanted), n_exact=len(exact), screen_top=screen_top,
        safety=SAFETY, error_margin=how["margin"], threshold=how["threshold"], rounds=how["rounds"],
        max_abs_error_rel=how["max_abs_error"] / scale if scale > 0 else None,
    )
    if progress is not None:
        progress(stage, len(wanted), len(wanted))
    return InfluenceScan(
        components=wanted, clean_ld=base, ablated_ld=ablated, ablation=ablation, method="screened",
        agreement=agree, exact=[c in exact for c in wanted], metric=metric, estimator=estimator,
    )
