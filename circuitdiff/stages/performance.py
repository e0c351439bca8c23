"""Who performs the task (circuitdiff.analysis.performance), decided on the clean logit difference
for every answer metric: a model that does not has no robustness and no circuit to prune."""

from __future__ import annotations

from typing import Any

from ..analysis.performance import logit_diff_lower_bound, performance
from ..result import Performance
from ..scan.clean import BATCH_SIZE, CleanStats
from ..scan.influence import clean_logit_diffs
from ..tasks.dataset import TaskData
from ..vocabulary import ROLES
from .context import RunContext
from .influence import Influences


def performances(ctx: RunContext, task: TaskData, clean: dict[str, CleanStats],
                 infl: Influences) -> dict[str, Performance]:
    answers = task.kind == "answers"
    lds = {r: infl.scans[r].clean_ld if ctx.spec.metric == "logit_diff" else
           clean_logit_diffs(ctx.models[r], task.view(r), BATCH_SIZE) if answers else None for r in ROLES}
    out = {r: Performance(**performance(infl.scans[r].clean_ld, clean[r].correct if answers else None,
                                        infl.scans[r].metric, lds[r])) for r in ROLES}
    ctx.warnings.extend(_warnings(lds, out))
    return out


def _warnings(lds: dict[str, Any], perf: dict[str, Performance]) -> list[str]:
    """lds: per model the clean logit difference [n] (None for a plain-text task)."""
    out = []
    for r in ROLES:
        p = perf[r]
        if p.performs_task is False:
            out.append(
                f"the {r} does not perform the task (clean logit difference {p.logit_diff:.3f}, "
                f"95% interval lower end {logit_diff_lower_bound(lds[r]):.3f} <= 0): its robustness is "
                "not computed" + ("" if p.logit_diff > 0 else " and its retained % is undefined")
            )
    return out
