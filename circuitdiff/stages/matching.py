"""Stage ``matching``: pair student and teacher components (argmax either way, or one-to-one), with
thresholds and the paper's duplicated pairs where asked (circuitdiff.analysis.matching), and each
match's bootstrap confidence: the share of resamples choosing the same partner
(circuitdiff.analysis.confidence)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from ..analysis.confidence import (MAX_RESAMPLES, MatchStability, Resampled, match_stability,
                                   resample_similarities, runner_up)
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
    stability: MatchStability | None  # per pair: confidence, runner-up, margin; None without resamples
    n_resamples: int
    unpaired: Any  # circuitdiff.result's unpaired section
    runner_ids: list[str | None]  # per pair: the runner-up's component id (the source's other side)
    resampled: Resampled | None = None  # the similarities on the resamples (stage intervals reuses them)

    @property
    def confidence(self) -> list[float] | None:
        return None if self.stability is None else self.stability.confidence

    @property
    def n_ambiguous(self) -> int | None:
        return None if self.stability is None else sum(self.stability.ambiguous)

    def section(self, infl: dict[str, dict[str, float]]) -> list[Match]:
        st = self.stability
        return [
            Match(student=p.student, teacher=p.teacher, kind=p.kind, similarity=p.similarity, matched=p.matched,
                  student_influence=infl["student"][p.student], teacher_influence=infl["teacher"][p.teacher],
                  duplicated=p.duplicated, confidence=None if st is None else st.confidence[k],
                  runner_up=self.runner_ids[k], margin=None if st is None else st.margin[k],
                  margin_ci95=None if st is None or st.margin_ci95[k] is None else list(st.margin_ci95[k]),
                  ambiguous=None if st is None else st.ambiguous[k])
            for k, p in enumerate(self.pairs)
        ]


def ties(spec: ComparisonSpec) -> str:
    """Argmax ties: the paper preset breaks them as the task's notebook did; otherwise the first."""
    return TASKS[spec.task].paper.ties if spec.preset == "paper" else "first"


def confidence_resamples(spec: ComparisonSpec, n_prompts: int) -> int:
    """Resamples behind the match confidences: the spec's ``bootstrap``, at most MAX_RESAMPLES; none
    with one prompt or without a bootstrap."""
    return min(spec.bootstrap, MAX_RESAMPLES) if n_prompts > 1 else 0


def _ids(ctx: RunContext) -> dict[str, tuple[list[str], list[str]]]:
    return {r: (head_ids(ctx.models[r].n_layers, ctx.models[r].n_heads), mlp_ids(ctx.models[r].n_layers))
            for r in ROLES}


def rematch(ctx: RunContext) -> Callable[[np.ndarray, np.ndarray], list[Pair]]:
    """The spec's matching rule as a function of the two similarity matrices (heads, MLPs)."""
    spec, ids = ctx.spec, _ids(ctx)

    def pairs(heads: np.ndarray, mlps: np.ndarray) -> list[Pair]:
        return match_components(
            heads, mlps, ids["student"][0], ids["teacher"][0], ids["student"][1], ids["teacher"][1],
            direction=spec.matching, head_threshold=spec.head_threshold, mlp_threshold=spec.mlp_threshold,
            ties=ties(spec), duplicate_below_threshold=spec.duplicate_unmatched,
        )
    return pairs


def match(ctx: RunContext, sims: Similarities, compared: dict[str, Any], n_prompts: int) -> Matching:
    spec, ids = ctx.spec, _ids(ctx)
    pairs = rematch(ctx)(sims.heads, sims.mlps)
    n = confidence_resamples(spec, n_prompts)
    full = {"head": np.asarray(sims.heads), "mlp": np.asarray(sims.mlps_raw if sims.mlps_raw is not None else sims.mlps)}
    stability = resampled = None
    if n:
        resampled = resample_similarities(compared["student"].resample_stats(), compared["teacher"].resample_stats(),
                                          mlp_method=sims.mlp_method, qmask=sims.qmask, n_resamples=n, seed=spec.seed,
                                          row_weighted=sims.row_weighted)
        stability = match_stability(resampled, pairs, full, direction=spec.matching, ties=ties(spec))
    by_teacher = spec.matching == "teacher_to_student"
    runner_ids = []
    for p in pairs:  # the runner-up by the full-sample similarities, also without resamples
        side = ids["student" if by_teacher else "teacher"][0 if p.kind == "head" else 1]
        ru = runner_up(full[p.kind], p.teacher_index if by_teacher else p.student_index,
                       p.student_index if by_teacher else p.teacher_index, spec.matching)
        runner_ids.append(None if ru is None else side[ru])
    rest = unpaired(pairs, ids["student"][0] + ids["student"][1], ids["teacher"][0] + ids["teacher"][1])
    return Matching(pairs, stability, n, rest, runner_ids, resampled)
