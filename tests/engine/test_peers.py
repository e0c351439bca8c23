"""The influence-scan benchmark's peers (benchmarks/peers.py, issue #28 §0) compute circuitdiff's numbers.

Every peer that ``make test`` installs the dependency of (``hooks``: plain PyTorch, ``transformer_lens``:
TransformerLens 4.x's bridge and ``patching`` module) scans a bundled zoo model from circuitdiff's
inputs and must equal circuitdiff's exact scan to 1e-4 of the clean LD scale, the check the benchmark
makes before it times a peer. A peer that fails the check is never timed, and the benchmark says so.

The nnsight peers (``nnsight_trace``, ``nnsight_skip``) need the optional ``.[bench]`` dependencies,
which ``make test`` does not install, and tests here are never skipped: they are checked by
``python benchmarks/peers.py --check`` after ``make bench`` instead (see benchmarks/README.md).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

import peers  # noqa: E402

MODEL = "zoo:gpt-teacher"
INSTALLED_BY_MAKE_TEST = ("hooks", "transformer_lens")


def _bench_scan():
    """benchmarks/scan.py as a module (its report of the peers' figures)."""
    spec = importlib.util.spec_from_file_location("bench_scan", REPO / "benchmarks" / "scan.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def inputs() -> peers.ScanInputs:
    from circuitdiff.catalogue import task_items
    from circuitdiff.models.loading import load_model
    from circuitdiff.tasks.dataset import build_task_data

    torch.manual_seed(0)
    adapter = load_model(MODEL)
    items = task_items("ioi", {}, 6, seed=0)
    task = build_task_data(items, {"teacher": adapter.tokenizer, "student": adapter.tokenizer}, name="ioi")
    return peers.prepare(adapter, task.view("teacher"), MODEL)


def test_the_peers_make_test_installs_have_their_dependencies():
    for name in INSTALLED_BY_MAKE_TEST:
        assert peers.missing_dependency(name) is None, name


@pytest.mark.parametrize("name", INSTALLED_BY_MAKE_TEST)
def test_peer_equals_the_exact_scan(inputs, name):
    model, tok = peers.load_plain(MODEL)
    assert peers.unsupported(model) is None
    # two prompt batches: the peers' batching is exercised
    clean, ablated = peers.make_peer(name, model, tok, inputs, batch_size=4).scan(inputs.components)
    assert ablated.shape == (len(inputs.components), inputs.n)
    scale = float(inputs.ref_clean.abs().mean())
    assert scale > 0
    assert float((clean - inputs.ref_clean).abs().max()) <= 1e-4 * scale  # same weights, same prompts
    assert peers.check(inputs, clean, ablated) <= 1e-4
    # the check is not vacuous: the ablations move the metric far more than the tolerance
    moved = (inputs.ref_ablated - inputs.ref_clean[None]).mean(1).abs().max()
    assert float(moved) / scale > 100 * peers.TOLERANCE


def test_a_peer_is_timed_only_after_it_passes_and_a_failure_is_reported(inputs, monkeypatch):
    ok = peers.run_role("hooks", inputs, batch_size=4, timed_components=2)
    assert ok["passed"] and ok["max_abs_diff_rel"] <= 1e-4
    assert ok["timed_components"] == 2 and ok["seconds"] > 0 and ok["fixed_seconds"] is not None
    full = peers.run_role("transformer_lens", inputs, batch_size=4)
    assert full["timed_components"] == len(inputs.components) and "fixed_seconds" not in full

    monkeypatch.setattr(peers, "TOLERANCE", 1e-15)  # no float32 scan meets this: the check must fail
    bad = peers.run_role("hooks", inputs, batch_size=4)
    assert bad["passed"] is False and "seconds" not in bad and "timed_components" not in bad
    monkeypatch.undo()  # the report below judges with the real tolerance

    exact = {"models": {"teacher": {"seconds": 1.0}}}
    lines = dict(_bench_scan().peer_report(
        {"hooks": {"roles": {"teacher": bad}}, "transformer_lens": {"roles": {"teacher": full}}},
        {("exact", "float32"): exact}))
    assert lines["peer_hooks_float32_s"].startswith("not timed: failed its equality check on teacher")
    assert lines["best_peer"] == "transformer_lens"
    assert lines["speedup_exact_float32_vs_best_peer"].startswith(f"{full['seconds'] / 1.0:.2f} (transformer_lens")
    assert "peer_hooks_max_abs_diff_rel" in lines

    none = dict(_bench_scan().peer_report({"hooks": {"roles": {"teacher": bad}}}, {}))
    assert none["best_peer"].startswith("none")
