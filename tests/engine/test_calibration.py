"""Measures that mean what they say (issue #12): the default MLP similarity, one-to-one matching,
the chance null of the alignment score and the bootstrap confidence of every match.

Each resampled or permuted quantity is checked against the plain computation it stands for:
re-matching permuted similarity rows, CKA on repeated rows, eigenvectors from numpy's eigh.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from circuitdiff.analysis.chance import chance_null
from circuitdiff.analysis.confidence import (ResampleStats, _cka_sims, _head_sims, _top3, match_stability,
                                             resample_similarities)
from circuitdiff.analysis.matching import match, match_components, unpaired
from circuitdiff.analysis.alignment import alignment_score_from_pairs
from circuitdiff.analysis.similarity import (clip_similarity, head_similarity, linear_cka, mlp_similarity_cka,
                                             mlp_similarity_eigen, top_eigenvectors)


# ---------------------------------------------------------------- the default MLP similarity
def test_cka_is_one_for_identical_layers_and_free_of_sign_and_rotation():
    """What the eigenvector method gets wrong: identical layers score 1/3 there, and an eigenvector
    sign or a rotation inside the top subspace can change its value."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 12)) @ np.diag(np.linspace(3, 0.5, 12))
    flip = np.diag([-1.0] + [1.0] * 11)
    q = np.linalg.qr(rng.normal(size=(12, 12)))[0]
    assert mlp_similarity_cka([x], [x])[0, 0] == pytest.approx(1.0, abs=1e-12)
    assert mlp_similarity_cka([x], [x @ flip])[0, 0] == pytest.approx(1.0, abs=1e-12)
    assert mlp_similarity_cka([x], [x @ q])[0, 0] == pytest.approx(1.0, abs=1e-12)
    assert mlp_similarity_eigen([x], [x])[0, 0] == pytest.approx(1 / 3, abs=1e-9)  # the paper's, for contrast
    # different widths (student d_model != teacher d_model) compare too
    assert linear_cka(x, x @ rng.normal(size=(12, 20))) > 0.5


def test_similarities_are_clipped_to_their_range():
    same = np.tile(np.eye(4)[None] * 0.7 + 0.1, (3, 1, 1))
    assert head_similarity(same, same).max() <= 1.0
    assert clip_similarity(np.array([1.0000000000000009, -1.2, 0.3])).tolist() == [1.0, -1.0, 0.3]


# ---------------------------------------------------------------- one-to-one matching
@pytest.mark.parametrize("shape", [(3, 4), (4, 3), (4, 4)])
def test_one_to_one_is_the_best_assignment_and_lists_the_surplus(shape):
    rng = np.random.default_rng(sum(shape))
    sim = rng.uniform(size=shape)
    s_ids, t_ids = [f"S{i}" for i in range(shape[0])], [f"T{j}" for j in range(shape[1])]
    pairs = match(sim, s_ids, t_ids, direction="one_to_one", threshold=0.5)
    k = min(shape)
    assert len(pairs) == k and len({p.student for p in pairs}) == len({p.teacher for p in pairs}) == k
    best = max(
        sum(sim[i, j] for i, j in zip(rows, cols))
        for rows in itertools.permutations(range(shape[0]), k) for cols in itertools.permutations(range(shape[1]), k)
    )
    assert sum(p.similarity for p in pairs) == pytest.approx(best)
    assert [p.student_index for p in pairs] == sorted(p.student_index for p in pairs)
    left = unpaired(pairs, s_ids, t_ids)
    assert len(left["student"]) == shape[0] - k and len(left["teacher"]) == shape[1] - k
    # argmax lets two students share a teacher; one_to_one never does
    crowded = np.array([[0.9, 0.1], [0.8, 0.2]])
    assert {p.teacher for p in match(crowded, ["a", "b"], ["A", "B"])} == {"A"}
    assert {p.teacher for p in match(crowded, ["a", "b"], ["A", "B"], direction="one_to_one")} == {"A", "B"}


