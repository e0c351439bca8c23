"""Unit tests of the analysis math (components, similarity, matching, alignment, robustness).

Every expected value is derived independently (by hand, or by a plain loop written here), so a
broken vectorisation, a wrong axis or a lost guard fails a test.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from circuitdiff.analysis.alignment import (
    alignment_bootstrap_ci,
    alignment_score,
    alignment_score_from_pairs,
    normalised_influence,
)
from circuitdiff.vocabulary import (
    ComponentIdError,
    canonical_key,
    component_ids,
    head_id,
    mlp_id,
    parse_component,
)
from circuitdiff.analysis.authors import drops_from_impact
from circuitdiff.analysis.matching import duplicate_unmatched, match, match_components
from circuitdiff.analysis.robustness import (
    compression_ratio,
    delta_mean_with_ci,
    drops_from_retained,
    gini,
    mean_with_ci,
    model_robustness,
    robustness_stats,
    severity,
    worst_fraction_mean,
)
from circuitdiff.analysis.similarity import (
    head_similarity,
    linear_cka,
    mlp_similarity_cka,
    mlp_similarity_eigen,
    query_rows,
    rescale_to_distribution,
    rescale_to_heads,
    top_eigenvectors,
)


def random_patterns(rng: np.random.Generator, n_heads: int, t: int) -> np.ndarray:
    """Causal attention patterns: [H, T, T], rows sum to 1 over keys <= query."""
    logits = rng.normal(size=(n_heads, t, t)) * 2
    logits[:, np.triu_indices(t, 1)[0], np.triu_indices(t, 1)[1]] = -np.inf
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


# ---------------------------------------------------------------- components


def test_component_ids_round_trip_and_order():
    assert head_id(3, 7) == "L3H7" and mlp_id(3) == "L3MLP"
    assert parse_component("L3H7").head == 7 and parse_component("L3H7").layer == 3
    assert parse_component("L3MLP").head is None and parse_component("MLP3").id == "L3MLP"
    ids = component_ids(2, 3)
    assert ids == ["L0H0", "L0H1", "L0H2", "L1H0", "L1H1", "L1H2", "L0MLP", "L1MLP"]
    shuffled = list(reversed(ids))
    assert sorted(shuffled, key=canonical_key) == ids
    assert component_ids(12, 12)[143] == "L11H11" and len(component_ids(12, 12)) == 156


@pytest.mark.parametrize("bad", ["L3", "H3", "L3h7", "L-1H2", "3H7", ""])
def test_bad_component_ids_raise(bad):
    with pytest.raises(ComponentIdError):
        parse_component(bad)


# ---------------------------------------------------------------- head similarity


def loop_head_similarity(s: np.ndarray, t: np.ndarray, rows) -> np.ndarray:
    """The notebook's definition, one pair and one row at a time."""
    out = np.zeros((len(s), len(t)))
    for i in range(len(s)):
        for j in range(len(t)):
            cos = [
                s[i, q] @ t[j, q] / (np.linalg.norm(s[i, q]) * np.linalg.norm(t[j, q]))
                for q in rows
            ]
            out[i, j] = np.mean(cos)
    return out


def test_identical_patterns_have_similarity_one():
    p = random_patterns(np.random.default_rng(0), 4, 6)
    sim = head_similarity(p, p)
    np.testing.assert_allclose(np.diag(sim), 1.0, atol=1e-12)
    assert (sim <= 1 + 1e-12).all() and (sim >= 0).all()


def test_head_similarity_equals_rowwise_loop_with_and_without_mask():
    rng = np.random.default_rng(1)
    s, t = random_patterns(rng, 3, 7), random_patterns(rng, 5, 7)
    np.testing.assert_allclose(head_similarity(s, t), loop_head_similarity(s, t, range(7)), atol=1e-12)
    mask = query_rows(7, exclude_first=True, n_valid=6)
    assert mask.tolist() == [False, True, True, True, True, True, False]
    np.testing.assert_allclose(head_similarity(s, t, mask), loop_head_similarity(s, t, range(1, 6)), atol=1e-12)


