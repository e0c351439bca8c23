"""Similarity between student and teacher components (docs/method.md §Method 2–3, docs/authors-code.md §3.3–3.4).

Attention heads
---------------
Each head is summarised by its attention pattern averaged over the prompts, ``A: [T, T]`` (query
rows × key columns; both models see the same tokenisation, so the matrices line up). The paper's
similarity of a student head and a teacher head is the **mean over query rows of the cosine between
the two rows** (docs/authors-code.md §3.3)::

    sim(A_s, A_t) = 1/|Q| Σ_{q ∈ Q} cos(A_s[q, :], A_t[q, :])

with Q all T rows in the paper. Two kinds of rows carry no information and inflate every score
(docs/authors-code.md §7 pitfall 8): in a causal model row 0 can only attend to itself (cosine 1 for every
pair), and rows at padded positions average pad-token attention. ``query_mask`` selects the rows to
keep; :func:`query_rows` builds the default-preset mask (drop row 0 and padding); the paper preset
passes ``None`` (all rows).

MLPs
----
The paper (``activation_eigenvector_similarity``, docs/authors-code.md §3.4) stacks a layer's MLP outputs over
prompts and positions, ``X: [n, d]``, forms the *uncentred* second-moment matrix ``C = XᵀX / n``,
takes its top ``k = 3`` eigenvectors for each model, and scores a pair by ``|mean(M)|`` where ``M`` is
the k×k matrix of cosines between the two sets of eigenvectors. It returns 0.0 when ``n < k``.
Eigenvectors have arbitrary signs, so the signed mean depends on what the eigensolver returns
(pitfall 9); :func:`top_eigenvectors` fixes each sign deterministically (largest-magnitude entry
positive) so the score is reproducible and does not change when the activations are negated. The raw
values (≈0.02–0.2) are then put on the head-similarity scale by :func:`rescale_to_heads`, the
authors' normalisation: z-score the positive values (population std), map them to the head
similarities' mean and unbiased std, divide by the maximum. The method has three flaws the default
preset avoids: two identical layers score 1/3 raw (the mean of a 3×3 matrix of identical
eigenvectors is not 1), eigenvector signs can change which layer wins, and the rescaling forces the
best pair of every run to exactly 1.0 whatever it is.

The default: linear CKA
-----------------------
:func:`mlp_similarity_cka` (linear CKA, Kornblith et al. 2019) compares the two layers' outputs on
the same token rows: CKA = ||Ycᵀ Xc||²_F / (||Xcᵀ Xc||_F ||Ycᵀ Yc||_F) with column-centred X, Y.
Chosen over a principal-angle subspace similarity because it is 1 for identical layers and
invariant to every orthogonal transform (so to eigenvector signs and to rotations inside a
subspace) and to isotropic scaling, is in [0, 1] without any per-run rescaling, uses the whole
spectrum rather than three directions, and compares layers of different widths (student d_model ≠
teacher d_model) where subspaces of different spaces cannot be compared. Its one requirement, the
same rows for both models, holds by construction: both models read the same prompts, token by token
or (pairs without a shared tokenisation) word by word. tests/engine/test_analysis.py checks the identity
and the invariances.


All functions accept numpy arrays or torch tensors and return float64 numpy arrays.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ._array import ArrayLike, to_numpy

__all__ = [
    "head_similarity",
    "query_rows",
    "top_eigenvectors",
    "mlp_similarity_eigen",
    "rescale_to_heads",
    "clip_similarity",
    "rescale_to_distribution",
    "linear_cka",
    "mlp_similarity_cka",
]

# torch.nn.functional.cosine_similarity's default: norms below eps give cosine 0, not NaN.
_EPS = 1e-8


def _as_heads(patterns: ArrayLike, name: str) -> np.ndarray:
    """``[H, T, T]`` or ``[L, H, T, T]`` -> ``[L*H, T, T]`` (row-major: layer, then head)."""
    a = to_numpy(patterns)
    if a.ndim == 4:
        a = a.reshape(-1, *a.shape[2:])
    if a.ndim != 3 or a.shape[1] != a.shape[2]:
        raise ValueError(f"{name}: expected attention patterns [heads, T, T] or [layers, heads, T, T], got {a.shape}")
    return a


def _unit_rows(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norm, _EPS)


def query_rows(n_positions: int, *, exclude_first: bool = True, n_valid: int | None = None) -> np.ndarray:
    """Boolean mask ``[T]`` of the query rows to compare.

    ``exclude_first`` drops row 0 (in a causal model it attends only to itself: cosine 1 for any
    pair of heads). ``n_valid`` drops rows at or after it (right padding shared by all prompts).
    """
    mask = np.ones(n_positions, dtype=bool)
    if exclude_first:
        mask[0] = False
    if n_valid is not None:
        mask[n_valid:] = False
    if not mask.any():
        raise ValueError(f"no query rows left to compare (T={n_positions}, n_valid={n_valid})")
    return mask


def head_similarity(
    student_patterns: ArrayLike,
    teacher_patterns: ArrayLike,
    query_mask: ArrayLike | None = None,
    row_weights: ArrayLike | None = None,
) -> np.ndarray:
    """Mean row-cosine similarity of every student head with every teacher head.

    student_patterns: [Hs, T, T] (or [Ls, H, T, T]) mean attention patterns, query × key.
    teacher_patterns: [Ht, T, T] (or [Lt, H, T, T]).
    query_mask: bool [T], the query rows to average over; None = all rows (paper preset).
    row_weights: [T] non-negative weights of the query rows (the default preset: how many prompts
    have the row, so that rows only the longest prompts reach count as little as they are seen and
    the score does not jump when a draw lacks the longest template); None = every row alike.
    Returns sim: [Hs, Ht] in [0, 1] for attention probabilities (rows are non-negative).
    """
    s = _as_heads(student_patterns, "student_patterns")
    t = _as_heads(teacher_patterns, "teacher_patterns")
    if s.shape[1:] != t.shape[1:]:
        raise ValueError(
            f"student and teacher patterns cover different positions: {s.shape[1:]} vs {t.shape[1:]} "
            "(head similarity needs the same tokenisation for both models)"
        )
    w = np.ones(s.shape[1]) if row_weights is None else to_numpy(row_weights).astype(np.float64)
    if w.shape != (s.shape[1],) or (w < 0).any():
        raise ValueError(f"row_weights must be {s.shape[1]} non-negative numbers")
    if query_mask is not None:
        mask = to_numpy(query_mask, dtype=bool)
        if mask.shape != (s.shape[1],):
            raise ValueError(f"query_mask must have shape ({s.shape[1]},), got {mask.shape}")
        s, t, w = s[:, mask], t[:, mask], w[mask]
    if w.sum() <= 0:
        raise ValueError("every query row has weight 0")
    # cos(A_s[q], A_t[q]) weighted over q == Σ_{q,k} w_q Â_s[q,k] Â_t[q,k] with unit-norm rows.
    s_hat, t_hat = _unit_rows(s), _unit_rows(t)  # [H, Q, T]
    return clip_similarity(np.einsum("iqk,jqk,q->ij", s_hat, t_hat, w, optimize=True) / w.sum())


def _as_rows(acts: ArrayLike) -> np.ndarray:
    """Activations of one layer, [..., d] -> X: [n, d] (prompts × positions stacked)."""
    x = to_numpy(acts)
    if x.ndim < 2:
        raise ValueError(f"MLP activations need a feature axis: got shape {x.shape}")
    return x.reshape(-1, x.shape[-1])


def _layers(acts: Sequence[ArrayLike] | ArrayLike) -> list[np.ndarray]:
    """A list of per-layer activations, or one array [L, ...] whose first axis is the layer."""
    return [_as_rows(a) for a in acts]


def top_eigenvectors(acts: ArrayLike, k: int = 3) -> np.ndarray | None:
    """Top-k eigenvectors of the uncentred second moment C = XᵀX/n, as rows: [k, d].

    acts: [n, d] or [..., d]. Returns None when n < k (the authors return similarity 0.0 then).
    Each vector's sign is fixed so that its largest-magnitude entry is positive.
    """
    x = _as_rows(acts)
    n, d = x.shape
    if n < k or d < k:
        return None
    if n < d:
        # The right singular vectors of X are the eigenvectors of XᵀX; cheaper than a d×d problem.
        _, _, vt = np.linalg.svd(x, full_matrices=False)
        vecs = vt[:k]
    else:
        c = x.T @ x / n  # [d, d]
        _, eigvecs = np.linalg.eigh(c)  # ascending eigenvalues
        vecs = eigvecs[:, ::-1][:, :k].T
    pivot = np.argmax(np.abs(vecs), axis=1)
    signs = np.sign(vecs[np.arange(k), pivot])
    signs[signs == 0] = 1.0
    return vecs * signs[:, None]


def mlp_similarity_eigen(
    student_acts: Sequence[ArrayLike] | ArrayLike,
    teacher_acts: Sequence[ArrayLike] | ArrayLike,
    k: int = 3,
) -> np.ndarray:
    """The paper's raw MLP similarity |mean(cos(top-k eigvecs_s, top-k eigvecs_t))|: [Ls, Lt].

    student_acts: per student layer, MLP outputs [n, d] (or [batch, pos, d]); a list or [Ls, ...].
    teacher_acts: per teacher layer, likewise. n may differ between the two models; d must match.
    """
    s_vecs = [top_eigenvectors(a, k) for a in _layers(student_acts)]
    t_vecs = [top_eigenvectors(a, k) for a in _layers(teacher_acts)]
    sim = np.zeros((len(s_vecs), len(t_vecs)))
    for i, us in enumerate(s_vecs):
        for j, ut in enumerate(t_vecs):
            if us is None or ut is None:
                continue  # n < k: the authors' routine returns 0.0
            if us.shape[1] != ut.shape[1]:
                raise ValueError(f"MLP output widths differ: student {us.shape[1]} vs teacher {ut.shape[1]}")
            sim[i, j] = abs(float(np.mean(us @ ut.T)))  # eigenvectors are unit: dot = cosine
    return clip_similarity(sim)


def rescale_to_distribution(raw: ArrayLike, mean: float, std: float, *, zero_negative: bool = False) -> np.ndarray:
    """The authors' MLP normalisation onto a target distribution (docs/authors-code.md §3.4).

    v' = (v − mean(v⁺)) / std_pop(v⁺) · std + mean, with v⁺ the positive entries of ``raw``;
    everything is then divided by max(v') so the best pair is 1.0. The authors' rescaling cell
    leaves negative v' as they are (``zero_negative=False``, what the paper preset runs); with
    ``zero_negative`` entries ≤ 0 become 0 first. Every MLP pair of the authors' saved runs was
    positive, so both reproduce their printed values.
    """
    v = to_numpy(raw)
    pos = v[v > 0]
    if pos.size == 0:
        return np.zeros_like(v)
    spread = pos.std()  # population std (ddof=0), as the authors
    z = (v - pos.mean()) / spread if spread > 0 else np.zeros_like(v)
    out = z * std + mean
    if zero_negative:
        out[out <= 0] = 0.0
    top = out.max()
    return out / top if top > 0 else out


def rescale_to_heads(raw: ArrayLike, head_sims: ArrayLike) -> np.ndarray:
    """Rescale raw eigenvector MLP similarities to the head-similarity distribution (the authors').

    head_sims: the full student×teacher head similarity matrix; its mean and *unbiased* std (torch
    ``std()`` default, as in the notebooks) are the targets. See :func:`rescale_to_distribution`.
    """
    h = to_numpy(head_sims).ravel()
    std = float(h.std(ddof=1)) if h.size > 1 else 0.0
    return rescale_to_distribution(raw, float(h.mean()), std)


SIM_DECIMALS = 12


def clip_similarity(sim: ArrayLike) -> np.ndarray:
    """Similarities clipped to [-1, 1] and rounded to 12 decimals: float rounding gives self-cosines
    of 1.0000000000000009 and 0.9999999999999998, and a component compared with itself must score
    exactly 1 (so a model compared with itself aligns exactly 1.0)."""
    return np.round(np.clip(to_numpy(sim), -1.0, 1.0), SIM_DECIMALS)


def linear_cka(x: ArrayLike, y: ArrayLike) -> float:
    """Linear CKA between two representations of the same n inputs: x [n, d1], y [n, d2].

    CKA = ||Ycᵀ Xc||²_F / (||Xcᵀ Xc||_F ||Ycᵀ Yc||_F) with column-centred Xc, Yc. In [0, 1];
    0 when either representation is constant.
    """
    return float(mlp_similarity_cka([x], [y])[0, 0])


def _centred(x: np.ndarray) -> tuple[np.ndarray, float]:
    xc = x - x.mean(axis=0, keepdims=True)
    n, d = xc.shape
    # ||XcᵀXc||_F == ||XcXcᵀ||_F: take the smaller Gram matrix.
    gram = xc.T @ xc if d <= n else xc @ xc.T
    return xc, float(np.linalg.norm(gram))


def mlp_similarity_cka(
    student_acts: Sequence[ArrayLike] | ArrayLike,
    teacher_acts: Sequence[ArrayLike] | ArrayLike,
) -> np.ndarray:
    """Linear CKA between every student and teacher MLP layer: [Ls, Lt] in [0, 1].

    Row i of every layer's [n, d] matrix must be the same (prompt, position) for both models.
    """
    s_layers = [_centred(a) for a in _layers(student_acts)]
    t_layers = [_centred(a) for a in _layers(teacher_acts)]
    sim = np.zeros((len(s_layers), len(t_layers)))
    for i, (xs, ns) in enumerate(s_layers):
        for j, (xt, nt) in enumerate(t_layers):
            if xs.shape[0] != xt.shape[0]:
                raise ValueError(
                    f"CKA needs the same rows for both models: student has {xs.shape[0]}, teacher {xt.shape[0]}"
                )
            if ns == 0 or nt == 0:
                continue
            cross = xs.T @ xt if xs.shape[1] * xt.shape[1] <= xs.shape[0] ** 2 else None
            if cross is None:  # n small: tr(Ks Kt) with n×n Gram matrices is cheaper
                num = float(np.sum((xs @ xs.T) * (xt @ xt.T)))
            else:
                num = float(np.sum(cross * cross))
            sim[i, j] = num / (ns * nt)
    return clip_similarity(np.clip(sim, 0.0, 1.0))
