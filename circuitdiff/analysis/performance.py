"""Does a model perform the task? The one place that decides (DESIGN.md "does not perform the task").

A model **performs the task** when its mean clean logit difference LD = logit[answer] −
logit[distractor] over the prompts is above 0 *and* distinguishable from 0: the lower end of the
95% Student-t interval of the mean is above 0. The interval matters: a seeded random-weight model's
mean LD over a few prompts is positive half of the time, and percentages of such a baseline
(retained %, drops) would be built on noise (paper-notes §7 pitfall 2). With one prompt there is no
interval, and the sign decides.

Everything downstream reads this decision: a model that does not perform the task has no retained
% and no robustness statistics, and the report and the CLI say so instead of printing numbers.
"""

from __future__ import annotations

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

def performance(clean_ld: ArrayLike, correct: ArrayLike) -> dict:
    """The ``performance`` entry of one model (circuitdiff.result.Performance): mean and std of the
    clean LD over prompts, top-1 accuracy, and :func:`performs_task`."""
    ld = to_numpy(clean_ld).ravel()
    return {
        "logit_diff": float(ld.mean()),
        "logit_diff_std": float(ld.std(ddof=1)) if len(ld) > 1 else 0.0,
        "accuracy": float(to_numpy(correct).ravel().mean()),
        "performs_task": performs_task(ld),
    }
