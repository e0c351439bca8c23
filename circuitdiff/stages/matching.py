"""Stage ``matching``: pair student and teacher components (argmax either way, or one-to-one), with
thresholds and the paper's duplicated pairs where asked (circuitdiff.analysis.matching), and each
match's bootstrap confidence: the share of resamples choosing the same partner
(circuitdiff.analysis.confidence)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from ..analysis.confidence import MAX_RESAMPLES, match_confidence
from ..analysis.matching import Pair, match_components, unpaired
from ..catalogue import TASKS
from ..result import Match
from ..spec import ComparisonSpec
from ..vocabulary import ROLES, head_ids, mlp_ids
from .context import RunContext
from .similarity import Similarities


@dataclass(frozen=True)
class Matching:
    pairs: list[Pair]
    confidence: list[float] | None  # per pair; None without resamples
    n_resamples: int
    unpaired: Any  # circuitdiff.result's unpaired section

    def section(self, infl: dict[str, dict[str, float]]) -> list[Match]:
        return [
            Match(student=p.student, teacher=p.teacher, kind=p.kind, similarity=p.similarity, matched=p.matched,
                  student_influence=infl["student"][p.student], teacher_influence=infl["teacher"][p.teacher],
                  duplicated=p.duplicated, confidence=None if self.confidence is None else self.confidence[k])
            for k, p in enumerate(self.pairs)
        ]


def ties(spec: ComparisonSpec) -> str:
    """Argmax ties: the paper preset breaks them as the task's notebook did; otherwise the first."""
    return TASKS[spec.task].paper.ties if spec.preset == "paper" else "first"


def confidence_resamples(spec: ComparisonSpec, n_prompts: int) -> int:
    """Resamples behind the match confidences: the spec's ``bootstrap``, at most MAX_RESAMPLES; none
    with one prompt or without a bootstrap."""
    return min(spec.bootstrap, MAX_RESAMPLES) if n_prompts > 1 else 0


def match(ctx: RunContext, sims: Similarities, compared: dict[str, Any], n_prompts: int) -> Matching:
    spec = ctx.spec
    ids = {r: (head_ids(ctx.models[r].n_layers, ctx.models[r].n_heads), mlp_ids(ctx.models[r].n_layers))
           for r in ROLES}
    pairs = match_components(
        sims.heads, sims.mlps, ids["student"][0], ids["teacher"][0], ids["student"][1], ids["teacher"][1],
        direction=spec.matching, head_threshold=spec.head_threshold, mlp_threshold=spec.mlp_threshold,
        ties=ties(spec), duplicate_below_threshold=spec.duplicate_unmatched,
    )
    n = confidence_resamples(spec, n_prompts)
    confidence = None
    if n:
        confidence = match_confidence(
            compared["student"].resample_stats(), compared["teacher"].resample_stats(), pairs,
            direction=spec.matching, mlp_method=sims.mlp_method, qmask=sims.qmask, n_resamples=n, seed=spec.seed,
            ties=ties(spec),
        )
    rest = unpaired(pairs, ids["student"][0] + ids["student"][1], ids["teacher"][0] + ids["teacher"][1])
    return Matching(pairs, confidence, n, rest)