# ---------------------------------------------------------------- the chance null
def _explicit_null(head, mlp, s_heads, t_heads, s_mlps, t_mlps, infl_s, infl_t, direction, n, seed):
    """The null as its definition says: permute the student's similarity rows within kind, match
    again, score with the student's own influences."""
    rng = np.random.default_rng(seed)
    ids = list(infl_s)
    perm = np.tile(np.arange(len(ids)), (n, 1))
    heads_idx = np.array([i for i, c in enumerate(ids) if "MLP" not in c])
    mlps_idx = np.array([i for i, c in enumerate(ids) if "MLP" in c])
    perm[:, heads_idx] = rng.permuted(np.tile(heads_idx, (n, 1)), axis=1)
    perm[:, mlps_idx] = rng.permuted(np.tile(mlps_idx, (n, 1)), axis=1)
    out = []
    for d in range(n):
        # student component perm[d, c] takes the similarity row of component c
        new_head, new_mlp = np.empty_like(head), np.empty_like(mlp)
        for c in range(len(s_heads)):
            new_head[perm[d, c]] = head[c]
        for c in range(len(s_mlps)):
            new_mlp[perm[d, len(s_heads) + c] - len(s_heads)] = mlp[c]
        pairs = match_components(new_head, new_mlp, s_heads, t_heads, s_mlps, t_mlps, direction=direction)
        out.append(alignment_score_from_pairs(pairs, infl_s, infl_t))
    return np.array(out)


@pytest.mark.parametrize("direction", ["student_to_teacher", "teacher_to_student", "one_to_one"])
def test_chance_null_equals_rematching_permuted_similarities(direction):
    rng = np.random.default_rng(1)
    s_heads, t_heads = [f"L{l}H{h}" for l in range(2) for h in range(3)], [f"L{l}H{h}" for l in range(3) for h in range(3)]
    s_mlps, t_mlps = ["L0MLP", "L1MLP"], ["L0MLP", "L1MLP", "L2MLP"]
    head, mlp = rng.uniform(size=(6, 9)), rng.uniform(size=(2, 3))
    infl_s = {c: float(v) for c, v in zip(s_heads + s_mlps, rng.gamma(0.5, size=8))}
    infl_t = {c: float(v) for c, v in zip(t_heads + t_mlps, rng.gamma(0.5, size=12))}
    pairs = match_components(head, mlp, s_heads, t_heads, s_mlps, t_mlps, direction=direction)
    observed = alignment_score_from_pairs(pairs, infl_s, infl_t)
    got = chance_null(pairs, infl_s, infl_t, observed, n_draws=200, seed=7)
    want = _explicit_null(head, mlp, s_heads, t_heads, s_mlps, t_mlps, infl_s, infl_t, direction, 200, 7)
    np.testing.assert_allclose(got.samples, want, atol=1e-12)
    assert got.mean == pytest.approx(want.mean()) and got.n == 200
    assert got.p_value == pytest.approx((1 + (want >= observed - 1e-12).sum()) / 201)


def test_self_comparison_is_above_chance_unless_influences_are_uniform():
    rng = np.random.default_rng(2)
    ids = [f"L0H{h}" for h in range(8)] + ["L0MLP"]
    infl = {c: float(v) for c, v in zip(ids, rng.gamma(0.4, size=9))}
    sim = np.eye(8) * 0.6 + 0.4
    pairs = match_components(sim, np.ones((1, 1)), ids[:8], ids[:8], ids[8:], ids[8:])
    observed = alignment_score_from_pairs(pairs, infl, infl)
    null = chance_null(pairs, infl, infl, observed, n_draws=1000, seed=0)
    assert observed > null.ci95[1] and null.p_value < 0.01
    flat = {c: 1.0 for c in ids}  # every permutation scores the same: nothing to tell apart
    same = chance_null(pairs, flat, flat, alignment_score_from_pairs(pairs, flat, flat), n_draws=1000, seed=0)
    assert same.p_value == 1.0


# ---------------------------------------------------------------- match confidence
def _stats(rng, n_prompts=12, layers=2, heads=3, T=5, d=6, rows_per_prompt=4):
    pats = rng.uniform(size=(n_prompts, layers * heads, T, T))
    counts = np.ones((n_prompts, T))
    mlp = [rng.normal(size=(n_prompts * rows_per_prompt, d)) for _ in range(layers)]
    row_block = np.repeat(np.arange(n_prompts), rows_per_prompt)
    return ResampleStats(pats, counts, mlp, row_block)


def test_resampled_similarities_equal_the_plain_computation_on_repeated_prompts():
    rng = np.random.default_rng(3)
    s, t = _stats(rng), _stats(rng, layers=3)
    c = np.zeros((1, 12))
    draws = rng.integers(0, 12, size=12)
    np.add.at(c[0], draws, 1.0)
    # heads: mean patterns over the resampled prompts
    mean = lambda m: m.block_patterns[draws].sum(0) / len(draws)  # noqa: E731
    np.testing.assert_allclose(_head_sims(s, t, c, None)[0], head_similarity(mean(s), mean(t)), atol=1e-12)
    # MLPs: CKA on the resampled rows, repeated prompts' rows repeated
    rows = np.concatenate([np.flatnonzero(s.row_block == b) for b in draws])
    want = mlp_similarity_cka([x[rows] for x in s.mlp_rows], [x[rows] for x in t.mlp_rows])
    np.testing.assert_allclose(_cka_sims(s, t, c, np.arange(len(s.row_block)))[0], want, atol=1e-4)


