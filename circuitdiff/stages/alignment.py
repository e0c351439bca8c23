"""Stage ``alignment``: the influence-weighted alignment score (docs/method.md), its bootstrap interval
over prompts, its calibration against chance (circuitdiff.analysis.alignment, .chance), the depth
reference, and the verdict read from them and the controls' scores (circuitdiff.analysis.verdict)."""

from __future__ import annotations

import dataclasses

import numpy as np

from ..analysis import alignment as alignment_mod
from ..analysis import verdict as verdict_mod
from ..analysis.chance import chance_null
from ..catalogue import TASKS
from ..result import Alignment, ChanceCalibration, ControlScore, Performance, Reference
from ..spec import ComparisonSpec
from ..vocabulary import ROLES
from .context import RunContext
from .influence import Influences
from .matching import Matching
from .similarity import Similarities
from ..analysis.chain import ChainIntervals, corrected_interval


def protocol(spec: ComparisonSpec) -> str:
    if spec.preset == "paper":
        return TASKS[spec.task].paper.describe()
    return (f"circuitdiff default: {spec.ablation} ablation, head row cosine without row 0, "
            f"{ {'cka': 'linear CKA', 'eigen': 'rescaled eigenvector', 'eigen_raw': 'raw eigenvector'}[spec.mlp_similarity] }"
            f" MLP similarity, {spec.matching.replace('_', ' ')} matching, each pair once")


CHAIN_METHOD = ("{n} bootstrap resamples of the prompts, each with the similarities, the matching and the influences "
                "recomputed; percentile interval shifted by the resamples' bias (circuitdiff.analysis.chain)")
INFLUENCE_ONLY_METHOD = ("bootstrap resamples of the prompts recomputing the influences only; similarities and matching "
                         "held at their full-sample values")
DEPTH_METHOD = ("each pair's similarity replaced by the student component's mean similarity to the teacher "
                "components of its kind at the same relative depth; the score's pairs and influences")


def _score_ci(ctx: RunContext, infl: Influences, pairs, similarity: list[float]) -> list[float] | None:
    """The bootstrap interval over prompts of the score of ``pairs`` with these similarities."""
    spec, scans = ctx.spec, infl.scans
    if not spec.bootstrap or scans["student"].clean_ld.shape[0] <= 1:
        return None
    s_row = {c: i for i, c in enumerate(scans["student"].components)}
    t_row = {c: i for i, c in enumerate(scans["teacher"].components)}
    boot = alignment_mod.alignment_bootstrap_ci(
        scans["student"].ablated_ld, scans["student"].clean_ld, scans["teacher"].ablated_ld,
        scans["teacher"].clean_ld, [s_row[p.student] for p in pairs], [t_row[p.teacher] for p in pairs],
        similarity, n_boot=spec.bootstrap, seed=spec.seed,
    )
    return [boot.ci95[0], boot.ci95[1]]


def alignment(ctx: RunContext, matching: Matching, infl: Influences, perf: dict[str, Performance],
              sims: Similarities, controls: list[ControlScore], chain: ChainIntervals | None) -> Alignment:
    """``chain``: the intervals through the whole chain (stage intervals); without them (no resamples
    of similarities) the intervals resample the influences only, and ``ci_method`` says so."""
    spec, pairs = ctx.spec, matching.pairs
    by_role = infl.influences()
    score = alignment_mod.alignment_score_from_pairs(pairs, by_role["student"], by_role["teacher"])
    ci = (list(corrected_interval(score, chain.scores)) if chain is not None else
          _score_ci(ctx, infl, pairs, [p.similarity for p in pairs]))
    null = chance_null(pairs, by_role["student"], by_role["teacher"], score, n_draws=spec.chance_draws, seed=spec.seed)
    performing = all(perf[r].performs_task is not False for r in ROLES)  # None: the metric has no such test
    above = bool(performing and score > null.ci95[1])
    depth_sims = verdict_mod.depth_similarities(pairs, np.asarray(sims.heads), np.asarray(sims.mlps),
                                                ctx.student.n_layers, ctx.teacher.n_layers, ctx.teacher.n_heads)
    depth_score = alignment_mod.alignment_score_from_pairs(
        [dataclasses.replace(p, similarity=d) for p, d in zip(pairs, depth_sims)], by_role["student"], by_role["teacher"])
    depth = Reference(score=depth_score, ci95=list(corrected_interval(depth_score, chain.depths))
                      if chain is not None and chain.depths is not None else _score_ci(ctx, infl, pairs, depth_sims),
                      method=DEPTH_METHOD)
    usable = [c for c in controls if c.score is not None and c.performs_task is not False]
    verdict = verdict_mod.decide(score, ci, performing=performing, above_chance=above, depth=depth, controls=usable)
    return Alignment(
        score=score, ci95=ci, n_pairs=len(pairs), mean_similarity=float(np.mean([p.similarity for p in pairs])),
        direction=spec.matching,
        chance=ChanceCalibration(method=null.method, n=null.n, mean=null.mean, ci95=list(null.ci95),
                                 p_value=null.p_value),
        above_chance=above, protocol=protocol(spec),
        confidence_resamples=matching.n_resamples or None, n_ambiguous=matching.n_ambiguous,
        depth_reference=depth, controls=controls, verdict=verdict,
        ci_method=CHAIN_METHOD.format(n=chain.n_resamples) if chain is not None else
        (INFLUENCE_ONLY_METHOD if ci is not None else None),
        verdict_reason=verdict_mod.reason(verdict, score, ci, null.ci95[1], depth, controls),
    )
