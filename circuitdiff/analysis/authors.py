"""The authors' computations that circuitdiff's own results do not use, kept to reproduce their numbers.

Only the golden tests (tests/engine/test_golden.py) call these: each reproduces a step of the authors'
``robustness/plots/compute_robustness.py`` (docs/authors-code.md §3.7) that the engine does differently or not
at all. The engine's own statistics are in :mod:`circuitdiff.analysis.robustness`.
"""

from __future__ import annotations

import numpy as np

from ._array import ArrayLike
from .robustness import N_BOOT, SEED, _median_sorted, _percentile_ci, _values

__all__ = ["drops_from_impact", "median_with_ci"]


def drops_from_impact(impact_pct: ArrayLike) -> np.ndarray:
    """m = clamp(impact, 0, 100) for impacts already expressed as a drop (100 − R)."""
    return np.clip(_values(impact_pct, "impact_pct"), 0.0, 100.0)


def median_with_ci(
    values: ArrayLike, n_boot: int = N_BOOT, seed: int = SEED, level: float = 0.95
) -> tuple[float, float, float]:
    """(median, ci_low, ci_high). Resamples the *sorted* list, as the reference does."""
    data = np.sort(_values(values))
    rng = np.random.default_rng(seed)
    boot = [_median_sorted(np.sort(rng.choice(data, size=len(data), replace=True))) for _ in range(n_boot)]
    return (_median_sorted(data), *_percentile_ci(boot, level))
