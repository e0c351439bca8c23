"""Does a model perform the task? The one place that decides (docs/design.md "does not perform the task").

A model **performs the task** when its mean clean logit difference LD = logit[answer] −
logit[distractor] over the prompts is above 0 *and* distinguishable from 0: the lower end of the
95% Student-t interval of the mean is above 0. The interval matters: a seeded random-weight model's
mean LD over a few prompts is positive half of the time, and percentages of such a baseline
(retained %, drops) would be built on noise (docs/authors-code.md §7 pitfall 2). With one prompt there is no
interval, and the sign decides.

Everything downstream reads this decision: a model that does not perform the task has no retained
% and no robustness statistics, and the report and the CLI say so instead of printing numbers.
"""

from __future__ import annotations

from ..metrics import needs_answer
from ._array import ArrayLike, to_numpy

__all__ = ["t975", "logit_diff_lower_bound", "performs_task", "performance"]

# Two-sided 95% Student-t quantiles t_{0.975, df} for df = 1..30; beyond the table the normal 1.96
# is within 2%.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)

def t975(df: int) -> float:
    """t_{0.975, df}: the two-sided 95% Student-t quantile."""
    return _T975[df - 1] if df <= len(_T975) else 1.96

def logit_diff_lower_bound(clean_ld: ArrayLike) -> float:
    """Lower end of the 95% t-interval of the mean clean logit difference over prompts ([n])."""
    ld = to_numpy(clean_ld).ravel()
    n = len(ld)
    mean = float(ld.mean())
    if n < 2:
        return mean
    return mean - t975(n - 1) * float(ld.std(ddof=1)) / n**0.5

def performs_task(clean_ld: ArrayLike) -> bool:
    """Mean LD > 0 and the lower end of its 95% t-interval > 0 (see the module docstring)."""
    ld = to_numpy(clean_ld).ravel()
    return bool(ld.mean() > 0 and logit_diff_lower_bound(ld) > 0)

def performance(values: ArrayLike, correct: ArrayLike | None, metric: str = "logit_diff",
                clean_ld: ArrayLike | None = None) -> dict:
    """The ``performance`` entry of one model (circuitdiff.result.Performance): mean, std and 95%
    t-interval of the clean metric over prompts; for tasks with answers also the clean LD (``clean_ld``,
    the values themselves for ``logit_diff``), top-1 accuracy and :func:`performs_task`, which is
    decided on the logit difference whatever the metric, and is None for metrics without an answer
    (kl, loss: circuitdiff.metrics)."""
    v = to_numpy(values).ravel()
    n = len(v)
    std = float(v.std(ddof=1)) if n > 1 else 0.0
    half = t975(n - 1) * std / n**0.5 if n > 1 else None
    ld = to_numpy(values if metric == "logit_diff" else clean_ld).ravel() if (
        metric == "logit_diff" or clean_ld is not None) else None
    acc = to_numpy(correct).ravel() if correct is not None else None
    return {
        "metric": metric,
        "value": float(v.mean()),
        "value_std": std,
        "value_ci95": None if half is None else [float(v.mean()) - half, float(v.mean()) + half],
        "logit_diff": None if ld is None else float(ld.mean()),
        "logit_diff_std": None if ld is None else (float(ld.std(ddof=1)) if len(ld) > 1 else 0.0),
        "accuracy": float(acc.mean()) if acc is not None and len(acc) else None,
        "performs_task": performs_task(ld) if ld is not None and needs_answer(metric) else None,
    }
