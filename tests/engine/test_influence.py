"""The influence scan equals an independent reference: one plain HF forward per component with a
torch hook (heads: zero/replace the head's slice of the c_proj input; MLPs: replace the MLP
module's output), replacement values computed here from the corrupted prompts."""

from __future__ import annotations

import pytest
import torch
from transformers import GPT2LMHeadModel

from circuitdiff.scan import scan
from circuitdiff.scan.influence import InfluenceScan, naive_scan
from circuitdiff.errors import Cancelled
from circuitdiff.models import load_model
from circuitdiff.tasks.dataset import build_task_data
from circuitdiff.catalogue import task_items

TOL = 1e-5


def _task(adapter, name="ioi", n=6, **opts):
    items = task_items(name, opts, n, seed=0)
    return build_task_data(items, {"teacher": adapter.tokenizer, "student": adapter.tokenizer}, name=name)


# ----------------------------------------------------------------------------- the reference
def _hf_ld(hf, batch, ans, dis, hooks=()):
    handles = [register(fn) for register, fn in hooks]
    try:
        with torch.no_grad():
            logits = hf(input_ids=batch.tokens, attention_mask=batch.attention_mask).logits
    finally:
        for h in handles:
            h.remove()
    end = logits[torch.arange(len(batch)), batch.end_pos].double()
    return end[torch.arange(len(batch)), ans] - end[torch.arange(len(batch)), dis]


def _hf_capture(hf, batch):
    """Per layer: c_proj input [b, T, d_model] (the heads' z, head-major) and MLP output."""
    zs, ms, handles = {}, {}, []
    for l, blk in enumerate(hf.transformer.h):
        handles.append(blk.attn.c_proj.register_forward_pre_hook(lambda m, a, l=l: zs.__setitem__(l, a[0].clone())))
        handles.append(blk.mlp.register_forward_hook(lambda m, a, o, l=l: ms.__setitem__(l, o.clone())))
    with torch.no_grad():
        hf(input_ids=batch.tokens, attention_mask=batch.attention_mask)
    for h in handles:
        h.remove()
    return zs, ms


def reference_scan(hf, view, ablation: str):
    """[component, prompt] LDs in canonical order (heads row-major, then MLPs), and clean LDs."""
    cfg = hf.config
    L, H = cfg.n_layer, cfg.n_head
    dh = cfg.n_embd // H
    b, ans, dis = view.clean, view.answer_ids, view.distractor_ids
    zs = ms = None
    if ablation != "zero":
        zs, ms = _hf_capture(hf, view.corrupted)
        if ablation == "mean":  # per position, over corrupted prompts that have a token there
            w = view.corrupted.attention_mask.double()
            cnt = w.sum(0).clamp(min=1)[:, None]
            zs = {l: ((w[:, :, None] * z.double()).sum(0) / cnt).float() for l, z in zs.items()}
            ms = {l: ((w[:, :, None] * m.double()).sum(0) / cnt).float() for l, m in ms.items()}

    def value(store, l):
        if ablation == "zero":
            return 0.0
        return store[l]  # [T, d] (mean) or [n, T, d] (resample); broadcasts against [n, T, d]

    rows = []
    for l in range(L):
        for h in range(H):
            def pre(m, a, l=l, h=h):
                x = a[0].clone()
                v = value(zs, l)
                x[..., h * dh:(h + 1) * dh] = v if isinstance(v, float) else v[..., h * dh:(h + 1) * dh]
                return (x,)
            rows.append(_hf_ld(hf, b, ans, dis, [(hf.transformer.h[l].attn.c_proj.register_forward_pre_hook, pre)]))
    for l in range(L):
        def post(m, a, o, l=l):
            v = value(ms, l)
            return torch.zeros_like(o) if isinstance(v, float) else v.expand_as(o).clone()
        rows.append(_hf_ld(hf, b, ans, dis, [(hf.transformer.h[l].mlp.register_forward_hook, post)]))
    return torch.stack(rows), _hf_ld(hf, b, ans, dis)


