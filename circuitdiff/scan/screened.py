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
   components (0.76 of the exact scan's cost) where the uniform rule re-scanned 64 (0.50), because the MLPs'
   exact values, large and cheap (7% of the exact scan's cost), raise τ for every head; at
   ``screen_top`` 5 it would save 6 points of cost (0.07 against 0.13). Not worth a second rule.
3. **Measure the screen's error and widen.** On the re-scanned heads R the estimate's error is
   known. Each head c gets an error scale s_c (its *error model*, below) and the error per unit of
   scale is measured: ``e = max_{c in R} |Î_c − I_c| / s_c``. The k-th largest exact influence found
   so far, τ, is a lower bound of the true k-th largest influence (any k exact values are), so a head
   can belong to the top-k only if its true influence reaches τ. Its influence is taken to be at
   most ``Î_c + margin_c`` with ``margin_c = safety · e · s_c``; every head with
   ``Î_c + margin_c ≥ τ`` is re-scanned too, and this step repeats with the larger R (e and τ can
   only grow) until no head is left that could reach τ.
4. Everything else keeps its estimate, marked ``exact: false`` in the result.

**Error models** (:data:`ERROR_MODELS`, by the spec's ``estimator``):

- ``perturbation`` (the ``gradient`` screen): s_c is how far ablating c alone moves the residual
  stream, relative to it (:meth:`.exact.ExactScanner.perturbation`, Σ_p ||δ_p||² / ||x_p||², from the
  passes the exact scan makes anyway). Gradient x activation is a first-order Taylor expansion, its
  error is of second order in δ, and every LayerNorm/RMSNorm reads δ relative to ||x||. A head whose
  ablation barely moves the stream gets a narrow margin, one that moves it a lot a wide one. Replayed
  on the exact values (IOI, mean ablation; ``screen_top`` 5, 10, 20; 10, 20 and 100 prompts; the
  GPT-2-small-shaped random pair and the zoo GPT and Llama pairs) the top-k stayed the exact scan's in
  every case, and the largest error on a head left estimated, in units of its own ``e · s_c``, was
  2.99 (distilgpt2-random, 10 prompts, ``screen_top`` 5): ``safety`` 5. At ``screen_top`` 20 and 100
  prompts it re-scans 31 of the 78 components of the random student (0.55 of the exact scan's cost)
  where one margin for every head re-scanned all 78; measured end to end, screened went from 1.99x
  to 2.39x the exact scan on the pair (benchmarks/README.md, docs/method.md §The screened scan's
  margins).
- ``uniform`` (the ``relp`` screen): s_c = 1, one margin for every head, ``safety`` 3 (the largest
  error on a head left estimated reached 2.4x the re-scanned heads' largest on the GPT-2-small-shaped
  random student, ``zoo:distilgpt2-random``, IOI, 10 prompts). RelP's rules are not a Taylor
  expansion, so its error does not scale with δ² (replayed as above with the perturbation model, an
  error of 7.1 units was left outside the margin).

The returned scan's ``agreement`` states the error model, the measured error (``max_abs_error``,
``error_per_scale`` e), the widest margin given to a head left estimated, τ, how many components
were re-scanned and the estimate's rank agreement with the exact values on the re-scanned heads
(tests/engine/test_screened.py checks every head left estimated against its own margin).

Every re-scanned value is the exact scan's (tests check 1e-5 of the LD scale on the bundled pairs),
and the top-k is the exact scan's top-k whenever the margin holds (checked there too).
"""

from __future__ import annotations

from typing import Callable, Literal, Sequence

import torch

from ..errors import Cancelled
from ..models.functional import LayerStack
from ..metrics import DEFAULT_METRIC
from ..vocabulary import DEFAULT_ESTIMATOR, SCREEN_TOP, Ablation, Component, Estimator, Metric
from .attribution import agreement, agreement_by_kind, attribution_scan
from .exact import ExactScanner, task_tensors
from .influence import InfluenceScan, Progress

ErrorModel = Literal["perturbation", "uniform"]

ERROR_MODELS: dict[str, tuple[ErrorModel, float]] = {
    "gradient": ("perturbation", 5.0),
    "relp": ("uniform", 3.0),
}
"""Per estimator (vocabulary.Estimator): the screen's error model and its safety factor, the multiple
of the error measured on the re-scanned heads taken to bound the error on the others (module
docstring: the worst ratios measured were 2.99 and 2.4)."""


def screen(
    estimate: dict[str, float], exact_of: Callable[[list[str]], dict[str, float]], top: int,
    safety: float, always: Sequence[str] = (), scale: dict[str, float] | None = None,
) -> tuple[dict[str, float], dict]:
    """The screening rule on influences alone: ``estimate`` (component -> estimated influence),
    ``exact_of(ids) -> {id: exact influence}``, ``always``: components re-scanned whatever their
    estimate (the screen's error is measured on the others), ``scale``: each component's error scale
    s_c (None: 1 for every component, the ``uniform`` model). Returns the exact influences it computed
    and how (``max_abs_error``, ``error_per_scale``, ``margin``: the widest margin given to a
    component left estimated, ``threshold``, ``rounds``)."""
    ids = sorted(estimate, key=lambda c: -estimate[c])
    k = min(top, len(ids))
    fixed = set(always)
    screened = [c for c in ids if c not in fixed]
    scale = scale or {}
    floor = 1e-12 * max(scale.values(), default=1.0)  # a zero scale must not divide: it bounds nothing
    s = {c: max(scale.get(c, 1.0), floor) for c in ids}
    exact: dict[str, float] = {}
    todo = [c for c in ids if c in fixed] + screened[:k]
    rounds, err, per, tau = 0, 0.0, 0.0, float("-inf")
    while todo:
        exact.update(exact_of(todo))
        rounds += 1
        measured = [c for c in exact if c not in fixed]
        err = max((abs(estimate[c] - exact[c]) for c in measured), default=0.0)
        per = max((abs(estimate[c] - exact[c]) / s[c] for c in measured), default=0.0)
        tau = sorted(exact.values(), reverse=True)[k - 1]
        todo = [c for c in screened if c not in exact and estimate[c] + safety * per * s[c] >= tau]
    margin = max((safety * per * s[c] for c in screened if c not in exact), default=0.0)
    return exact, {"max_abs_error": err, "error_per_scale": per, "margin": margin, "threshold": tau,
                   "rounds": rounds}


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
    model, safety = ERROR_MODELS[estimator]
    heads = [c for c in wanted if c not in mlps]
    scale = scanner.perturbation(heads) if model == "perturbation" else None
    exact, how = screen(estimate, exact_of, screen_top, safety, always=mlps, scale=scale)
    base = clean_ld[0]
    ablated = torch.stack([rows[c] if c in rows else base + delta[i] for i, c in enumerate(wanted)])
    ld_scale = float(base.abs().mean())
    rescanned = [c for c in exact if c not in mlps]
    agree = agreement({c: estimate[c] for c in rescanned}, {c: exact[c] for c in rescanned},
                      top_k=min(screen_top, len(rescanned)))
    agree.update(
        by_kind=agreement_by_kind(estimate, exact, top_k=screen_top, scale=ld_scale),
        screen="attribution", estimator=estimator, n_components=len(wanted), n_exact=len(exact), screen_top=screen_top,
        error_model=model, safety=safety, error_per_scale=how["error_per_scale"], error_margin=how["margin"],
        threshold=how["threshold"], rounds=how["rounds"],
        max_abs_error_rel=how["max_abs_error"] / ld_scale if ld_scale > 0 else None,
    )
    if progress is not None:
        progress(stage, len(wanted), len(wanted))
    return InfluenceScan(
        components=wanted, clean_ld=base, ablated_ld=ablated, ablation=ablation, method="screened",
        agreement=agree, exact=[c in exact for c in wanted], metric=metric, estimator=estimator,
    )