def test_row_zero_inflates_the_paper_score():
    """Causal row 0 is always identical; excluding it is what the default preset does."""
    t = 4
    a = np.zeros((1, t, t))
    b = np.zeros((1, t, t))
    a[0, 0, 0] = b[0, 0, 0] = 1.0
    for q in range(1, t):  # a attends to the previous token, b to itself: orthogonal rows
        a[0, q, q - 1] = 1.0
        b[0, q, q] = 1.0
    assert head_similarity(a, b)[0, 0] == pytest.approx(1 / t)
    assert head_similarity(a, b, query_rows(t))[0, 0] == pytest.approx(0.0)


def test_head_similarity_permutation_and_layer_layout_and_torch():
    rng = np.random.default_rng(2)
    s, t = random_patterns(rng, 6, 5), random_patterns(rng, 4, 5)
    perm = rng.permutation(6)
    np.testing.assert_allclose(head_similarity(s[perm], t), head_similarity(s, t)[perm], atol=1e-12)
    # [L, H, T, T] flattens row-major, like component ids
    np.testing.assert_allclose(head_similarity(s.reshape(2, 3, 5, 5), t), head_similarity(s, t), atol=1e-12)
    np.testing.assert_allclose(
        head_similarity(torch.tensor(s, dtype=torch.float32), torch.tensor(t)), head_similarity(s, t), atol=1e-6
    )


def test_head_similarity_rejects_different_tokenisations():
    rng = np.random.default_rng(3)
    with pytest.raises(ValueError, match="same tokenisation"):
        head_similarity(random_patterns(rng, 2, 5), random_patterns(rng, 2, 6))


# ---------------------------------------------------------------- MLP similarity


def low_rank_acts(rng, n=200, d=16, rank=3, scale=(5.0, 3.0, 2.0)):
    basis = np.linalg.qr(rng.normal(size=(d, rank)))[0]  # [d, rank], orthonormal
    coeffs = rng.normal(size=(n, rank)) * np.array(scale)
    return coeffs @ basis.T + 0.01 * rng.normal(size=(n, d)), basis


def test_top_eigenvectors_are_those_of_the_uncentred_second_moment():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(50, 8)) + 2.0  # offset: uncentred and centred PCA differ
    vecs = top_eigenvectors(x, 3)
    c = x.T @ x / len(x)
    w, v = np.linalg.eigh(c)
    for k in range(3):
        assert abs(vecs[k] @ v[:, -1 - k]) == pytest.approx(1.0, abs=1e-9)
    np.testing.assert_allclose(vecs @ vecs.T, np.eye(3), atol=1e-9)
    # deterministic sign, whatever the solver returns: the largest-magnitude entry is positive
    assert (vecs[np.arange(3), np.abs(vecs).argmax(axis=1)] > 0).all()
    # the n < d path (SVD of X) agrees with the eigh path
    small = x[:6]
    via_svd = top_eigenvectors(small, 3)
    w2, v2 = np.linalg.eigh(small.T @ small / 6)
    for k in range(3):
        assert abs(via_svd[k] @ v2[:, -1 - k]) == pytest.approx(1.0, abs=1e-9)
    assert top_eigenvectors(x[:2], 3) is None


def test_eigen_similarity_sign_flip_symmetry_and_self_value():
    rng = np.random.default_rng(6)
    a, _ = low_rank_acts(rng)
    b, _ = low_rank_acts(rng)
    sim = mlp_similarity_eigen([a, b], [a, -b, b[:2]])
    # identical layers: M = I_3, |mean| = 1/3 (the paper's metric tops out there for k=3)
    assert sim[0, 0] == pytest.approx(1 / 3, abs=1e-9)
    # negating the activations leaves C = XᵀX/n, hence the score, unchanged
    assert sim[1, 1] == pytest.approx(1 / 3, abs=1e-9)  # b against -b
    assert sim[0, 1] == pytest.approx(mlp_similarity_eigen([a], [b])[0, 0], abs=1e-12)  # a vs -b == a vs b
    assert sim[0, 2] == 0.0 and sim[1, 2] == 0.0  # n = 2 < k = 3
    np.testing.assert_allclose(mlp_similarity_eigen([b], [a]), mlp_similarity_eigen([a], [b]).T, atol=1e-12)
    # torch and [batch, pos, d] input
    t = torch.tensor(a.reshape(20, 10, 16))
    assert mlp_similarity_eigen(t[None], [a])[0, 0] == pytest.approx(1 / 3, abs=1e-9)