def test_warm_started_eigenvectors_equal_numpy_eigh():
    rng = np.random.default_rng(4)
    d = 40
    basis = np.linalg.qr(rng.normal(size=(d, d)))[0]
    covs = np.stack([basis @ np.diag(np.linspace(10, 0.1, d) * rng.uniform(0.9, 1.1, d)) @ basis.T for _ in range(5)])
    warm = top_eigenvectors(rng.normal(size=(500, d)) @ np.diag(np.linspace(10, 0.1, d)) ** 0.5 @ basis.T)
    got = _top3(covs, warm)
    for r in range(5):
        v = np.linalg.eigh(covs[r])[1][:, ::-1][:, :3].T
        np.testing.assert_allclose(np.abs(np.sum(got[r] * v, axis=1)), 1.0, atol=1e-8)


def test_identical_models_match_with_full_confidence():
    rng = np.random.default_rng(5)
    s = _stats(rng)
    head = head_similarity(s.block_patterns.sum(0), s.block_patterns.sum(0))
    mlp = mlp_similarity_cka(s.mlp_rows, s.mlp_rows)
    ids = [f"L{l}H{h}" for l in range(2) for h in range(3)]
    pairs = match_components(head, mlp, ids, ids, ["L0MLP", "L1MLP"], ["L0MLP", "L1MLP"])
    for method in ("linear_cka", "eigen_top3_raw"):
        resampled = resample_similarities(s, s, mlp_method=method, qmask=None, n_resamples=50)
        conf = match_stability(resampled, pairs, None, direction="student_to_teacher").confidence
        assert conf == [1.0] * len(pairs)


def test_a_near_tie_is_marked_and_a_clear_match_is_not():
    """#29 §2: the student's L0H0 copies teacher head L0H0, which the teacher has twice (L0H0 = L0H1):
    an exact tie, chosen the same way in every resample (confidence 1.0) and still ambiguous. Its
    other heads copy unique teacher heads: a margin whose interval excludes 0, not ambiguous."""
    from circuitdiff.analysis.confidence import MIN_MARGIN

    rng = np.random.default_rng(8)
    t = _stats(rng)
    # each head attends its own way (a peaked pattern), with a little prompt-to-prompt noise
    base = np.exp(4 * rng.normal(size=t.block_patterns.shape[1:]))
    t.block_patterns[:] = base / base.sum(-1, keepdims=True) + 0.02 * rng.uniform(size=t.block_patterns.shape)
    t.block_patterns[:, 1] = t.block_patterns[:, 0]  # teacher L0H1 duplicates L0H0
    s = ResampleStats(t.block_patterns.copy(), t.block_counts.copy(), [x.copy() for x in t.mlp_rows], t.row_block)
    mean = lambda m: m.block_patterns.sum(0) / m.block_patterns.shape[0]  # noqa: E731
    sims = {"head": head_similarity(mean(s), mean(t)), "mlp": mlp_similarity_cka(s.mlp_rows, t.mlp_rows)}
    ids = [f"L{l}H{h}" for l in range(2) for h in range(3)]
    pairs = match_components(sims["head"], sims["mlp"], ids, ids, ["L0MLP", "L1MLP"], ["L0MLP", "L1MLP"])
    st = match_stability(resample_similarities(s, t, mlp_method="linear_cka", qmask=None, n_resamples=200, seed=0),
                         pairs, sims, direction="student_to_teacher")
    by = {p.student: k for k, p in enumerate(pairs)}
    tie = by["L0H0"]
    assert st.confidence[tie] == 1.0 and st.margin[tie] == pytest.approx(0.0, abs=1e-12) and st.ambiguous[tie]
    for cid in ("L0H2", "L1H0", "L1H1", "L1H2", "L0MLP", "L1MLP"):
        k = by[cid]
        assert st.margin[k] >= MIN_MARGIN and st.margin_ci95[k][0] > 0 and not st.ambiguous[k], (cid, st.margin[k])
    # a margin below the smallest meaningful difference is a near-tie even with an interval above 0
    k = by["L1H0"]
    assert (st.margin_ci95[k][0] <= 0 or st.margin[k] < MIN_MARGIN) == st.ambiguous[k]


