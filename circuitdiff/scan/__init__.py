"""Everything that runs a model to measure it: the clean pass, ablations and the influence scans.

:func:`scan` is the one door to the influence scans (docs/method.md §Method 1), dispatching on an
explicit table of methods (:data:`METHODS`):

- ``naive`` (:mod:`.influence`): the reference, one forward pass per component and prompt batch;
- ``exact`` (:mod:`.exact`): the same numbers from the clean pass and the blocks above the ablated
  layer (tests/engine/test_fast_scan.py: equal to ``naive`` to 1e-5);
- ``attribution`` (:mod:`.attribution`): a first-order estimate from one forward and one backward
  pass, labelled approximate, by the spec's ``estimator`` (plain gradient, or RelP's rules);
- ``screened`` (:mod:`.screened`): attribution for every component, then exact values for the top
  ``screen_top`` and every component that could join them within the estimate's measured error;
  each component says whether its value is exact (``InfluenceScan.exact``).

Every method measures the job's metric (:mod:`circuitdiff.metrics`: logit difference, answer
probability or log-probability, KL from clean, next-token loss), read by one :class:`~.readout.Readout`.
Every method returns an :class:`~.influence.InfluenceScan` whose ``method`` says what really ran
(``exact``/``attribution`` fall back to ``naive`` on architectures without a functional view).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from ..models.adapter import ModelAdapter
from ..models.functional import UnsupportedArchitectureError
from ..metrics import DEFAULT_METRIC
from ..vocabulary import Ablation, Component, Metric, ScanMethod
from .attribution import attribution_method
from .exact import exact_method
from .influence import InfluenceScan, Progress, naive_scan
from .screened import screened_method



@dataclass(frozen=True)
class Method:
    """A scan method: the function that runs it and the options it takes from a resolved spec
    (circuitdiff.spec.ComparisonSpec), which also key its activation-cache entries."""

    run: Callable[..., InfluenceScan]
    options: Callable[[Any], dict[str, Any]] = lambda spec: {}


METHODS: dict[str, Method] = {
    "naive": Method(naive_scan),
    "exact": Method(exact_method),
    "attribution": Method(attribution_method, lambda spec: {"estimator": spec.estimator, **(
        {"check": spec.attribution_check, "seed": spec.seed} if spec.attribution_check else {})}),
    "screened": Method(screened_method, lambda spec: {"screen_top": spec.screen_top, "estimator": spec.estimator}),
}

__all__ = ["METHODS", "InfluenceScan", "scan", "method_options"]


def method_options(spec: Any) -> dict[str, Any]:
    """The options ``spec.scan`` takes from ``spec`` (see :class:`Method`)."""
    return METHODS[spec.scan].options(spec)


def scan(
    adapter: ModelAdapter,
    view,
    ablation: Ablation,
    *,
    method: ScanMethod = "naive",
    components: Sequence[Component] | None = None,
    batch_size: int = 32,
    progress: Progress | None = None,
    cancelled: Callable[[], bool] | None = None,
    stage: str = "influence",
    metric: Metric = DEFAULT_METRIC,
    **options,
) -> InfluenceScan:
    """Influence of every component of ``adapter`` (or of ``components``) on the task ``view`` (a
    TokenizedTask), measured on ``metric``. ``options`` go to the method (attribution: ``check=n``
    exact-checks n sampled components, ``seed``)."""
    if method not in METHODS:
        raise ValueError(f"unknown scan method {method!r}; choose one of: {', '.join(METHODS)}")
    comps = list(components) if components is not None else adapter.components()
    common = dict(components=comps, batch_size=batch_size, progress=progress, cancelled=cancelled, stage=stage,
                  metric=metric)
    if method == "naive":
        return naive_scan(adapter, view, ablation, **common)
    try:  # every other method runs on the adapter's functional view of its layers
        stack = adapter.functional()
    except UnsupportedArchitectureError:  # none for this architecture: the reference scan (it says naive)
        return naive_scan(adapter, view, ablation, **common)
    return METHODS[method].run(adapter, view, ablation, stack=stack, **common, **options)