def test_linear_cka_invariances():
    rng = np.random.default_rng(8)
    x = rng.normal(size=(60, 10))
    q = np.linalg.qr(rng.normal(size=(10, 10)))[0]
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)
    assert linear_cka(x, x @ q) == pytest.approx(1.0, abs=1e-12)  # orthogonal rotation
    assert linear_cka(x, 3.0 * x + 1.0) == pytest.approx(1.0, abs=1e-12)  # scale and offset
    y = rng.normal(size=(60, 10))
    assert 0.0 < linear_cka(x, y) < 0.5
    assert linear_cka(x, np.ones((60, 4))) == 0.0  # constant representation


def test_cka_gram_and_feature_paths_agree_and_check_rows():
    rng = np.random.default_rng(9)
    wide_a, wide_b = rng.normal(size=(8, 30)), rng.normal(size=(8, 30))  # n < d: Gram path
    xc, yc = wide_a - wide_a.mean(0), wide_b - wide_b.mean(0)
    expected = np.linalg.norm(yc.T @ xc) ** 2 / (np.linalg.norm(xc.T @ xc) * np.linalg.norm(yc.T @ yc))
    assert linear_cka(wide_a, wide_b) == pytest.approx(expected, rel=1e-10)
    sim = mlp_similarity_cka([wide_a, wide_b], [wide_b])
    assert sim.shape == (2, 1) and sim[1, 0] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="same rows"):
        mlp_similarity_cka([wide_a], [wide_a[:5]])


def test_rescale_to_heads_uses_head_mean_and_unbiased_std():
    rng = np.random.default_rng(10)
    raw = np.abs(rng.normal(0.1, 0.05, size=(3, 6)))
    heads = rng.uniform(0.3, 1.0, size=(12, 24))
    got = rescale_to_heads(raw, heads)
    assert got.max() == pytest.approx(1.0)
    np.testing.assert_allclose(got, rescale_to_distribution(raw, heads.mean(), heads.std(ddof=1)))
    # by hand for one entry
    pos = raw[raw > 0]
    v = (raw - pos.mean()) / pos.std() * heads.std(ddof=1) + heads.mean()
    np.testing.assert_allclose(got, v / v.max(), atol=1e-12)
    # the authors' cell leaves values mapped below 0 as they are; zero_negative sets them to 0
    spread = np.array([[0.001, 0.5, 0.51, 0.52]])
    assert rescale_to_distribution(spread, 0.1, 1.0)[0, 0] < 0
    assert rescale_to_distribution(spread, 0.1, 1.0, zero_negative=True)[0, 0] == 0.0


# ---------------------------------------------------------------- matching


def test_self_similarity_gives_identity_matching_both_directions():
    p = random_patterns(np.random.default_rng(11), 6, 8)
    ids = [f"L0H{i}" for i in range(6)]
    sim = head_similarity(p, p)
    for direction in ("student_to_teacher", "teacher_to_student"):
        pairs = match(sim, ids, ids, direction=direction)
        assert [(q.student, q.teacher) for q in pairs] == [(i, i) for i in ids]
        assert all(q.matched and q.similarity == pytest.approx(1.0) for q in pairs)


def test_matching_directions_ties_and_thresholds():
    sim = np.array([[0.2, 0.9, 0.9], [0.96, 0.1, 0.3]])
    s_ids, t_ids = ["S0", "S1"], ["T0", "T1", "T2"]
    first = match(sim, s_ids, t_ids)
    assert [(q.student, q.teacher, q.matched) for q in first] == [("S0", "T1", False), ("S1", "T0", True)]
    assert match(sim, s_ids, t_ids, ties="last")[0].teacher == "T2"
    t2s = match(sim, s_ids, t_ids, direction="teacher_to_student")
    assert [(q.teacher, q.student) for q in t2s] == [("T0", "S1"), ("T1", "S0"), ("T2", "S0")]
    with pytest.raises(ValueError, match="expected"):
        match(sim.T, s_ids, t_ids)


