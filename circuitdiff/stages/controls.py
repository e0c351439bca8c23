"""Stage ``controls``: each control student of ``spec.controls`` compared with the same teacher under
the same resolved spec and data (circuitdiff.analysis.verdict: what a model of the data that was not
distilled from this teacher scores).

A control's comparison is a whole comparison with the control as the student, without circuits and
without controls of its own, run by the ``compare`` the pipeline passes in (so the same loader and
activation cache serve it: the teacher's clean statistics and scan come from the cache). Its
progress is reported as ``control:<model>:<stage>``.
"""

from __future__ import annotations

from typing import Callable

from ..result import ComparisonResult, ControlScore
from ..spec import ComparisonSpec
from .context import RunContext


def control_scores(ctx: RunContext, compare: Callable[[ComparisonSpec, str], ComparisonResult]) -> list[ControlScore]:
    """``compare(spec, prefix)``: run one comparison, its stages reported under ``prefix``."""
    out = []
    for ref in ctx.spec.controls:
        spec = ctx.spec.model_copy(update={"student": ref, "controls": [], "circuits": None})
        r = compare(spec, f"control:{ref.id}:")
        a = r.alignment
        out.append(ControlScore(model=ref.id, score=a.score, ci95=a.ci95,
                                chance_mean=None if a.chance is None else a.chance.mean, above_chance=a.above_chance,
                                performs_task=r.performance["student"].performs_task))
    return out
