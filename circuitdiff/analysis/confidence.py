"""How stable is each match? The share of bootstrap resamples of the prompts that choose the same partner.

Similarities come from statistics over the task's prompts (mean attention patterns, MLP outputs), so
a different sample of prompts can pair a component with another partner, most often when two
candidates are nearly equally similar. For every resample of the prompts (with replacement, the
same resample for both models) the similarities are recomputed from the same statistics restricted
to that resample, the components are matched again with the same rule, and a match's
**confidence** is the share of resamples in which its source component (the student component for
``student_to_teacher`` and ``one_to_one``, the teacher component for ``teacher_to_student``) gets the
same partner.

Nothing is re-run through the models: the clean pass keeps per-block sums (circuitdiff.scan.clean;
a block is one prompt when there are at most :data:`MAX_BLOCKS` prompts, else a run of consecutive
prompts, and then the resampling is a block bootstrap), and every similarity has an exact
resampled form:

- heads: mean pattern = Σ_b c_b · pattern_sum_b / Σ_b c_b · row_count_b (per query row), then the
  same row cosine as circuitdiff.analysis.similarity.head_similarity;
- MLPs, linear CKA: with row weights w (the resample count of each row's prompt) and Gram matrices
  K = X Xᵀ, the weighted centred HSIC is wᵀ(Kx∘Ky)w − 2W Σ_i w_i a_i b_i + W² α β with
  a = Kx w / W, α = wᵀKx w / W² (likewise b, β for Ky; W = Σ w), which equals HSIC on the
  resampled rows with repeated rows repeated. At most :data:`MAX_ROWS` token rows enter (a seeded
  subset of prompts when there are more);
- MLPs, the paper's eigenvectors: the second moment C = Σ_b c_b M_b / Σ_b c_b n_b from per-block
  moments M_b = X_bᵀ X_b, its top-3 eigenvectors (subspace iteration warm-started from the
  full-sample eigenvectors), then the same |mean cosine|. Rescaling to the
  head distribution is monotone, so it cannot change a matching and is skipped. When the moments
  of every block would exceed :data:`MOMENT_BUDGET` (wide models), blocks are merged into coarser
  groups for this part.

The number of resamples is the spec's ``bootstrap``, at most :data:`MAX_RESAMPLES` (recorded in the
result): the MLP recomputation dominates the cost and 1,000 resamples resolve a share to ±0.03.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .matching import argmax_indices, one_to_one_indices
from .similarity import _unit_rows, top_eigenvectors

__all__ = ["MAX_BLOCKS", "MAX_RESAMPLES", "MAX_ROWS", "MIN_MARGIN", "MatchStability", "ResampleStats",
           "Resampled", "match_stability", "resample_similarities", "runner_up"]

MAX_BLOCKS = 100
MAX_RESAMPLES = 1000
MAX_ROWS = 2048
SUBSPACE_ITERS = 20
RITZ_TOL = 1e-6  # relative residual above which a resample's eigenvectors are recomputed exactly
MOMENT_BUDGET = 1 << 30  # bytes of per-block second moments the eigenvector resampling may hold


@dataclass
class ResampleStats:
    """One model's per-block statistics (numpy).

    block_patterns: [B, H_total, T, T] sums over the block's prompts of attention patterns at real
    query rows (H_total = layers x heads, row-major); block_counts: [B, T] real query rows per block;
    mlp_rows: per layer [n_rows, d]; row_block: [n_rows] block of each row (same rows every layer).
    """

    block_patterns: np.ndarray
    block_counts: np.ndarray
    mlp_rows: list[np.ndarray]
    row_block: np.ndarray


def _counts(rng: np.random.Generator, n_resamples: int, n_blocks: int) -> np.ndarray:
    """[R, B] how often each block is drawn in each resample (B draws with replacement)."""
    idx = rng.integers(0, n_blocks, size=(n_resamples, n_blocks))
    flat = (np.arange(n_resamples)[:, None] * n_blocks + idx).ravel()
    return np.bincount(flat, minlength=n_resamples * n_blocks).reshape(n_resamples, n_blocks).astype(np.float64)


def _head_sims(s: ResampleStats, t: ResampleStats, c: np.ndarray, qmask: np.ndarray | None,
               chunk: int = 64, row_weighted: bool = False) -> np.ndarray:
    """[R, Hs, Ht] head similarity under resample counts c [R, B]: the mean over the query rows the
    resample has, each alike, or (``row_weighted``, the default preset's rule) weighted by how many
    of the resample's prompts have the row (analysis.similarity.head_similarity)."""
    out = []
    for start in range(0, c.shape[0], chunk):
        cc = c[start:start + chunk]  # [r, B]
        units, weight = [], None
        for m in (s, t):
            B, H, T, _ = m.block_patterns.shape
            num = (cc @ m.block_patterns.reshape(B, -1)).reshape(len(cc), H, T, T)
            rows = cc @ m.block_counts  # [r, T]: real query rows at each position in the resample
            w = rows if qmask is None else rows[:, qmask]
            weight = w if weight is None else np.minimum(weight, w)
            pat = num / np.maximum(rows, 1.0)[:, None, :, None]
            units.append(_unit_rows(pat if qmask is None else pat[:, :, qmask]))
        # only rows the resample has count (as the full sample counts the rows any prompt has): a row
        # position only undrawn prompts reach is not a zero cosine
        weight = weight if row_weighted else (weight > 0).astype(np.float64)
        total = np.maximum(weight.sum(1), 1e-300)[:, None, None]
        out.append(np.einsum("riqk,rjqk,rq->rij", units[0], units[1], weight, optimize=True) / total)
    return np.concatenate(out)


def _row_subset(row_block: np.ndarray, n_blocks: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of the rows that enter the MLP resampling: all, or whole blocks up to MAX_ROWS."""
    if len(row_block) <= MAX_ROWS:
        return np.arange(len(row_block))
    keep, total = [], 0
    sizes = np.bincount(row_block, minlength=n_blocks)
    for b in rng.permutation(n_blocks):
        if total + sizes[b] > MAX_ROWS and keep:
            continue
        keep.append(b)
        total += sizes[b]
    return np.flatnonzero(np.isin(row_block, keep))


def _cka_sims(s: ResampleStats, t: ResampleStats, c: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """[R, Ls, Lt] linear CKA under resample counts c [R, B] (see the module docstring)."""
    w = c[:, s.row_block[rows]].astype(np.float32)  # [R, n]
    W = w.sum(1, dtype=np.float64)  # [R]

    def layer(x: np.ndarray):
        xc = x[rows].astype(np.float32)
        K = xc @ xc.T  # [n, n]; float32 is ample to rank candidate partners
        a = (w @ K) / W[:, None]  # [R, n]
        alpha = np.einsum("rn,rn->r", a, w, dtype=np.float64) / W
        return K, a, alpha

    def hsic(kx, ky) -> np.ndarray:
        (Kx, a, alpha), (Ky, b, beta) = kx, ky
        t1 = np.einsum("rn,rn->r", w @ (Kx * Ky), w, dtype=np.float64)
        t2 = np.einsum("rn,rn,rn->r", w, a, b, dtype=np.float64)
        return t1 - 2 * W * t2 + W**2 * alpha * beta

    ls, lt = [layer(x) for x in s.mlp_rows], [layer(x) for x in t.mlp_rows]
    self_s = [hsic(k, k) for k in ls]
    self_t = [hsic(k, k) for k in lt]
    out = np.zeros((c.shape[0], len(ls), len(lt)))
    for i, ks in enumerate(ls):
        for j, kt in enumerate(lt):
            den = np.sqrt(np.maximum(self_s[i] * self_t[j], 0.0))
            out[:, i, j] = np.where(den > 0, hsic(ks, kt) / np.where(den > 0, den, 1.0), 0.0)
    return np.clip(out, 0.0, 1.0)


def _groups(n_blocks: int, widths: list[int], n_layers: int) -> np.ndarray:
    """block -> group: blocks merged into consecutive groups so the per-group second moments of every
    layer fit in MOMENT_BUDGET bytes (float64)."""
    per_group = n_layers * max(widths) ** 2 * 8
    n_groups = int(max(2, min(n_blocks, MOMENT_BUDGET // max(per_group, 1))))
    return (np.arange(n_blocks) * n_groups) // n_blocks


def _moments(m: ResampleStats, group: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Per layer, per group second moments [L, G, d, d] and rows per group [G]."""
    row_group = group[m.row_block]
    sizes = np.bincount(row_group, minlength=n_groups).astype(np.float64)
    d = m.mlp_rows[0].shape[1]
    mom = np.zeros((len(m.mlp_rows), n_groups, d, d))
    for layer, x in enumerate(m.mlp_rows):
        x = x.astype(np.float64)
        for g in range(n_groups):
            xg = x[row_group == g]
            mom[layer, g] = xg.T @ xg
    return mom, sizes


def _top3(c_mats: np.ndarray, warm: np.ndarray, k: int = 3, iters: int = SUBSPACE_ITERS) -> np.ndarray | None:
    """Top-k eigenvectors (as rows, [R, k, d]) of a stack of symmetric PSD matrices [R, d, d], signs
    fixed as circuitdiff.analysis.similarity.top_eigenvectors fixes them.

    Subspace iteration from ``warm`` (the full-sample vectors [k, d], close to every resample's)
    with two guard vectors, then Rayleigh–Ritz: batched matrix products instead of one full
    eigendecomposition per resample and layer (30x faster at d = 128 here). A matrix whose Ritz
    vectors have not converged (nearly equal eigenvalues around the third) gets numpy's eigh, so
    the result is always the exact top-k. tests/engine/test_calibration.py checks it against eigh."""
    d = c_mats.shape[-1]
    if d < k or warm is None:
        return None
    extra = min(2, d - k)
    guard = np.random.default_rng(0).normal(size=(d, extra))
    v = np.broadcast_to(np.concatenate([warm.T, guard], axis=1), (len(c_mats), d, k + extra)).copy()
    for _ in range(iters):
        v, _ = np.linalg.qr(c_mats @ v)
    ev, u = np.linalg.eigh(v.transpose(0, 2, 1) @ c_mats @ v)  # small [k + extra] problems
    ritz = v @ u[..., ::-1][..., :k]  # [R, d, k]
    lam = ev[..., ::-1][..., :k]  # [R, k]
    resid = np.linalg.norm(c_mats @ ritz - ritz * lam[:, None, :], axis=1)  # [R, k]
    scale = np.maximum(np.abs(lam[:, :1]), 1e-30)
    for r in np.flatnonzero((resid / scale).max(axis=1) > RITZ_TOL):
        ritz[r] = np.linalg.eigh(c_mats[r])[1][:, ::-1][:, :k]
    vecs = ritz.transpose(0, 2, 1)
    pivot = np.argmax(np.abs(vecs), axis=2)  # [R, k]
    signs = np.sign(np.take_along_axis(vecs, pivot[..., None], axis=2))
    signs[signs == 0] = 1.0
    return vecs * signs


def _eigen_sims(s: ResampleStats, t: ResampleStats, c: np.ndarray, rng: np.random.Generator,
                chunk: int = 50) -> np.ndarray:
    """[R, Ls, Lt] the paper's raw eigenvector similarity under resample counts c [R, B]. Wide models
    whose per-block moments would not fit are resampled over coarser groups of blocks (drawn afresh,
    the same draw for both models)."""
    n_blocks = c.shape[1]
    group = _groups(n_blocks, [s.mlp_rows[0].shape[1], t.mlp_rows[0].shape[1]], len(s.mlp_rows) + len(t.mlp_rows))
    n_groups = int(group.max()) + 1
    if n_groups < n_blocks:
        c = _counts(rng, c.shape[0], n_groups)
    (ms, ns), (mt, nt) = _moments(s, group, n_groups), _moments(t, group, n_groups)
    warm_s = [top_eigenvectors(x) for x in s.mlp_rows]
    warm_t = [top_eigenvectors(x) for x in t.mlp_rows]
    out = np.zeros((c.shape[0], ms.shape[0], mt.shape[0]))
    for start in range(0, c.shape[0], chunk):
        cc = c[start:start + chunk]  # [r, G]

        def vectors(mom, sizes, warm):
            L, G, d, _ = mom.shape
            covs = (cc @ mom.transpose(1, 0, 2, 3).reshape(G, -1)).reshape(len(cc), L, d, d)
            covs /= np.maximum(cc @ sizes, 1.0)[:, None, None, None]
            return [_top3(covs[:, layer], warm[layer]) for layer in range(L)]  # each [r, k, d]

        vs, vt = vectors(ms, ns, warm_s), vectors(mt, nt, warm_t)
        for i, us in enumerate(vs):
            for j, ut in enumerate(vt):
                if us is not None and ut is not None:
                    out[start:start + chunk, i, j] = np.abs((us @ ut.transpose(0, 2, 1)).mean(axis=(1, 2)))
    return out


def _partners(sim: np.ndarray, direction: str, ties: str) -> dict[int, int]:
    """source index -> partner index under one matching rule (student rows, teacher columns)."""
    if direction == "student_to_teacher":
        return {i: int(j) for i, j in enumerate(argmax_indices(sim, axis=1, ties=ties))}
    if direction == "teacher_to_student":
        return {j: int(i) for j, i in enumerate(argmax_indices(sim, axis=0, ties=ties))}
    return dict(one_to_one_indices(sim))


MIN_MARGIN = 0.02
"""The smallest similarity difference between a match and its runner-up that counts: below it two
candidates are a near-tie however stable the choice is under resampling (DistilBERT's last MLP on
``sequence``: CKA 0.951 to its match vs 0.947 to its origin, chosen in 99.7% of resamples)."""


@dataclass(frozen=True)
class MatchStability:
    """Per pair, in the order given: ``confidence`` (share of resamples choosing the same partner),
    the runner-up (the best other candidate of the same kind for the pair's source component, by the
    full-sample similarities), the margin (similarity to the partner minus to the runner-up) with its
    percentile interval over the same resamples, and ``ambiguous``: the interval includes 0 or the
    margin is below :data:`MIN_MARGIN`."""

    confidence: list[float]
    runner_up: list[int | None]  # index into the other side of the pair's similarity matrix
    margin: list[float | None]
    margin_ci95: list[tuple[float, float] | None]
    ambiguous: list[bool]


def runner_up(sim: np.ndarray, src: int, dst: int, direction: str) -> int | None:
    """The best candidate other than ``dst`` for source ``src`` (a student row, or for
    ``teacher_to_student`` a teacher column); None when there is no other candidate."""
    line = sim[:, src] if direction == "teacher_to_student" else sim[src]
    if len(line) < 2:
        return None
    order = np.argsort(-line, kind="stable")
    return int(order[0] if order[0] != dst else order[1])


@dataclass(frozen=True)
class Resampled:
    """Similarities recomputed on bootstrap resamples of the prompts: ``counts`` [R, B] (how often each
    block is drawn), ``heads`` [R, Hs, Ht], ``mlps`` [R, Ls, Lt] (linear CKA, or the raw eigenvector
    similarity for the paper's MLP methods)."""

    counts: np.ndarray
    heads: np.ndarray
    mlps: np.ndarray

    def by_kind(self) -> dict[str, np.ndarray]:
        return {"head": self.heads, "mlp": self.mlps}


def resample_similarities(student: ResampleStats, teacher: ResampleStats, *, mlp_method: str,
                          qmask: np.ndarray | None, n_resamples: int, seed: int = 0,
                          row_weighted: bool = False) -> Resampled:
    """Every head and MLP similarity on ``n_resamples`` resamples of the prompt blocks (the same draw
    for both models; seeded, so two comparisons of the same prompts draw the same resamples)."""
    n_blocks = student.block_patterns.shape[0]
    if teacher.block_patterns.shape[0] != n_blocks:
        raise ValueError("student and teacher statistics must come from the same prompt blocks")
    rng = np.random.default_rng([seed, 0x5EED])
    c = _counts(rng, n_resamples, n_blocks)
    heads = _head_sims(student, teacher, c, qmask, row_weighted=row_weighted)
    if mlp_method == "linear_cka":
        mlps = _cka_sims(student, teacher, c, _row_subset(student.row_block, n_blocks, rng))
    else:
        mlps = _eigen_sims(student, teacher, c, rng)
    return Resampled(c, heads, mlps)


def match_stability(resampled: Resampled, pairs: Sequence, sims: dict[str, np.ndarray] | None, *,
                    direction: str, ties: str = "first") -> MatchStability:
    """``resampled``: the similarities on the resamples (:func:`resample_similarities`); ``pairs``:
    objects with ``kind``, ``student_index``, ``teacher_index`` (rows / columns of the head or MLP
    similarity matrix), in order; ``sims``: the full-sample matrices by kind (None: the confidences
    only, every margin None)."""
    boot_by_kind = resampled.by_kind()
    by_teacher = direction == "teacher_to_student"
    src = (lambda p: p.teacher_index) if by_teacher else (lambda p: p.student_index)
    dst = (lambda p: p.student_index) if by_teacher else (lambda p: p.teacher_index)
    n = resampled.counts.shape[0]
    same = np.zeros(len(pairs))
    for r in range(n):
        chosen = {k: _partners(boot_by_kind[k][r], direction, ties) for k in ("head", "mlp")}
        for k, p in enumerate(pairs):
            same[k] += chosen[p.kind].get(src(p)) == dst(p)
    runners, margins, cis, ambiguous = [], [], [], []
    for p in pairs:
        full, boot = (None, None) if sims is None else (sims[p.kind], boot_by_kind[p.kind])
        ru = None if full is None else runner_up(full, src(p), dst(p), direction)
        runners.append(ru)
        if ru is None:
            margins.append(None), cis.append(None), ambiguous.append(False)
            continue
        cell = (lambda m, j: m[..., j, src(p)]) if by_teacher else (lambda m, j: m[..., src(p), j])
        margin = float(cell(full, dst(p)) - cell(full, ru))
        diffs = cell(boot, dst(p)) - cell(boot, ru)  # [R]
        lo, hi = (float(v) for v in np.percentile(diffs, [2.5, 97.5]))
        margins.append(margin), cis.append((lo, hi))
        ambiguous.append(bool(lo <= 0.0 or margin < MIN_MARGIN))
    return MatchStability([float(x) for x in same / n], runners, margins, cis, ambiguous)
