"""Stages ``influence:<role>``: every head and MLP ablated alone, per model (circuitdiff.scan).

The spec's method, ablation and metric, with the options the method table takes from the spec
(circuitdiff.scan.METHODS); each model's scan is cached on its own, so a new student against the
same teacher re-scans only the student. ``method`` says what really ran for the pair: ``exact`` and
``attribution`` fall back to ``naive`` on an architecture without a functional view.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..scan import method_options, scan
from ..scan.clean import BATCH_SIZE
from ..scan.influence import InfluenceScan
from ..tasks.dataset import TaskData
from ..vocabulary import ROLES
from .context import RunContext


@dataclass(frozen=True)
class Influences:
    scans: dict[str, InfluenceScan]
    method: str  # what ran for the pair

    def influences(self) -> dict[str, dict[str, float]]:
        return {r: self.scans[r].influences() for r in ROLES}


def scan_influences(ctx: RunContext, task: TaskData, roles: tuple[str, ...] = ROLES,
                    before: Callable[[str], None] | None = None) -> Influences:
    """``roles``: the models to scan (a worker scanning one model of a split job passes one);
    ``before(role)``: called before each model's cached scan is looked up, so a caller whose other
    worker is scanning that model can wait for its cache entry (worker/tasks.py)."""
    spec = ctx.spec
    options = method_options(spec)
    scans: dict[str, InfluenceScan] = {}
    for role in roles:
        stage = f"influence:{role}"
        if before is not None:
            before(role)
        with ctx.clock.stage(stage):
            adapter, view = ctx.models[role], task.view(role)
            scans[role] = ctx.cache.scan(
                role, adapter, view, {"method": spec.scan, "ablation": spec.ablation, "metric": spec.metric, **options},
                lambda: scan(adapter, view, spec.ablation, method=spec.scan, batch_size=BATCH_SIZE,
                             progress=ctx.clock.progress, cancelled=ctx.clock.cancelled, stage=stage,
                             metric=spec.metric, **options),
                InfluenceScan,
            )
    ran = {scans[r].method for r in roles}
    method = spec.scan
    if ran != {method}:  # exact/attribution on an architecture without a functional view: naive ran
        ctx.warnings.append(f"scan method {method!r} does not cover every model of this pair; ran: "
                            + ", ".join(f"{r} {scans[r].method}" for r in roles))
        method = "naive" if "naive" in ran else method
    return Influences(scans, method)
