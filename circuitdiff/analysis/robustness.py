"""Robustness ("brittleness") statistics (docs/method.md §Method 6, docs/authors-code.md §3.7).

The question: does the student rely on fewer components, so that losing one of them costs more?
Per model, every component's single-ablation **drop** in percentage points of the clean logit
difference, clamped to [0, 100]:

    m = 100 − clamp(R, 0, 100)        with retained % R = 100·LD_ablated/LD_clean

(Improvements count as 0, a sign flip as 100. The authors' impact-form drops, m = clamp(impact, 0,
100), are in :mod:`circuitdiff.analysis.authors`.) Statistics over a model's list of drops, in the
canonical component order (heads row-major, then MLPs; the bootstrap depends on the order):

- mean drop with a 95% percentile-bootstrap CI (the spec's ``bootstrap`` resamples; the authors
  used 10,000, the ``paper`` preset's default);
- severity S = (1/N) Σ max(0, (min(L, m) − T)/(L − T))^α, L = 100, T = 20, α = 1: the share of
  "severe" drop mass beyond the tolerance T;
- Δmean = student − teacher mean drop, bootstrapped; compression ratio C = (P_T − P_S)/P_T;
  slopes β_mean = Δmean/C and β_sev = Δsev/C (pp per unit of compression);
- the earlier notebook's heads-only extras: worst-5% mean, maximum, Gini coefficient.

Reproducibility contract (``tests/golden/robustness_expected.json`` ``definitions``): every bootstrap
statistic creates ``numpy.random.default_rng(seed)`` (seed 42) afresh and draws each resample with
one ``rng.choice(values, size=n, replace=True)``; Δmean draws the teacher resample *then* the
student resample in each iteration and reports the **mean of the bootstrap differences**. The loops
below follow that call pattern exactly (10,000 small draws take well under a second), so the
numbers equal the authors' ``compute_robustness.py`` bit for bit under numpy 2.x.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ._array import ArrayLike, to_numpy

__all__ = [
    "N_BOOT",
    "SEED",
    "drops_from_retained",
    "mean_with_ci",
    "delta_mean_with_ci",
    "severity",
    "compression_ratio",
    "gini",
    "worst_fraction_mean",
    "ModelRobustnessStats",
    "RobustnessStats",
    "model_robustness",
    "robustness_stats",
]

N_BOOT = 10_000
SEED = 42


def _values(x: ArrayLike, name: str = "values") -> np.ndarray:
    a = to_numpy(x).ravel()
    if a.size == 0:
        raise ValueError(f"{name}: needs at least one value")
    if np.isnan(a).any():
        raise ValueError(f"{name}: contains NaN (a retained % is undefined when the clean logit difference is <= 0)")
    return a


def drops_from_retained(retained_pct: ArrayLike) -> np.ndarray:
    """m = 100 − clamp(R, 0, 100) for retained-% values R."""
    return 100.0 - np.clip(_values(retained_pct, "retained_pct"), 0.0, 100.0)


def _percentile_ci(samples: list[float] | np.ndarray, level: float) -> tuple[float, float]:
    tail = 100 * (1 - level) / 2
    return float(np.percentile(samples, tail)), float(np.percentile(samples, 100 - tail))


def mean_with_ci(
    values: ArrayLike, n_boot: int = N_BOOT, seed: int = SEED, level: float = 0.95
) -> tuple[float, float, float]:
    """(mean, ci_low, ci_high); the CI is the percentile bootstrap of the mean."""
    data = _values(values)
    n = len(data)
    mean = sum(float(v) for v in data) / n  # sequential sum, as the reference (np.mean sums pairwise)
    rng = np.random.default_rng(seed)
    boot = [float(rng.choice(data, size=n, replace=True).mean()) for _ in range(n_boot)]
    return (mean, *_percentile_ci(boot, level))


def _median_sorted(x: np.ndarray) -> float:
    n, m = len(x), len(x) // 2
    return float(x[m]) if n % 2 else float(0.5 * (x[m - 1] + x[m]))


def delta_mean_with_ci(
    teacher_drops: ArrayLike,
    student_drops: ArrayLike,
    n_boot: int = N_BOOT,
    seed: int = SEED,
    level: float = 0.95,
) -> tuple[float, float, float]:
    """(mean of bootstrap (mean_S − mean_T), ci_low, ci_high); teacher drawn first each iteration."""
    t, s = _values(teacher_drops, "teacher_drops"), _values(student_drops, "student_drops")
    rng = np.random.default_rng(seed)
    boot = np.empty(n_boot)
    for b in range(n_boot):
        bt = rng.choice(t, size=len(t), replace=True).mean()
        bs = rng.choice(s, size=len(s), replace=True).mean()
        boot[b] = bs - bt
    return (float(boot.mean()), *_percentile_ci(boot, level))


def severity(drops: ArrayLike, cap: float = 100.0, threshold: float = 20.0, alpha: float = 1.0) -> float:
    """S = (1/N) Σ max(0, (min(L, max(0, m)) − T)/(L − T))^α with L = cap, T = threshold."""
    if cap <= threshold:
        raise ValueError("cap (L) must be greater than threshold (T)")
    m = np.maximum(_values(drops, "drops"), 0.0)
    w = np.maximum(0.0, (np.minimum(cap, m) - threshold) / (cap - threshold)) ** alpha
    return float(sum(float(v) for v in w) / len(w))


def compression_ratio(teacher_params: float, student_params: float) -> float:
    """C = (P_T − P_S) / P_T."""
    if teacher_params <= 0:
        raise ValueError("teacher_params must be positive")
    return (float(teacher_params) - float(student_params)) / float(teacher_params)


def gini(values: ArrayLike) -> float:
    """Gini coefficient of the drops (0 = equal, → 1 = one component carries all).

    Negative values are shifted by the minimum first (the notebook's convention); 0 for an all-zero list.
    """
    x = np.sort(_values(values))
    if x[0] < 0:
        x = x - x[0]
    total = x.sum()
    if total == 0:
        return 0.0
    n = len(x)
    i = np.arange(1, n + 1)
    return float(np.sum((2 * i - n - 1) * x) / (n * total))


def worst_fraction_mean(values: ArrayLike, fraction: float = 0.05) -> float:
    """Mean of the k = ceil(fraction · N) largest drops."""
    x = np.sort(_values(values))[::-1]
    k = max(1, math.ceil(fraction * len(x)))
    return float(x[:k].mean())


@dataclass(frozen=True)
class ModelRobustnessStats:
    n_components: int
    mean_drop: float
    mean_drop_ci95: tuple[float, float] | None
    median_drop: float
    max_drop: float
    severity: float
    worst5_mean: float
    gini: float


@dataclass(frozen=True)
class RobustnessStats:
    teacher: ModelRobustnessStats
    student: ModelRobustnessStats
    compression_ratio: float
    delta_mean_drop: float  # mean_S − mean_T, the point difference
    delta_mean_drop_ci95: tuple[float, float] | None  # percentile bootstrap over components (each model's drawn)
    delta_severity: float
    slope_mean: float | None  # Δmean / C; None when C == 0
    slope_mean_ci95: tuple[float, float] | None
    slope_severity: float | None
    # The paper's figures: the MEAN of the bootstrap differences (not the point difference) and β from it.
    # For two identical drop lists the point is 0 while this is a draw-dependent ±0.3 pp.
    delta_mean_drop_bootstrap_mean: float | None = None
    slope_mean_paper: float | None = None


def model_robustness(drops: ArrayLike, n_boot: int = N_BOOT, seed: int = SEED) -> ModelRobustnessStats:
    """Per-model statistics of a drop list (n_boot = 0: no CI)."""
    m = _values(drops, "drops")
    if n_boot > 0:
        mean, lo, hi = mean_with_ci(m, n_boot, seed)
        ci: tuple[float, float] | None = (lo, hi)
    else:
        mean, ci = sum(float(v) for v in m) / len(m), None
    return ModelRobustnessStats(
        n_components=len(m),
        mean_drop=mean,
        mean_drop_ci95=ci,
        median_drop=_median_sorted(np.sort(m)),
        max_drop=float(m.max()),
        severity=severity(m),
        worst5_mean=worst_fraction_mean(m),
        gini=gini(m),
    )


def robustness_stats(
    teacher_drops: ArrayLike,
    student_drops: ArrayLike,
    teacher_params: float,
    student_params: float,
    *,
    n_boot: int = N_BOOT,
    seed: int = SEED,
) -> RobustnessStats:
    """Everything of §3.7 for one teacher/student pair (drops in canonical component order)."""
    t, s = model_robustness(teacher_drops, n_boot, seed), model_robustness(student_drops, n_boot, seed)
    c = compression_ratio(teacher_params, student_params)
    d = s.mean_drop - t.mean_drop
    d_boot: float | None = None
    d_ci: tuple[float, float] | None = None
    if n_boot > 0:
        d_boot, lo, hi = delta_mean_with_ci(teacher_drops, student_drops, n_boot, seed)
        d_ci = (lo, hi)
    d_sev = s.severity - t.severity
    has_c = c != 0
    return RobustnessStats(
        teacher=t,
        student=s,
        compression_ratio=c,
        delta_mean_drop=d,
        delta_mean_drop_ci95=d_ci,
        delta_severity=d_sev,
        slope_mean=d / c if has_c else None,
        slope_mean_ci95=tuple(sorted((d_ci[0] / c, d_ci[1] / c))) if (has_c and d_ci) else None,
        slope_severity=d_sev / c if has_c else None,
        delta_mean_drop_bootstrap_mean=d_boot,
        slope_mean_paper=d_boot / c if (has_c and d_boot is not None) else None,
    )