def test_duplicate_unmatched_appends_below_threshold_pairs_once_more():
    head = np.array([[0.99, 0.2], [0.5, 0.94]])
    mlp = np.array([[0.05, 0.11], [0.3, 0.2]])
    pairs = match_components(head, mlp, ["a", "b"], ["A", "B"], ["m", "n"], ["M", "N"],
                             duplicate_below_threshold=True)
    firsts = [p for p in pairs if not p.duplicated]
    dups = [p for p in pairs if p.duplicated]
    # the below-threshold MLP pair m -> N is not duplicated: the authors' MLP list was a set
    assert not firsts[2].matched and firsts[2].kind == "mlp"
    assert len(firsts) == 4 and [(p.student, p.teacher) for p in dups] == [("b", "B")]
    assert [p.kind for p in firsts] == ["head", "head", "mlp", "mlp"]
    assert duplicate_unmatched(firsts) == pairs
    assert len(match_components(head, mlp, ["a", "b"], ["A", "B"], ["m", "n"], ["M", "N"])) == 4


# ---------------------------------------------------------------- alignment score


def test_self_alignment_is_one():
    infl = np.array([3.0, 0.5, 0.0, 1.2])
    assert alignment_score(infl, infl, np.ones(4)) == 1.0


def test_alignment_by_hand():
    i_s, i_t, s = np.array([1.0, 3.0]), np.array([2.0, 2.0]), np.array([0.8, 0.6])
    # Î_S = [.25, .75], Î_T = [.5, .5]; A = (0.8*0.75 + 0.6*0.75)/2
    assert alignment_score(i_s, i_t, s) == pytest.approx((0.8 * 0.75 + 0.6 * 0.75) / 2)
    assert alignment_score(10 * i_s, 0.1 * i_t, s) == pytest.approx(alignment_score(i_s, i_t, s))  # unit-free


def test_zero_influence_guard_is_uniform_not_nan():
    assert normalised_influence([0.0, 0.0, 0.0]).tolist() == pytest.approx([1 / 3] * 3)
    score = alignment_score([0.0, 0.0], [1.0, 3.0], [1.0, 1.0])
    assert score == pytest.approx(1 - 0.25)
    with pytest.raises(ValueError):
        alignment_score([-1.0, 2.0], [1.0, 1.0], [1.0, 1.0])


def test_alignment_from_pairs_uses_ids():
    head = np.array([[0.99, 0.2], [0.3, 0.97]])
    pairs = match(head, ["L0H0", "L0H1"], ["L0H0", "L0H1"])
    i = {"L0H0": 2.0, "L0H1": 1.0}
    assert alignment_score_from_pairs(pairs, i, i) == pytest.approx((0.99 + 0.97) / 2)


def loop_bootstrap(ds, dt, si, ti, sim, counts_s, counts_t):
    """Plain per-resample recomputation: influences from resampled means, then A."""
    out = []
    for b in range(len(counts_s)):
        idx_s = np.repeat(np.arange(ds.shape[1]), counts_s[b].astype(int))
        idx_t = np.repeat(np.arange(dt.shape[1]), counts_t[b].astype(int))
        i_s = np.abs(ds[:, idx_s].mean(axis=1))
        i_t = np.abs(dt[:, idx_t].mean(axis=1))
        out.append(alignment_score(i_s[si], i_t[ti], sim))
    return np.array(out)


def test_bootstrap_equals_plain_loop_and_contains_point():
    rng = np.random.default_rng(12)
    n_prompts = 30
    clean_s, clean_t = rng.normal(3, 1, n_prompts), rng.normal(4, 1, n_prompts)
    ld_s = clean_s - rng.gamma(1.0, 0.5, size=(5, n_prompts))
    ld_t = clean_t - rng.gamma(1.0, 0.5, size=(8, n_prompts))
    si, ti, sim = [0, 1, 2, 3, 4, 4], [2, 2, 5, 7, 0, 0], [0.9, 0.8, 0.95, 0.7, 0.85, 0.85]
    ci = alignment_bootstrap_ci(ld_s, clean_s, ld_t, clean_t, si, ti, sim, n_boot=200, seed=3, chunk=64)
    point = alignment_score(np.abs((ld_s - clean_s).mean(1))[si], np.abs((ld_t - clean_t).mean(1))[ti], sim)
    assert ci.score == pytest.approx(point, abs=1e-12)
    assert ci.ci95[0] <= point <= ci.ci95[1] and ci.ci95[0] < ci.ci95[1]
    # regenerate the same paired resamples and recompute the scores with a loop
    g = np.random.default_rng(3)
    counts = []
    for b in (64, 64, 64, 8):
        idx = g.integers(0, n_prompts, size=(b, n_prompts))
        counts += [np.bincount(row, minlength=n_prompts) for row in idx]
    expected = loop_bootstrap((ld_s - clean_s), (ld_t - clean_t), si, ti, np.array(sim), np.array(counts), np.array(counts))
    np.testing.assert_allclose(ci.samples, expected, atol=1e-12)
    again = alignment_bootstrap_ci(ld_s, clean_s, ld_t, clean_t, si, ti, sim, n_boot=200, seed=3)
    np.testing.assert_allclose(again.samples, ci.samples, atol=1e-12)  # chunking does not change draws


