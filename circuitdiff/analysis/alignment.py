"""The influence-weighted alignment score (docs/method.md §Method 5, docs/authors-code.md §3.6).

For the list of matched pairs p = (I_S, I_T, S) — influence of the student component, influence of
the teacher component it is paired with, and their similarity —::

    Î_S = I_S / Σ_p I_S,   Î_T = I_T / Σ_p I_T          (sums over the list, duplicates included)
    A   = (1/N) Σ_p S_p · (1 − |Î_S,p − Î_T,p|)

A pair scores its similarity, discounted by how differently important the two components are to
their own model. Because the influences are normalised per model, A does not depend on the unit of
influence (logit difference, or percentage points of the clean logit difference) nor on the scale of
either model's clean performance. If a model's influences sum to 0 (no component matters at all),
its normalised influences are taken as uniform, 1/N, the limit of equal tiny influences.

Confidence interval (not in the paper, which reports none): :func:`alignment_bootstrap_ci` resamples
prompts with replacement, recomputes every component's influence |mean LD_ablated − mean LD_clean| on
the resample, and recomputes A with the matching and similarities held fixed (they come from
attention/MLP statistics, not from the logit differences). When both models see the same prompts the
same resample indices are used for both, which keeps the prompt-level correlation between them.
The resample means are one matrix product: counts [B, P] @ per-prompt deltas [P, C].
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ._array import ArrayLike, to_numpy

__all__ = [
    "normalised_influence",
    "alignment_score",
    "alignment_score_from_pairs",
    "AlignmentCI",
    "alignment_bootstrap_ci",
]


def normalised_influence(influence: ArrayLike) -> np.ndarray:
    """I / ΣI over the last axis; uniform 1/N where the sum is 0. Works on [N] or [B, N]."""
    i = to_numpy(influence)
    if (i < 0).any():
        raise ValueError("influences must be non-negative (|LD_ablated - LD_clean|)")
    total = i.sum(axis=-1, keepdims=True)
    uniform = np.full_like(i, 1.0 / i.shape[-1])
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, i / np.where(total > 0, total, 1.0), uniform)


def alignment_score(student_influence: ArrayLike, teacher_influence: ArrayLike, similarity: ArrayLike) -> float:
    """A = mean_p S_p (1 − |Î_S,p − Î_T,p|) over the N pairs (each argument is [N], pair-aligned)."""
    i_s, i_t, s = to_numpy(student_influence), to_numpy(teacher_influence), to_numpy(similarity)
    if not (i_s.shape == i_t.shape == s.shape) or i_s.ndim != 1:
        raise ValueError(f"need three [N] arrays, got {i_s.shape}, {i_t.shape}, {s.shape}")
    if i_s.size == 0:
        raise ValueError("alignment score of an empty pair list")
    return float(np.mean(s * (1.0 - np.abs(normalised_influence(i_s) - normalised_influence(i_t)))))


def alignment_score_from_pairs(
    pairs: Sequence, student_influence: Mapping[str, float], teacher_influence: Mapping[str, float]
) -> float:
    """A for :class:`~circuitdiff.analysis.matching.Pair` objects and influence dicts keyed by component id."""
    return alignment_score(
        [student_influence[p.student] for p in pairs],
        [teacher_influence[p.teacher] for p in pairs],
        [p.similarity for p in pairs],
    )


@dataclass(frozen=True)
class AlignmentCI:
    score: float  # A on all prompts
    ci95: tuple[float, float]  # percentile interval of the bootstrap scores
    n_boot: int
    samples: np.ndarray  # [n_boot] bootstrap scores


def _resample_counts(rng: np.random.Generator, n_boot: int, n: int) -> np.ndarray:
    """counts[b, p] = how often prompt p is drawn in resample b (n draws with replacement): [B, n]."""
    idx = rng.integers(0, n, size=(n_boot, n))
    flat = (np.arange(n_boot)[:, None] * n + idx).ravel()
    return np.bincount(flat, minlength=n_boot * n).reshape(n_boot, n).astype(np.float64)


def _deltas(ld: ArrayLike, clean: ArrayLike, name: str) -> np.ndarray:
    """Per-prompt LD_ablated − LD_clean, transposed for the matmul: [P, C]."""
    a, c = to_numpy(ld), to_numpy(clean)
    if a.ndim != 2 or c.ndim != 1 or a.shape[1] != c.shape[0]:
        raise ValueError(f"{name}: need ablated LD [components, prompts] and clean LD [prompts], got {a.shape}, {c.shape}")
    return (a - c[None, :]).T


def alignment_bootstrap_ci(
    student_ld: ArrayLike,
    student_clean_ld: ArrayLike,
    teacher_ld: ArrayLike,
    teacher_clean_ld: ArrayLike,
    student_index: Sequence[int],
    teacher_index: Sequence[int],
    similarity: Sequence[float],
    *,
    n_boot: int = 1000,
    seed: int = 0,
    paired: bool | None = None,
    level: float = 0.95,
    chunk: int = 512,
) -> AlignmentCI:
    """Bootstrap CI of the alignment score over prompts.

    student_ld: [Cs, P] logit difference on each prompt with student component c ablated.
    student_clean_ld: [P] clean logit difference per prompt. teacher_*: likewise [Ct, Pt], [Pt].
    student_index / teacher_index / similarity: the pair list ([N] each; rows of *_ld), fixed.
    paired: reuse the student's resample indices for the teacher (same prompts in the same order).
        None = paired when P == Pt.
    """
    ds = _deltas(student_ld, student_clean_ld, "student")  # [P, Cs]
    dt = _deltas(teacher_ld, teacher_clean_ld, "teacher")  # [Pt, Ct]
    si, ti = np.asarray(student_index, dtype=int), np.asarray(teacher_index, dtype=int)
    sim = to_numpy(similarity)
    if not (si.shape == ti.shape == sim.shape) or si.ndim != 1 or si.size == 0:
        raise ValueError("student_index, teacher_index and similarity must be non-empty [N] arrays")
    if paired is None:
        paired = ds.shape[0] == dt.shape[0]
    if paired and ds.shape[0] != dt.shape[0]:
        raise ValueError(f"paired bootstrap needs the same prompts: {ds.shape[0]} vs {dt.shape[0]}")
    if n_boot < 1:
        raise ValueError("n_boot must be >= 1")

    def score(mean_ds: np.ndarray, mean_dt: np.ndarray) -> np.ndarray:
        # mean_ds: [B, Cs], mean_dt: [B, Ct] -> A per resample: [B]
        i_s = normalised_influence(np.abs(mean_ds)[:, si])
        i_t = normalised_influence(np.abs(mean_dt)[:, ti])
        return np.mean(sim * (1.0 - np.abs(i_s - i_t)), axis=-1)

    point = float(score(ds.mean(axis=0)[None], dt.mean(axis=0)[None])[0])
    rng = np.random.default_rng(seed)
    out = np.empty(n_boot)
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        ws = _resample_counts(rng, b, ds.shape[0]) / ds.shape[0]  # [b, P]
        wt = ws if paired else _resample_counts(rng, b, dt.shape[0]) / dt.shape[0]
        out[start:start + b] = score(ws @ ds, wt @ dt)
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(out, [tail, 100 - tail])
    return AlignmentCI(point, (float(lo), float(hi)), n_boot, out)
