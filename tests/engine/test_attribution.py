"""Attribution patching: a labelled approximation whose ranking agrees with the exact scan."""

from __future__ import annotations

import pytest
import torch

from circuitdiff.scan.attribution import agreement, sample_components, spearman


def test_spearman_and_topk_overlap():
    assert abs(spearman([1, 2, 3, 4], [10, 20, 30, 40]) - 1.0) < 1e-12
    assert abs(spearman([1, 2, 3, 4], [4, 3, 2, 1]) + 1.0) < 1e-12
    assert abs(spearman([1, 1, 2, 3], [1, 2, 3, 4]) - 0.9486832980505138) < 1e-12  # ties: average rank
    a = agreement({"A": 3.0, "B": 2.0, "C": 1.0, "D": 0.0}, {"A": 0.1, "B": 3.0, "C": 0.5, "D": 0.2}, top_k=2)
    assert a["top_k"] == 2 and a["top_k_overlap"] == 0.5 and a["n_checked"] == 4


def test_sample_is_reproducible_and_canonical():
    ids = [f"L0H{h}" for h in range(8)] + ["L0MLP"]
    s = sample_components(ids, 4, seed=3)
    assert s == sample_components(ids, 4, seed=3) and len(s) == 4
    assert s == [c for c in ids if c in s]
    assert sample_components(ids, 50, seed=3) == ids


def _scan_pair(model_id: str, task: str, n: int, check: int):
    from circuitdiff.scan import scan
    from circuitdiff.models.loading import load_model
    from circuitdiff.tasks.dataset import build_task_data
    from circuitdiff.catalogue import task_items

    adapter = load_model(model_id)
    tok = adapter.tokenizer
    view = build_task_data(task_items(task, {}, n, seed=0), {"teacher": tok, "student": tok}, name=task).view("teacher")
    return adapter, view, scan(adapter, view, "mean", method="attribution", check=check)


def test_attribution_scan_on_a_tiny_checkpoint_is_labelled_and_checked(tiny_gpt_dir):
    adapter, view, approx = _scan_pair(str(tiny_gpt_dir), "ioi", 12, check=6)
    assert approx.method == "attribution"
    assert approx.ablated_ld.shape == (adapter.n_layers * (adapter.n_heads + 1), view.n)
    ag = approx.agreement
    assert ag["n_checked"] == 6 and 0 <= ag["top_k_overlap"] <= 1
    assert -1 <= ag["spearman"] <= 1
    # the clean LD is the real one, not an estimate
    from circuitdiff.scan import scan

    exact = scan(adapter, view, "mean", method="exact")
    assert torch.allclose(approx.clean_ld, exact.clean_ld, atol=1e-5)


def test_attribution_ranking_agrees_with_exact_on_zoo_teacher_ioi(zoo_gpt_pair):
    teacher, _ = zoo_gpt_pair
    adapter, _, approx = _scan_pair(teacher, "ioi", 32, check=10_000)  # check every component
    ag = approx.agreement
    print(f"zoo teacher IOI, mean ablation: attribution vs exact Spearman = {ag['spearman']:.3f}, "
          f"top-{ag['top_k']} overlap = {ag['top_k_overlap']:.2f} over {ag['n_checked']} components")
    assert approx.method == "attribution"
    assert ag["n_checked"] == adapter.n_layers * (adapter.n_heads + 1)
    assert ag["spearman"] > 0
    # #28 §1: the same agreement per component kind, each over its own components only
    from circuitdiff.scan.attribution import agreement

    by = ag["by_kind"]
    assert set(by) == {"heads", "mlps"}
    assert by["heads"]["n_checked"] == adapter.n_layers * adapter.n_heads and by["mlps"]["n_checked"] == adapter.n_layers
    comps = approx.components
    est = {c: abs(float((approx.ablated_ld[i] - approx.clean_ld).mean())) for i, c in enumerate(comps)}
    from circuitdiff.scan import scan as full_scan
    _, view, _ = _scan_pair(teacher, "ioi", 32, check=0)
    ex = full_scan(adapter, view, "mean", method="exact").influences()
    heads = [c for c in comps if not c.endswith("MLP")]
    want = agreement({c: est[c] for c in heads}, {c: ex[c] for c in heads})
    assert by["heads"]["spearman"] == pytest.approx(want["spearman"], abs=1e-6)
    mlp_err = max(abs(est[c] - ex[c]) for c in comps if c.endswith("MLP"))
    scale = float(approx.clean_ld.double().abs().mean())
    assert by["mlps"]["max_abs_error_rel"] == pytest.approx(mlp_err / scale, rel=1e-4, abs=1e-6)
    print("by kind:", {k: (round(v["spearman"] or 0, 3), round(v["max_abs_error_rel"], 3)) for k, v in by.items()})
