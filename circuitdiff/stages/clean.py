"""Stages ``clean`` and ``words``: what attention and MLP similarity compare.

``clean``: one clean pass per model, cached (circuitdiff.scan.clean): mean attention patterns, MLP
output rows, top-1 correctness. ``words`` (pairs without a shared tokenisation only, issue #4):
patterns and MLP rows pooled to the words both inputs share (circuitdiff.scan.words).
"""

from __future__ import annotations

from typing import Any

from ..scan.clean import BATCH_SIZE, CleanStats, clean_pass
from ..scan.words import word_pass
from ..tasks.dataset import TaskData
from ..vocabulary import ROLES
from .context import RunContext


def clean_passes(ctx: RunContext, task: TaskData, roles: tuple[str, ...] = ROLES) -> dict[str, CleanStats]:
    out: dict[str, CleanStats] = {}
    for k, role in enumerate(roles):
        adapter, view = ctx.models[role], task.view(role)
        out[role] = ctx.cache.clean(role, adapter, view, lambda: clean_pass(adapter, view), CleanStats)
        ctx.clock.tick(k + 1, len(roles))
    return out


def compared_statistics(ctx: RunContext, task: TaskData, clean: dict[str, CleanStats]) -> dict[str, Any]:
    """The statistics similarity reads: the clean ones, or (stage ``words``) their word-pooled form."""
    if not task.word_aligned:
        return clean
    with ctx.clock.stage("words"):
        w_max = max(len(w) for w in task.words)
        compared = {r: word_pass(ctx.models[r], task.view(r), w_max, BATCH_SIZE) for r in ROLES}
    ctx.warnings.append(
        f"teacher and student do not share a tokenisation ({ctx.teacher.family} vs {ctx.student.family}): tokens "
        "are mapped to the words both inputs share by character offsets; attention is compared on "
        + ("the word-aligned end-query row" if task.token_alignment == "word_end_row" else
           "word-pooled patterns (sum over a word's key tokens, mean over its query tokens)")
        + ", MLP outputs on per-word means"
    )
    return compared