def test_bootstrap_self_comparison_is_always_one_and_unpaired_works():
    rng = np.random.default_rng(13)
    clean = rng.normal(3, 1, 20)
    ld = clean - rng.gamma(1.0, 0.5, size=(4, 20))
    ci = alignment_bootstrap_ci(ld, clean, ld, clean, [0, 1, 2, 3], [0, 1, 2, 3], [1.0] * 4, n_boot=100)
    np.testing.assert_allclose(ci.samples, 1.0)
    unpaired = alignment_bootstrap_ci(ld, clean, ld[:, :15], clean[:15], [0, 1], [0, 1], [1.0, 1.0], n_boot=50)
    assert unpaired.samples.shape == (50,) and (unpaired.samples <= 1.0).all()
    with pytest.raises(ValueError, match="paired"):
        alignment_bootstrap_ci(ld, clean, ld[:, :15], clean[:15], [0], [0], [1.0], paired=True)


# ---------------------------------------------------------------- robustness


def test_drop_rules():
    assert drops_from_retained([150.0, 100.0, 80.0, -20.0]).tolist() == [0.0, 0.0, 20.0, 100.0]
    assert drops_from_impact([-5.0, 30.0, 130.0]).tolist() == [0.0, 30.0, 100.0]
    with pytest.raises(ValueError, match="NaN"):
        drops_from_retained([float("nan"), 90.0])


def test_severity_by_hand():
    # weights: 0 (below T), 0, (60-20)/80 = .5, 1 (capped at L)
    assert severity([5.0, 20.0, 60.0, 150.0]) == pytest.approx(1.5 / 4)
    assert severity([60.0], alpha=2) == pytest.approx(0.25)


def test_gini_worst_fraction_and_compression():
    assert gini([2.0, 2.0, 2.0, 2.0]) == pytest.approx(0.0)
    assert gini([0.0, 0.0, 0.0, 8.0]) == pytest.approx(3 / 4)  # (n-1)/n for one carrier
    assert gini([0.0, 0.0]) == 0.0
    assert worst_fraction_mean(list(range(1, 41))) == pytest.approx(39.5)  # ceil(0.05*40) = 2 -> 40, 39
    assert compression_ratio(124e6, 82e6) == pytest.approx(42 / 124)


def test_bootstrap_ci_contains_mean_and_is_seeded():
    rng = np.random.default_rng(14)
    drops = rng.gamma(0.5, 4.0, size=80)
    mean, lo, hi = mean_with_ci(drops, n_boot=500)
    assert lo < mean < hi and mean == pytest.approx(drops.mean())
    assert mean_with_ci(drops, n_boot=500) == (mean, lo, hi)
    d, dlo, dhi = delta_mean_with_ci(drops, drops + 5.0, n_boot=500)
    assert dlo < 5.0 < dhi and d == pytest.approx(5.0, abs=1.0)


def test_robustness_stats_without_bootstrap_and_without_compression():
    t, s = [0.0, 10.0, 30.0], [0.0, 50.0, 100.0]
    st = robustness_stats(t, s, 1e6, 1e6, n_boot=0)
    assert st.teacher.mean_drop_ci95 is None and st.delta_mean_drop_ci95 is None
    assert st.delta_mean_drop == pytest.approx(50.0 - 40.0 / 3)
    assert st.slope_mean is None and st.slope_severity is None  # C = 0: a model against itself
    st2 = robustness_stats(t, s, 2e6, 1e6, n_boot=0)
    assert st2.slope_mean == pytest.approx(st2.delta_mean_drop / 0.5)
    m = model_robustness(s, n_boot=0)
    assert (m.max_drop, m.median_drop, m.n_components) == (100.0, 50.0, 3)
    assert math.isclose(m.severity, (0 + 30 / 80 + 1) / 3)


