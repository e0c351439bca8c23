"""Is an alignment score above chance? A permutation null that keeps each model's structure.

The alignment score A = (1/N) Σ_p S_p (1 − |Î_S,p − Î_T,p|) (:mod:`.alignment`) is a weighted mean of
similarities. Two models whose components all look alike (near-uniform attention, say) get high
similarities for every pair, and so a high score, without sharing any computation. A score means
"aligned" only if it beats what the same two models score when the correspondence between them is
broken.

The null: draw a permutation π of the **student's components within kind** (heads among heads, MLPs
among MLPs), let component π(c) take the similarity profile of component c, match again and score. Each model keeps its own influences (their distribution and concentration),
its own similarity structure and the matching rule; only *which* student component plays which
teacher role is random. Because every matching rule (argmax either way, one-to-one, the paper's
duplicated pairs) depends on the similarity rows alone, matching the permuted rows gives the same
pairs with the student labels permuted: the null score of a draw is A with the student influences
permuted within kind over the fixed pair list. :func:`chance_null` computes it that way, all draws
at once; tests/engine/test_analysis.py checks it against re-matching permuted similarity matrices.

Reported: the null's mean and 95% interval over ``n_draws`` seeded draws, and the permutation
p-value (1 + #{null ≥ observed}) / (n_draws + 1). A pair is *above chance* when the observed score
is above the null's 95% upper end and both models perform the task (a score around a failing model
measures noise, circuitdiff.analysis.performance).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..vocabulary import parse_component
from .alignment import normalised_influence

__all__ = ["METHOD", "ChanceNull", "chance_null"]

METHOD = "student components permuted within kind, pairs re-matched (influences and similarities kept)"


@dataclass(frozen=True)
class ChanceNull:
    method: str
    n: int
    mean: float
    ci95: tuple[float, float]
    p_value: float
    samples: np.ndarray  # [n] null scores


def chance_null(
    pairs: Sequence,
    student_influence: Mapping[str, float],
    teacher_influence: Mapping[str, float],
    observed: float,
    *,
    n_draws: int = 1000,
    seed: int = 0,
) -> ChanceNull:
    """The permutation null of the alignment score of ``pairs`` (objects with ``.student``,
    ``.teacher``, ``.similarity``; duplicates included as in the score).

    student_influence: every student component's influence (the permutation runs over all of them,
    paired or not); teacher_influence: likewise for the teacher.
    """
    if n_draws < 1:
        raise ValueError("n_draws must be >= 1")
    s_ids = list(student_influence)
    pos = {c: i for i, c in enumerate(s_ids)}
    s_all = np.array([student_influence[c] for c in s_ids], dtype=np.float64)  # [Cs]
    s_idx = np.array([pos[p.student] for p in pairs])  # [N]
    i_t = normalised_influence([teacher_influence[p.teacher] for p in pairs])  # [N]
    sim = np.array([p.similarity for p in pairs], dtype=np.float64)  # [N]

    rng = np.random.default_rng(seed)
    perm = np.tile(np.arange(len(s_ids)), (n_draws, 1))  # [D, Cs]: perm[d, c] takes c's similarity profile
    for kind in ("head", "mlp"):
        block = np.array([i for i, c in enumerate(s_ids) if parse_component(c).kind == kind], dtype=int)
        if len(block) > 1:
            perm[:, block] = rng.permuted(np.tile(block, (n_draws, 1)), axis=1)
    i_s = normalised_influence(s_all[perm[:, s_idx]])  # [D, N]
    null = np.mean(sim * (1.0 - np.abs(i_s - i_t)), axis=-1)  # [D]
    lo, hi = np.percentile(null, [2.5, 97.5])
    # ties (e.g. every influence equal) count against the observed score: a conservative p-value
    p = (1 + int(np.sum(null >= observed - 1e-12))) / (n_draws + 1)
    return ChanceNull(METHOD, n_draws, float(null.mean()), (float(lo), float(hi)), float(p), null)