def test_the_chain_interval_recomputes_similarities_matching_and_influences_per_resample():
    """#29 §4: each resample's score equals the plain computation on the drawn prompts: similarities
    from the drawn prompts' statistics, the pairs matched again, influences from the drawn prompts'
    metric values."""
    from circuitdiff.analysis.alignment import alignment_score_from_pairs
    from circuitdiff.analysis.chain import block_deltas, chain_intervals
    from circuitdiff.analysis.confidence import Resampled

    rng = np.random.default_rng(11)
    s, t = _stats(rng), _stats(rng)
    ids = [f"L{l}H{h}" for l in range(2) for h in range(3)]
    comps = ids + ["L0MLP", "L1MLP"]
    P = s.block_patterns.shape[0]
    clean = {r: rng.normal(3.0, 1.0, size=P) for r in ("student", "teacher")}
    ablated = {r: clean[r][None, :] - rng.uniform(0, 2, size=(len(comps), P)) for r in ("student", "teacher")}
    blocks = np.arange(P)
    deltas = {r: block_deltas(ablated[r], clean[r], blocks) for r in ("student", "teacher")}
    rows = {r: {c: i for i, c in enumerate(comps)} for r in ("student", "teacher")}

    def rematch(heads, mlps):
        return match_components(heads, mlps, ids, ids, ["L0MLP", "L1MLP"], ["L0MLP", "L1MLP"])

    draws = [rng.integers(0, P, size=P) for _ in range(3)]
    c = np.zeros((3, P))
    for k, d in enumerate(draws):
        np.add.at(c[k], d, 1.0)
    rows_all = np.arange(len(s.row_block))
    res = Resampled(c, _head_sims(s, t, c, None), _cka_sims(s, t, c, rows_all))
    got = chain_intervals(res, rematch, deltas, rows)
    for k, d in enumerate(draws):
        mean = lambda m: m.block_patterns[d].sum(0) / len(d)  # noqa: E731
        rows_k = np.concatenate([np.flatnonzero(s.row_block == b) for b in d])
        heads = head_similarity(mean(s), mean(t))
        mlps = mlp_similarity_cka([x[rows_k] for x in s.mlp_rows], [x[rows_k] for x in t.mlp_rows])
        pairs = rematch(heads, mlps)
        infl = {r: dict(zip(comps, np.abs(ablated[r][:, d].mean(1) - clean[r][d].mean()))) for r in rows}
        want = alignment_score_from_pairs(pairs, infl["student"], infl["teacher"])
        assert got.scores[k] == pytest.approx(want, abs=1e-4)


def test_rows_few_prompts_have_count_as_little_in_the_default_head_similarity():
    """#29 §4: a query row only the longest prompt reaches weighs by the prompts that have it, so a
    draw with or without that prompt moves the similarity by its share, not by a whole row's; the
    resampled form weights the same way (it equals the plain computation on the drawn prompts)."""
    rng = np.random.default_rng(12)
    s = _stats(rng, n_prompts=20, T=6)
    s.block_counts[:, 5] = 0.0
    s.block_counts[0, 5] = 1.0  # only prompt 0 reaches the last row
    s.block_patterns[1:, :, 5] = 0.0
    t = ResampleStats(s.block_patterns.copy(), s.block_counts.copy(), s.mlp_rows, s.row_block)
    t.block_patterns[0, :, 5] = rng.uniform(size=t.block_patterns[0, :, 5].shape)  # the rare row differs
    rows = s.block_counts.sum(0)
    mean = lambda m, d: m.block_patterns[d].sum(0) / np.maximum(m.block_counts[d].sum(0), 1)[None, :, None]  # noqa: E731
    every = np.arange(20)
    alike = head_similarity(mean(s, every), mean(t, every))
    weighted = head_similarity(mean(s, every), mean(t, every), row_weights=rows)
    diag = lambda m: np.diag(m)  # noqa: E731
    assert diag(weighted).min() > diag(alike).min()  # the rare row costs 1/20 of its share, not 1/6
    # the resampled form, weighted: the plain computation on the drawn prompts with their row counts
    draws = rng.integers(0, 20, size=20)
    c = np.zeros((1, 20))
    np.add.at(c[0], draws, 1.0)
    d_rows = c[0] @ s.block_counts
    want = head_similarity((c[0] @ s.block_patterns.reshape(20, -1)).reshape(s.block_patterns.shape[1:]) /
                           np.maximum(d_rows, 1)[None, :, None],
                           (c[0] @ t.block_patterns.reshape(20, -1)).reshape(t.block_patterns.shape[1:]) /
                           np.maximum(d_rows, 1)[None, :, None], row_weights=d_rows)
    np.testing.assert_allclose(_head_sims(s, t, c, None, row_weighted=True)[0], want, atol=1e-10)