# ---------------------------------------------------------------- circuits (iterative node pruning)

from circuitdiff.analysis.pruning import circuit_overlap, find_circuit, jaccard, pass_order  # noqa: E402


def test_pass_orders_are_generic_and_follow_the_authors():
    back = pass_order(3, 2, "backward")
    assert back == ["L2MLP", "L2H0", "L2H1", "L1MLP", "L1H0", "L1H1", "L0MLP", "L0H0", "L0H1"]
    assert pass_order(3, 2, "forward") == ["L0H0", "L0H1", "L0MLP", "L1H0", "L1H1", "L1MLP", "L2H0", "L2H1", "L2MLP"]
    assert len(pass_order(6, 12, "backward")) == 78  # DistilGPT2 shape, no phantom layers 6..11


def test_pruning_recovers_a_planted_circuit():
    essential = {"L0H1", "L2H3", "L1MLP", "L3MLP"}
    calls = []

    def score(kept: frozenset[str]) -> float:
        calls.append(kept)
        if not essential <= kept:
            return 0.0
        return 5.0 - 0.001 * (4 * 5 + 4 - len(kept))  # removing bystanders costs almost nothing

    circ = find_circuit(score, n_layers=4, n_heads=5, threshold=20)
    assert set(circ.components) == essential
    assert circ.heads == ["L0H1", "L2H3"] and circ.mlps == ["L1MLP", "L3MLP"]
    assert circ.score_pct == pytest.approx(100 * (5.0 - 0.001 * 20) / 5.0)
    assert circ.trace[0].component == "L3MLP" and not circ.trace[0].removed  # backward, MLP first
    assert circ.n_evaluations == len(set(calls)) == len(calls)  # memoised: no set scored twice


def test_pruning_threshold_budget_follows_backward_order():
    """Each removal costs 3 points: with T = 20 only 6 fit (18 < 20, 21 is not), taken in pass order."""

    def score(kept: frozenset[str]) -> float:
        return 100.0 - 3.0 * (3 * 3 + 3 - len(kept))

    circ = find_circuit(score, n_layers=3, n_heads=3, threshold=20)
    removed = set(pass_order(3, 3, "forward")) - set(circ.components)
    assert removed == {"L2MLP", "L2H0", "L2H1", "L2H2", "L1MLP", "L1H0"}
    assert circ.score_pct == pytest.approx(82.0)


def test_forward_pass_removes_what_became_removable():
    """X (layer 2) only matters while Y (layer 0) is kept: the backward pass keeps X and drops Y,
    the forward pass then drops X."""
    x, y = "L2H0", "L0H0"

    def score(kept: frozenset[str]) -> float:
        return 75.0 if (x not in kept and y in kept) else 100.0

    circ = find_circuit(score, n_layers=3, n_heads=1, mlps=False, threshold=20)
    assert x not in circ.components and y not in circ.components
    assert [s.direction for s in circ.trace if s.component == x] == ["backward", "forward"]
    assert circ.n_passes == 3  # backward, forward (removes X), backward (nothing left to remove)


def test_pruning_needs_a_positive_full_score_and_known_components():
    with pytest.raises(ValueError, match="positive"):
        find_circuit(lambda kept: -1.0, 2, 2)
    with pytest.raises(ValueError, match="does not have"):
        find_circuit(lambda kept: 1.0, 2, 2, start=["L5H0"])


def test_circuit_overlap_through_matching():
    head = np.array([[0.99, 0.2, 0.1], [0.3, 0.97, 0.2]])
    pairs = match(head, ["L0H0", "L0H1"], ["L0H0", "L1H0", "L1H1"])
    ov = circuit_overlap(["L0H0", "L0H1"], ["L1H0", "L1H1"], pairs)
    assert ov["mapped"] == [("L0H1", "L1H0")]
    assert ov["fraction_of_student"] == 0.5 and ov["fraction_of_teacher"] == 0.5
    assert jaccard(["a", "b"], ["b", "c"]) == pytest.approx(1 / 3) and jaccard([], []) == 1.0
