"""Stage ``intervals``: the alignment score's, the depth reference's and each influence's interval over
prompts, with similarities, matching and influences all recomputed on every resample
(circuitdiff.analysis.chain). Reuses the resampled similarities of the match confidences; none
without resamples (``bootstrap`` 0, or one prompt)."""

from __future__ import annotations

import numpy as np

from ..analysis import similarity as similarity_mod
from ..analysis import verdict as verdict_mod
from ..analysis.chain import ChainIntervals, block_deltas, chain_intervals
from ..scan.clean import prompt_blocks
from ..vocabulary import ROLES
from .context import RunContext
from .influence import Influences
from .matching import Matching, rematch
from .similarity import Similarities


def intervals(ctx: RunContext, matching: Matching, infl: Influences, sims: Similarities) -> ChainIntervals | None:
    if matching.resampled is None:
        return None
    scans = infl.scans
    blocks = prompt_blocks(int(scans["student"].clean_ld.shape[0])).numpy()
    deltas = {r: block_deltas(np.asarray(scans[r].ablated_ld), np.asarray(scans[r].clean_ld), blocks) for r in ROLES}
    rows = {r: {c: i for i, c in enumerate(scans[r].components)} for r in ROLES}
    student, teacher = ctx.student, ctx.teacher

    def depth(pairs, heads, mlps):
        return verdict_mod.depth_similarities(pairs, heads, mlps, student.n_layers, teacher.n_layers, teacher.n_heads)

    transform = None
    if sims.mlp_method == "eigen_top3_rescaled":  # as the similarity stage: raw, rescaled to the heads, clipped
        def transform(raw, heads):
            return similarity_mod.clip_similarity(similarity_mod.rescale_to_heads(raw, heads))
    return chain_intervals(matching.resampled, rematch(ctx), deltas, rows, depth=depth, mlp_transform=transform)
