"""The exact fast scan equals one full forward per ablated component (docs/method.md §Method 1).

Two references: a plain HF forward with hooks written here (independent of the engine), and the
engine's naive scan through the model adapter (tests at the bottom, on the zoo models).
"""

from __future__ import annotations

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from circuitdiff.vocabulary import component_ids, parse_component
from circuitdiff.models.functional import functional_view
from circuitdiff.scan.ablation import replacement
from circuitdiff.scan.exact import exact_scan

TOL = 1e-5


def tiny_gpt2(n_layer=3, n_head=4, d=64, vocab=97, seed=0) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    cfg = GPT2Config(n_layer=n_layer, n_head=n_head, n_embd=d, vocab_size=vocab, n_positions=64, bos_token_id=0, eos_token_id=0)
    model = GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():  # larger weights than the init so ablations move the logits visibly
        for p in model.parameters():
            p.mul_(4.0)
    return model


def right_padded(n: int, lengths: list[int], vocab: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    t = max(lengths)
    tokens = torch.randint(0, vocab, (n, t), generator=g)
    mask = torch.zeros(n, t, dtype=torch.long)
    for i in range(n):
        mask[i, : lengths[i % len(lengths)]] = 1
    tokens = tokens * mask  # pad id 0 after the end: must not matter
    end = mask.sum(1) - 1
    return tokens, mask, end


# ----------------------------------------------------------------------------- HF-hook reference
def _capture(model, tokens, mask):
    """Per layer: z as c_proj input [batch, pos, d_model] and mlp output [batch, pos, d_model]."""
    zs, ms, hooks = {}, {}, []
    for l, blk in enumerate(model.transformer.h):
        hooks.append(blk.attn.c_proj.register_forward_pre_hook(lambda m, a, l=l: zs.__setitem__(l, a[0].clone())))
        hooks.append(blk.mlp.register_forward_hook(lambda m, a, o, l=l: ms.__setitem__(l, o.clone())))
    with torch.no_grad():
        model(input_ids=tokens, attention_mask=mask)
    for h in hooks:
        h.remove()
    return zs, ms


def hf_naive_scan(model, tokens, mask, end, ans, dis, ablation, c_tokens=None, c_mask=None):
    """One full HF forward per component, ablation applied with hooks at c_proj input / mlp output."""
    n_layers, n_heads = model.config.n_layer, model.config.n_head
    d_head = model.config.n_embd // n_heads
    rows = torch.arange(tokens.shape[0])
    clean_z, clean_m = _capture(model, tokens, mask)
    corr_z, corr_m = _capture(model, c_tokens, c_mask) if ablation != "zero" else ({}, {})
    t = tokens.shape[1]

    def ld(hook_module, hook):
        h = hook_module.register_forward_pre_hook(hook) if hook_module is not None else None
        with torch.no_grad():
            logits = model(input_ids=tokens, attention_mask=mask).logits[rows, end]
        if h is not None:
            h.remove()
        return logits[rows, ans] - logits[rows, dis]

    out = []
    for cid in component_ids(n_layers, n_heads):
        c = parse_component(cid)
        blk = model.transformer.h[c.layer]
        if c.head is not None:
            sl = slice(c.head * d_head, (c.head + 1) * d_head)
            rep = replacement(clean_z[c.layer], corr_z[c.layer] if corr_z else None, ablation, c_mask)

            def hook(m, args, sl=sl, rep=rep):
                z = args[0].clone()
                z[:, :, sl] = rep[:, :, sl]
                return (z,)

            out.append(ld(blk.attn.c_proj, hook))
        else:
            rep = replacement(clean_m[c.layer], corr_m[c.layer] if corr_m else None, ablation, c_mask)
            h = blk.mlp.register_forward_hook(lambda m, a, o, rep=rep: rep)
            out.append(ld(None, None))
            h.remove()
    return torch.stack(out)  # [component, prompt]


@pytest.mark.parametrize("ablation", ["zero", "mean", "resample"])
@pytest.mark.parametrize("shape", [(3, 4), (2, 2)])
def test_exact_scan_equals_hf_forward_per_component(ablation, shape):
    n_layer, n_head = shape
    model = tiny_gpt2(n_layer=n_layer, n_head=n_head)
    # right padding with different lengths: answers read at each prompt's own last token
    tokens, mask, end = right_padded(6, [9, 7, 5], 97, seed=1)
    c_tokens, c_mask, _ = right_padded(6, [9, 7, 5], 97, seed=2)
    ans, dis = torch.tensor([3, 5, 7, 11, 13, 17]), torch.tensor([4, 6, 8, 12, 14, 18])

    ref = hf_naive_scan(model, tokens, mask, end, ans, dis, ablation, c_tokens, c_mask)
    got = exact_scan(functional_view(model), tokens, mask, end, ans, dis, ablation, c_tokens, c_mask, max_rows=5)
    assert got.components == component_ids(n_layer, n_head)
    scale = ref.abs().max()
    assert scale > 0.1, "ablations must move the logit difference for the comparison to mean anything"
    err = (got.ablated_ld - ref).abs().max().item()
    print(f"{ablation} {shape}: max |exact - naive| = {err:.2e} (LD scale {scale:.2f})")
    assert err <= TOL * max(1.0, scale.item())
    # the clean LD is the HF forward's
    with torch.no_grad():
        logits = model(input_ids=tokens, attention_mask=mask).logits[torch.arange(6), end]
    clean = logits[torch.arange(6), ans] - logits[torch.arange(6), dis]
    assert torch.allclose(got.clean_ld, clean, atol=TOL)


def test_subset_and_microbatch_size_do_not_change_results():
    model = tiny_gpt2()
    tokens, mask, end = right_padded(4, [8, 6], 97, seed=3)
    ans, dis = torch.tensor([1, 2, 3, 4]), torch.tensor([5, 6, 7, 8])
    full = exact_scan(functional_view(model), tokens, mask, end, ans, dis, "zero", max_rows=1000)
    subset = ["L2MLP", "L0H1", "L2H3"]
    part = exact_scan(functional_view(model), tokens, mask, end, ans, dis, "zero", components=subset, max_rows=1)
    for i, cid in enumerate(subset):
        j = full.components.index(cid)
        assert torch.allclose(part.ablated_ld[i], full.ablated_ld[j], atol=TOL)


def test_padding_tokens_after_the_end_do_not_matter():
    model = tiny_gpt2()
    tokens, mask, end = right_padded(4, [8, 6], 97, seed=4)
    ans, dis = torch.tensor([1, 2, 3, 4]), torch.tensor([5, 6, 7, 8])
    a = exact_scan(functional_view(model), tokens, mask, end, ans, dis, "zero")
    other = tokens.clone()
    other[mask == 0] = 42
    b = exact_scan(functional_view(model), other, mask, end, ans, dis, "zero")
    assert torch.allclose(a.ablated_ld, b.ablated_ld, atol=TOL)


# ----------------------------------------------------------------------------- vs the engine's naive scan
def _engine_view(adapter, task: str, n: int):
    from circuitdiff.tasks.dataset import build_task_data
    from circuitdiff.catalogue import task_items

    tok = adapter.tokenizer  # one model: both roles share its tokenizer
    data = build_task_data(task_items(task, {}, n, seed=0), {"teacher": tok, "student": tok}, name=task)
    return data.view("teacher")


def _compare_with_naive(model_id: str, task: str, n: int) -> None:
    from circuitdiff.scan import scan
    from circuitdiff.models.loading import load_model

    adapter = load_model(model_id)
    view = _engine_view(adapter, task, n)
    for ablation in ("zero", "mean", "resample"):
        naive = scan(adapter, view, ablation, method="naive", batch_size=n)
        exact = scan(adapter, view, ablation, method="exact")
        assert exact.method == "exact" and exact.components == naive.components
        assert len(exact.components) == adapter.n_layers * (adapter.n_heads + 1)  # heads and MLPs
        scale = max(1.0, naive.clean_ld.abs().max().item())
        err = (exact.ablated_ld - naive.ablated_ld).abs().max().item()
        moved = (naive.ablated_ld - naive.clean_ld).abs().max().item()
        print(f"{model_id} {task} {ablation}: max |exact - naive| = {err:.2e}, largest effect {moved:.3f}")
        assert moved > 1e-3, "no ablation changed the logit difference: the comparison would be vacuous"
        # Influences (what results report) to 1e-5 absolute. Single per-prompt LDs carry float32
        # rounding of their magnitude (~1e-5 at |LD| ~ 20 on the zoo teacher, already in the clean
        # pass, where nothing is ablated), so they are compared relative to that magnitude.
        ie, inv = exact.influences(), naive.influences()
        infl_err = max(abs(ie[c] - inv[c]) for c in inv)
        print(f"    max |influence_exact - influence_naive| = {infl_err:.2e}")
        assert infl_err <= TOL
        assert err <= TOL * scale
        assert torch.allclose(exact.clean_ld, naive.clean_ld, atol=TOL * scale)


def test_exact_equals_engine_naive_scan_on_a_tiny_checkpoint(tiny_gpt_dir):
    _compare_with_naive(str(tiny_gpt_dir), "ioi", 12)


def test_exact_equals_engine_naive_scan_on_the_zoo_pair(zoo_gpt_pair):
    for model_id in zoo_gpt_pair:
        _compare_with_naive(model_id, "ioi", 8)


def test_microbatches_halve_on_out_of_memory_and_other_errors_propagate():
    from circuitdiff.scan.microbatch import run_microbatched

    data = torch.arange(20.0)
    sizes = []

    def fn(sl):  # "fits" only 3 rows at a time, like an allocator that runs out above that
        sizes.append(sl.stop - sl.start)
        if sl.stop - sl.start > 3:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return data[sl] * 2

    out, rows = run_microbatched(20, 16, fn)
    assert torch.equal(out, data * 2) and rows == 2
    assert sizes[:4] == [16, 8, 4, 2]  # halved until it fits, then kept

    def broken(sl):
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        run_microbatched(4, 4, broken)


def test_prompts_run_in_length_groups_that_save_real_work():
    from circuitdiff.scan.exact import GROUP_MIN_SAVING, MAX_GROUPS, length_groups

    end = torch.tensor([12, 13, 16, 13, 20, 12, 14, 20, 13, 15])  # IOI-like: mostly 13-17 tokens, two long
    groups = length_groups(end)
    assert sorted(int(i) for g in groups for i in g) == list(range(len(end)))  # every prompt once
    for g in groups:  # a group is a contiguous range of lengths
        others = [int(e) for h in groups if h is not g for e in end[h]]
        lo, hi = int(end[g].min()), int(end[g].max())
        assert not any(lo < e < hi for e in others)
    assert len(groups) <= MAX_GROUPS
    positions = sum(len(g) * (int(end[g].max()) + 1) for g in groups)
    padded = len(end) * (int(end.max()) + 1)
    assert positions < (1 - GROUP_MIN_SAVING) * padded  # the two long prompts no longer pad the rest
    assert len(length_groups(torch.tensor([7, 7, 7]))) == 1
    assert len(length_groups(torch.tensor([30, 31] * 10))) == 1  # one token in 31: under GROUP_MIN_SAVING
