"""Intervals over prompts through the whole chain: similarities, matching and influences recomputed
on every resample (#29 §4).

Every number behind the alignment score comes from the same prompts: the similarities (mean
attention patterns, MLP outputs), the matching that picks the pairs from them, and the influences.
An interval that resamples only the influences (:func:`.alignment.alignment_bootstrap_ci`) holds the
other two at their full-sample values and so misses most of the variation between prompt draws
(on the bundled GPT pair, 40 IOI prompts: another draw's score fell inside a draw's 95% interval 37-58%
of the time; letting only the similarities vary moved the score more than letting only the
influences vary).

Here each resample r (block counts ``c_r`` over the clean pass's prompt blocks,
:func:`.confidence.resample_similarities`) gets:

- the head and MLP similarities on the resampled prompts (the ``Resampled`` matrices; for the paper's
  rescaled eigenvector similarity, rescaled to the resample's own head similarities);
- the pairs, matched again with the spec's rule (``rematch``);
- each component's influence |mean over the resampled prompts of m_ablated − m_clean|, from the
  per-block sums of the per-prompt differences;
- the score, and the depth reference on the resample's own similarities.

The score's and the depth reference's intervals are bias-corrected percentiles
(:func:`corrected_interval`): similarities on resampled prompts (fewer distinct prompts, so noisier
mean patterns) run systematically below the full sample's, by 0.0023 on the bundled GPT pair with
40 prompts, and the plain percentile interval inherits that; shifted by the resamples' own bias
estimate (point − resample median) it covers another prompt draw's score 80% of the time instead of
76% (ten draws, tests/engine/test_verdicts.py). Influence intervals are plain percentiles. Prompts are
resampled in the clean pass's blocks (one prompt per block up to 100 prompts, consecutive runs
beyond), as the match confidences are.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .alignment import normalised_influence
from .confidence import Resampled


@dataclass(frozen=True)
class ChainIntervals:
    scores: np.ndarray  # [R] the score on each resample
    depths: np.ndarray | None  # [R] the depth reference on each resample
    influence_ci95: dict[str, dict[str, tuple[float, float]]]  # role -> component -> interval
    n_resamples: int


def corrected_interval(point: float, samples: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The percentile interval of ``samples`` shifted by their bias estimate, point − median: a
    statistic the resampling pulls one way keeps its interval around the point."""
    tail = 100 * (1 - level) / 2
    lo, mid, hi = np.percentile(samples, [tail, 50, 100 - tail])
    return float(point + lo - mid), float(point + hi - mid)


def block_deltas(ablated: np.ndarray, clean: np.ndarray, blocks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per block, the sums of (m_ablated − m_clean) over its prompts [B, C], and its prompt count [B]."""
    d = (np.asarray(ablated, dtype=np.float64) - np.asarray(clean, dtype=np.float64)[None, :]).T  # [P, C]
    n_blocks = int(blocks.max()) + 1
    sums = np.zeros((n_blocks, d.shape[1]))
    np.add.at(sums, blocks, d)
    return sums, np.bincount(blocks, minlength=n_blocks).astype(np.float64)


def chain_intervals(
    resampled: Resampled,
    rematch: Callable[[np.ndarray, np.ndarray], Sequence],
    deltas: dict[str, tuple[np.ndarray, np.ndarray]],
    rows: dict[str, dict[str, int]],
    *,
    depth: Callable[[Sequence, np.ndarray, np.ndarray], list[float]] | None = None,
    mlp_transform: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
    level: float = 0.95,
) -> ChainIntervals:
    """``rematch(heads, mlps) -> pairs`` (objects with student, teacher, similarity); ``deltas``: role ->
    :func:`block_deltas`; ``rows``: role -> component id -> column of its deltas; ``depth(pairs, heads,
    mlps)``: the depth similarities of the pairs; ``mlp_transform(mlps, heads)``: what the stage does to
    the MLP similarities before matching (the paper's rescaling), None = nothing."""
    counts = resampled.counts
    means = {role: (counts @ sums) / np.maximum(counts @ sizes, 1.0)[:, None] for role, (sums, sizes) in deltas.items()}
    infl = {role: np.abs(m) for role, m in means.items()}  # [R, C]
    scores, depths = np.empty(len(counts)), np.empty(len(counts))
    for r in range(len(counts)):
        # differences below 1e-9 are float noise of the resampled sums: ties, broken as the full sample's
        heads, mlps = np.round(resampled.heads[r], 9), np.round(resampled.mlps[r], 9)
        if mlp_transform is not None:
            mlps = mlp_transform(mlps, heads)
        pairs = rematch(heads, mlps)
        i_s = normalised_influence(np.array([infl["student"][r, rows["student"][p.student]] for p in pairs]))
        i_t = normalised_influence(np.array([infl["teacher"][r, rows["teacher"][p.teacher]] for p in pairs]))
        weight = 1.0 - np.abs(i_s - i_t)
        scores[r] = float(np.mean(np.array([p.similarity for p in pairs]) * weight))
        if depth is not None:
            depths[r] = float(np.mean(np.array(depth(pairs, heads, mlps)) * weight))
    tail = 100 * (1 - level) / 2

    def pct(x: np.ndarray) -> tuple[float, float]:
        lo, hi = np.percentile(x, [tail, 100 - tail])
        return float(lo), float(hi)

    influence_ci = {role: {c: pct(infl[role][:, j]) for c, j in rows[role].items()} for role in rows}
    return ChainIntervals(scores, depths if depth is not None else None, influence_ci, len(counts))
