"""Stage ``alignment``: the influence-weighted alignment score (docs/method.md), its bootstrap interval
over prompts, and its calibration against chance (circuitdiff.analysis.alignment, .chance)."""

from __future__ import annotations

import numpy as np

from ..analysis import alignment as alignment_mod
from ..analysis.chance import chance_null
from ..catalogue import TASKS
from ..result import Alignment, ChanceCalibration, Performance
from ..spec import ComparisonSpec
from ..vocabulary import ROLES
from .context import RunContext
from .influence import Influences
from .matching import Matching


def protocol(spec: ComparisonSpec) -> str:
    if spec.preset == "paper":
        return TASKS[spec.task].paper.describe()
    return (f"circuitdiff default: {spec.ablation} ablation, head row cosine without row 0, "
            f"{ {'cka': 'linear CKA', 'eigen': 'rescaled eigenvector', 'eigen_raw': 'raw eigenvector'}[spec.mlp_similarity] }"
            f" MLP similarity, {spec.matching.replace('_', ' ')} matching, each pair once")


def alignment(ctx: RunContext, matching: Matching, infl: Influences, perf: dict[str, Performance]) -> Alignment:
    spec, pairs, scans = ctx.spec, matching.pairs, infl.scans
    by_role = infl.influences()
    score = alignment_mod.alignment_score_from_pairs(pairs, by_role["student"], by_role["teacher"])
    ci = None
    if spec.bootstrap and scans["student"].clean_ld.shape[0] > 1:
        s_row = {c: i for i, c in enumerate(scans["student"].components)}
        t_row = {c: i for i, c in enumerate(scans["teacher"].components)}
        boot = alignment_mod.alignment_bootstrap_ci(
            scans["student"].ablated_ld, scans["student"].clean_ld, scans["teacher"].ablated_ld,
            scans["teacher"].clean_ld, [s_row[p.student] for p in pairs], [t_row[p.teacher] for p in pairs],
            [p.similarity for p in pairs], n_boot=spec.bootstrap, seed=spec.seed,
        )
        ci = [boot.ci95[0], boot.ci95[1]]
    null = chance_null(pairs, by_role["student"], by_role["teacher"], score, n_draws=spec.chance_draws, seed=spec.seed)
    performing = all(perf[r].performs_task is not False for r in ROLES)  # None: the metric has no such test
    return Alignment(
        score=score, ci95=ci, n_pairs=len(pairs), mean_similarity=float(np.mean([p.similarity for p in pairs])),
        direction=spec.matching,
        chance=ChanceCalibration(method=null.method, n=null.n, mean=null.mean, ci95=list(null.ci95),
                                 p_value=null.p_value),
        above_chance=bool(performing and score > null.ci95[1]), protocol=protocol(spec),
        confidence_resamples=matching.n_resamples or None,
    )