def _check_against_reference(model_dir, task="ioi", ablations=("zero", "mean", "resample"), n=6, batch_size=4, **opts):
    adapter = load_model(str(model_dir))
    hf = GPT2LMHeadModel.from_pretrained(model_dir, attn_implementation="eager").eval()
    data = _task(adapter, task, n, **opts)
    view = data.view("teacher")
    for ablation in ablations:
        got = scan(adapter, view, ablation, method="naive", batch_size=batch_size)  # 4 of 6: slicing matters
        ref, clean = reference_scan(hf, view, ablation)
        assert got.components[0] == "L0H0" and got.components[-1] == f"L{adapter.n_layers - 1}MLP"
        assert torch.allclose(got.clean_ld, clean, atol=TOL * max(1.0, clean.abs().max().item()))
        moved = (ref - clean[None]).abs().max().item()
        assert moved > 1e-2, f"{ablation}: ablations must move the LD for the check to mean anything"
        err = (got.ablated_ld - ref).abs().max().item()
        scale = max(1.0, ref.abs().max().item())
        print(f"{model_dir.name} {task} {ablation}: max |scan - reference| = {err:.2e} "
              f"(largest effect {moved:.3f}, largest |LD| {scale:.2f})")
        # float32: the bridge computes q/k/v from split weights, HF from the fused c_attn, so the two
        # differ by rounding; 1e-5 of the LD's magnitude (trained models reach |LD| ~ 20)
        assert err < TOL * scale


def test_scan_equals_plain_hook_reference_on_a_tiny_model(loud_gpt_dir):
    # IOI prompts have different lengths: padding and per-position means are exercised
    _check_against_reference(loud_gpt_dir, "ioi")


def test_scan_equals_plain_hook_reference_on_the_zoo_teacher(zoo_gpt_pair):
    from circuitdiff.catalogue import zoo_path

    # zero (the paper's IOI choice) and mean (the default); resample and batch slicing are covered
    # on the tiny model above, which keeps this under a minute on a shared CPU
    _check_against_reference(zoo_path("gpt-teacher"), "ioi", ablations=("zero", "mean"), batch_size=32)
    _check_against_reference(zoo_path("gpt-teacher"), "sequence", ablations=("mean",), batch_size=32)


# ----------------------------------------------------------------------------- semantics
def test_summary_fields(loud_gpt_dir):
    adapter = load_model(str(loud_gpt_dir))
    res = scan(adapter, _task(adapter).view("teacher"), "zero")
    s = res.summary()
    base = res.ld_clean
    for cid, v in s.items():
        assert v["delta"] == pytest.approx(v["logit_diff"] - base)
        assert v["influence"] == pytest.approx(abs(v["delta"]))
        if base > 0:
            assert v["retained_pct"] == pytest.approx(100 * v["logit_diff"] / base)
        else:
            assert v["retained_pct"] is None
    assert len(s) == adapter.n_layers * adapter.n_heads + adapter.n_layers


def test_retained_is_none_when_the_clean_ld_is_not_positive():
    res = InfluenceScan(["L0H0", "L0MLP"], torch.tensor([-1.0, 0.5]).double(),
                        torch.tensor([[-0.5, 0.5], [0.0, 0.0]]).double(), "zero", "naive")
    s = res.summary()
    assert s["L0H0"]["retained_pct"] is None and s["L0H0"]["influence"] == pytest.approx(0.25)
    res.clean_ld = torch.tensor([1.0, 1.0]).double()
    assert res.summary()["L0MLP"]["retained_pct"] == pytest.approx(0.0)


def test_progress_and_cancel_between_components(loud_gpt_dir):
    adapter = load_model(str(loud_gpt_dir))
    view = _task(adapter, n=4).view("teacher")
    calls = []
    scan(adapter, view, "zero", progress=lambda *a: calls.append(a), stage="influence:teacher")
    n_comp = adapter.n_layers * adapter.n_heads + adapter.n_layers
    assert calls[-1] == ("influence:teacher", n_comp, n_comp) and len(calls) == n_comp

    seen = []
    with pytest.raises(Cancelled, match="after 3 of"):
        naive_scan(adapter, view, "zero", components=adapter.components(), progress=lambda *a: seen.append(a),
                   cancelled=lambda: len(seen) >= 3)
    assert len(seen) == 3


def test_unknown_method_is_refused(loud_gpt_dir):
    adapter = load_model(str(loud_gpt_dir))
    with pytest.raises(ValueError, match="unknown scan method"):
        scan(adapter, _task(adapter, n=4).view("teacher"), "zero", method="telepathy")
