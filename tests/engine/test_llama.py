"""The engine on Llama-family models (issue #14 §2): GQA, RoPE, RMSNorm, SwiGLU.

Models are scaled-down random Llamas with the real pair's ratios (tests/conftest.py LLAMA_RATIOS:
4 query heads per key/value head, the student half the teacher's depth). Three references:

- an independent plain-transformers computation written here: one HF forward per component, a
  forward *pre*-hook on ``o_proj`` replacing one query head's slice of its input (an MLP: a forward
  hook replacing the MLP's output), replacement values computed here from captured activations;
- the engine's naive scan through each adapter (transformer_lens bridge and plain hooks);
- the exact scan through the adapter's functional view (``LlamaStack``).
"""

from __future__ import annotations

import pytest
import torch

from circuitdiff.models.adapter import Batch, Intervention
from circuitdiff.models.functional import LlamaStack, functional_view
from circuitdiff.scan.exact import exact_scan
from circuitdiff.vocabulary import Component, component_ids, parse_component

from tests.conftest import LLAMA_RATIOS, build_tiny_llama, causal_batch

TOL = 1e-5


@pytest.fixture(scope="module")
def word_tok(tiny_llama_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_llama_dir)  # the task-word tokenizer, trained once per session


@pytest.fixture(scope="module")
def llama(word_tok):
    return build_tiny_llama(word_tok, n_layer=3, n_head=8, d=64, loud=3.0)


def right_padded(n, lengths, vocab, seed):
    g = torch.Generator().manual_seed(seed)
    t = max(lengths)
    tokens = torch.randint(1, vocab, (n, t), generator=g)
    mask = torch.zeros(n, t, dtype=torch.long)
    for i in range(n):
        mask[i, : lengths[i % len(lengths)]] = 1
    return tokens * mask, mask, mask.sum(1) - 1


# ----------------------------------------------------------------------------- plain-transformers reference
def _capture(model, tokens, mask):
    """Per layer: the o_proj input [batch, pos, head * d_head] and the MLP output [batch, pos, d_model]."""
    zs, ms, hooks = {}, {}, []
    for l, blk in enumerate(model.model.layers):
        hooks.append(blk.self_attn.o_proj.register_forward_pre_hook(lambda m, a, l=l: zs.__setitem__(l, a[0].clone())))
        hooks.append(blk.mlp.register_forward_hook(lambda m, a, o, l=l: ms.__setitem__(l, o.clone())))
    with torch.no_grad():
        model(input_ids=tokens, attention_mask=mask)
    for h in hooks:
        h.remove()
    return zs, ms


def _value(clean, corrupt, c_mask, ablation):
    """The replacement, written independently of circuitdiff.scan: [batch, pos, d]."""
    if ablation == "zero":
        return torch.zeros_like(clean)
    if ablation == "resample":
        return corrupt[:, : clean.shape[1]]
    w = c_mask[..., None].double()
    if ablation == "mean":  # per position, over prompts with a real token there
        mean = (corrupt.double() * w).sum(0) / w.sum(0).clamp(min=1)
        return mean[None, : clean.shape[1]].to(clean.dtype).expand_as(clean)
    # token_mean: one vector over every real token of the corrupted set
    mean = (corrupt.double() * w).sum((0, 1)) / w.sum()
    return mean.to(clean.dtype).expand_as(clean)


def plain_reference(model, tokens, mask, end, ans, dis, ablation, c_tokens=None, c_mask=None):
    cfg = model.config
    d_head = cfg.hidden_size // cfg.num_attention_heads
    rows = torch.arange(tokens.shape[0])
    clean_z, clean_m = _capture(model, tokens, mask)
    corr_z, corr_m = _capture(model, c_tokens, c_mask) if ablation != "zero" else ({}, {})

    def ld():
        with torch.no_grad():
            logits = model(input_ids=tokens, attention_mask=mask).logits[rows, end]
        return logits[rows, ans] - logits[rows, dis]

    out = []
    for cid in component_ids(cfg.num_hidden_layers, cfg.num_attention_heads):
        c = parse_component(cid)
        blk = model.model.layers[c.layer]
        if c.head is not None:
            sl = slice(c.head * d_head, (c.head + 1) * d_head)
            rep = _value(clean_z[c.layer][..., sl], corr_z[c.layer][..., sl] if corr_z else None, c_mask, ablation)

            def hook(m, args, sl=sl, rep=rep):
                z = args[0].clone()
                z[:, :, sl] = rep  # query head h's slice of the o_proj input, nothing else
                return (z,)

            h = blk.self_attn.o_proj.register_forward_pre_hook(hook)
        else:
            rep = _value(clean_m[c.layer], corr_m[c.layer] if corr_m else None, c_mask, ablation)
            h = blk.mlp.register_forward_hook(lambda m, a, o, rep=rep: rep)
        out.append(ld())
        h.remove()
    return torch.stack(out)  # [component, prompt]


@pytest.mark.parametrize("ablation", ["zero", "mean", "resample", "token_mean"])
def test_exact_scan_equals_plain_transformers_reference(llama, ablation):
    n_layer, n_head = llama.config.num_hidden_layers, llama.config.num_attention_heads
    assert n_head // llama.config.num_key_value_heads == LLAMA_RATIOS["heads_per_kv"]
    vocab = llama.config.vocab_size
    tokens, mask, end = right_padded(6, [9, 7, 5], vocab, seed=1)
    c_tokens, c_mask, _ = right_padded(6, [9, 7, 5], vocab, seed=2)
    ans, dis = torch.tensor([3, 5, 7, 11, 13, 17]), torch.tensor([4, 6, 8, 12, 14, 18])
    ref = plain_reference(llama, tokens, mask, end, ans, dis, ablation, c_tokens, c_mask)
    view = functional_view(llama)
    assert isinstance(view, LlamaStack)
    got = exact_scan(view, tokens, mask, end, ans, dis, ablation, c_tokens, c_mask, max_rows=7)
    assert got.components == component_ids(n_layer, n_head)
    scale = ref.abs().max().item()
    moved = (ref - got.clean_ld).abs().max().item()
    err = (got.ablated_ld - ref).abs().max().item()
    print(f"llama {ablation}: max |exact - plain reference| = {err:.2e} (LD scale {scale:.2f}, largest effect {moved:.2f})")
    assert moved > 0.1, "ablations must move the logit difference for the comparison to mean anything"
    assert err <= TOL * max(1.0, scale)


@pytest.mark.parametrize("ablation", ["mean", "token_mean"])
def test_exact_scan_equals_plain_reference_on_the_zoo_llama_teacher(ablation):
    """The same independent reference on the bundled, trained teacher and real IOI prompts."""
    from circuitdiff.catalogue import task_items
    from circuitdiff.zoo.load import load_zoo

    model, tok = load_zoo("zoo:llama-teacher")
    model.eval()
    items = task_items("ioi", {}, 6, seed=3)

    def enc(texts):
        b = tok(texts, return_tensors="pt", padding=True)
        mask = b["attention_mask"]
        return b["input_ids"] * mask, mask, mask.sum(1) - 1

    tokens, mask, end = enc([it.prompt for it in items])
    c_tokens, c_mask, _ = enc([it.corrupted_prompt for it in items])
    first = lambda words: torch.tensor([tok(" " + w, add_special_tokens=False)["input_ids"][0] for w in words])
    ans, dis = first([it.answer for it in items]), first([it.distractor for it in items])
    ref = plain_reference(model, tokens, mask, end, ans, dis, ablation, c_tokens, c_mask)
    got = exact_scan(functional_view(model), tokens, mask, end, ans, dis, ablation, c_tokens, c_mask, max_rows=7)
    scale = got.clean_ld.abs().max().item()
    err = (got.ablated_ld - ref).abs().max().item()
    print(f"zoo llama-teacher {ablation}: max |exact - plain reference| = {err:.2e} (LD scale {scale:.2f})")
    assert got.clean_ld.mean() > 1, "the zoo teacher solves IOI"
    assert (ref - got.clean_ld).abs().max() > 0.5 and err <= TOL * max(1.0, scale)


def test_a_query_head_ablation_never_touches_the_heads_sharing_its_key_value_head(llama, word_tok):
    """GQA: heads 0-3 share key/value head 0. Zeroing query head 1 at the o_proj input leaves the
    o_proj input of heads 0, 2, 3 bit-identical in that layer; the authors' Llama script zeroed
    o_proj *output* columns [h*d_head, (h+1)*d_head) instead (docs/authors-code.md §3.1 D), a different thing."""
    from circuitdiff.models.hooks import HooksAdapter

    ad = HooksAdapter(llama, word_tok, {"id": "tiny-llama"}, torch.device("cpu"), torch.float32)
    assert (ad.n_heads, ad.d_head) == (8, 8)
    batch = causal_batch(word_tok, [" Mary and John went to the store", " John gave a drink to"])
    clean = ad.run(batch, capture=("z", "pattern"))
    abl = ad.run(batch, [Intervention(Component(1, 1))], capture=("z",))
    z0, z1 = clean.captures["z"][1], abl.captures["z"][1]  # [batch, pos, head, d_head]
    assert z1[:, :, 1].abs().max() == 0
    others = [h for h in range(8) if h != 1]
    assert torch.equal(z1[:, :, others], z0[:, :, others])
    assert not torch.allclose(abl.logits, clean.logits)
    # patterns are per query head, [batch, head, query, key]; heads of one kv group differ (own queries)
    p = clean.captures["pattern"][0]
    assert p.shape == (2, 8, batch.tokens.shape[1], batch.tokens.shape[1])
    assert not torch.allclose(p[:, 0], p[:, 1])
    # the authors' o_proj-output-column zeroing is not a head ablation: it changes other numbers
    o_proj = llama.model.layers[1].self_attn.o_proj
    h = o_proj.register_forward_hook(lambda m, a, o: torch.cat([o[..., :8], o[..., 8:16] * 0, o[..., 16:]], -1))
    try:
        bug = ad.run(batch)
    finally:
        h.remove()
    assert not torch.allclose(bug.logits, abl.logits, atol=1e-4)


# ----------------------------------------------------------------------------- through the engine
def _view(adapter, task, n):
    from circuitdiff.catalogue import task_items
    from circuitdiff.tasks.dataset import build_task_data

    tok = adapter.tokenizer
    return build_task_data(task_items(task, {}, n, seed=0), {"teacher": tok, "student": tok}, name=task).view("teacher")


@pytest.mark.parametrize("checkpoint", ["tiny", "zoo"])
def test_both_adapters_naive_and_exact_agree_on_a_llama_checkpoint(checkpoint, tiny_llama_dir):
    """The loader boots Llama in the transformer_lens bridge; plain hooks serve it too. Naive scans
    through both, and the exact scan through the functional view, give the same influences — on a
    random Llama (8 query / 2 kv heads) and on the bundled, trained zoo:llama-teacher (4 / 2)."""
    from circuitdiff.models.hooks import HooksAdapter
    from circuitdiff.models.loading import load_model
    from circuitdiff.scan import scan

    bridge = load_model(str(tiny_llama_dir) if checkpoint == "tiny" else "zoo:llama-teacher")
    assert bridge.adapter_name == "bridge" and bridge.info["adapter"] == "bridge"
    hf = bridge.hf_model
    hooks = HooksAdapter(hf, bridge.tokenizer, dict(bridge.info), torch.device("cpu"), torch.float32)
    expected = (8, 8) if checkpoint == "tiny" else (4, 32)
    assert (bridge.n_heads, bridge.d_head) == (hooks.n_heads, hooks.d_head) == expected
    view = _view(bridge, "ioi", 6)
    for ablation in ("zero", "token_mean"):
        nb = scan(bridge, view, ablation, method="naive", batch_size=6)
        nh = scan(hooks, view, ablation, method="naive", batch_size=6)
        ex = scan(hooks, view, ablation, method="exact")
        assert ex.method == "exact" and nb.components == nh.components == ex.components
        scale = max(1.0, nh.clean_ld.abs().max().item())
        moved = (nh.ablated_ld - nh.clean_ld).abs().max().item()
        e_adapters = (nb.ablated_ld - nh.ablated_ld).abs().max().item()
        e_exact = (ex.ablated_ld - nh.ablated_ld).abs().max().item()
        print(f"llama {checkpoint} ioi {ablation}: |bridge - hooks| {e_adapters:.2e}, |exact - naive| {e_exact:.2e}, "
              f"largest effect {moved:.3f}")
        assert moved > 1e-2
        assert e_adapters <= TOL * scale and e_exact <= TOL * scale
    # attention patterns per query head agree between the adapters
    b = view.clean.slice(0, 3)
    pb = bridge.run(b, capture=("pattern",)).captures["pattern"]
    ph = hooks.run(b, capture=("pattern",)).captures["pattern"]
    assert all(torch.allclose(x, y, atol=1e-6) for x, y in zip(pb, ph))


# ----------------------------------------------------------------------------- comparisons end to end
def test_llama_pair_compares_and_the_paper_preset_follows_the_llama_notebook(tiny_llama_dir, tiny_llama_student_dir):
    """A Llama teacher and its depth-pruned student through run_comparison: the default preset, and the
    paper preset, whose ablation becomes the authors' Llama one (token_mean), said in the result."""
    from circuitdiff.pipeline import run_comparison

    base = {"teacher": str(tiny_llama_dir), "student": str(tiny_llama_student_dir), "task": "sequence",
            "n_prompts": 6, "device": "cpu", "chance_draws": 1000, "bootstrap": 0}
    res = run_comparison(base, cache=False)
    assert res.models["teacher"].architecture == "LlamaForCausalLM" and res.models["teacher"].adapter == "bridge"
    assert (res.models["teacher"].n_layers, res.models["student"].n_layers) == (4, 2)
    assert res.models["teacher"].dtype == "float32" and res.models["teacher"].placement["devices"] == ["cpu"]
    assert res.scan.method == "exact" and res.scan.microbatch_rows["teacher"] >= 1
    assert res.spec["ablation"] == "mean" and "default preset" in res.scan.ablation_protocol
    assert len(res.influence["teacher"]) == 4 * 9 and len(res.influence["student"]) == 2 * 9
    assert 0 < res.alignment.score <= 1

    paper = run_comparison(dict(base, preset="paper"), cache=False)
    assert paper.spec["ablation"] == "token_mean"
    assert "llama_influence.ipynb" in paper.scan.ablation_protocol
    # the resolved spec re-runs the same comparison
    again = run_comparison(dict(paper.spec), cache=False)
    assert again.alignment.score == pytest.approx(paper.alignment.score, abs=1e-9)
    assert again.spec == paper.spec and again.scan.ablation_protocol == paper.scan.ablation_protocol
    # an ablation the spec names wins over the preset's
    zero = run_comparison(dict(base, preset="paper", ablation="zero"), cache=False)
    assert zero.spec["ablation"] == "zero" and "asked in the spec" in zero.scan.ablation_protocol
    # the engine tells its caller the spec it resolved before any scan (a worker records it)
    seen = []
    run_comparison(dict(base, preset="paper", n_prompts=2), cache=False, resolved=seen.append)
    assert [s.ablation for s in seen] == ["token_mean"]


def test_the_spec_resolves_once_with_the_pair_layout(tiny_llama_dir, tiny_gpt_dir):
    """The paper preset's ablation depends on the pair's layout: known before loading for zoo models and
    local checkpoints (their config.json), pending (None) for a hub model circuitdiff has not seen."""
    from circuitdiff.spec import ComparisonSpec, ablation_protocol

    llama = ComparisonSpec(teacher="zoo:llama-teacher", student=str(tiny_llama_dir), task="ioi", preset="paper")
    assert llama.resolve_known().ablation == "token_mean" and llama.resolve_known().resolved
    mixed = ComparisonSpec(teacher=str(tiny_gpt_dir), student=str(tiny_llama_dir), task="ioi", preset="paper")
    assert mixed.resolve_known().ablation == "zero"  # the IOI notebook's: not a Llama pair
    hub = ComparisonSpec(teacher="org/unseen-model", student="zoo:llama-student", task="ioi", preset="paper")
    assert hub.resolve_known().ablation is None and not hub.resolve_known().resolved
    assert hub.resolve({"teacher": "llama", "student": "llama"}).ablation == "token_mean"
    assert ComparisonSpec(teacher="org/unseen-model", student="zoo:gpt-student", task="ioi").resolve_known().ablation \
        == "mean"  # the default preset does not depend on the layout
    done = llama.resolve_known()
    assert done.resolve_known() == done  # resolving a resolved spec changes nothing
    types = {"teacher": "llama", "student": "llama"}
    assert "llama_influence.ipynb" in ablation_protocol(done, types)
    assert "asked in the spec" in ablation_protocol(done.model_copy(update={"ablation": "mean"}), types)


@pytest.mark.parametrize("direction", ["gpt_teacher", "llama_teacher"])
def test_cross_family_pairs_use_the_word_aligned_path(direction, tiny_gpt_dir, tiny_llama_other_vocab_dir):
    """A GPT-2 teacher with a Llama student and the reverse, tokenised differently: word-aligned."""
    from circuitdiff.pipeline import run_comparison

    gpt, llama = str(tiny_gpt_dir), str(tiny_llama_other_vocab_dir)
    teacher, student = (gpt, llama) if direction == "gpt_teacher" else (llama, gpt)
    res = run_comparison({"teacher": teacher, "student": student, "task": "ioi", "n_prompts": 6, "device": "cpu",
                          "chance_draws": 1000, "bootstrap": 0}, cache=False)
    assert res.task.token_alignment == "word_pooled"
    archs = {res.models[r].architecture for r in ("teacher", "student")}
    assert archs == {"GPT2LMHeadModel", "LlamaForCausalLM"}
    assert res.similarity.heads is not None and 0 < res.alignment.score <= 1
    assert any("do not share a tokenisation" in w for w in res.warnings)


def test_attribution_covers_llama_and_checks_itself_against_the_exact_scan(tiny_llama_dir, word_tok):
    """Attribution patching through LlamaStack's autograd: first order, so close to the exact scan on
    a model at its initial scale (corr > 0.99); through the adapter it runs its own exact check."""
    from circuitdiff.models.loading import load_model
    from circuitdiff.scan import scan
    from circuitdiff.scan.attribution import attribution_scan

    model = build_tiny_llama(word_tok, n_layer=3, loud=1.0)
    vocab = model.config.vocab_size
    tokens, mask, end = right_padded(6, [9, 7, 5], vocab, seed=1)
    c_tokens, c_mask, _ = right_padded(6, [9, 7, 5], vocab, seed=2)
    ans, dis = torch.arange(3, 9), torch.arange(10, 16)
    view = functional_view(model)
    for ablation in ("zero", "token_mean"):
        ex = exact_scan(view, tokens, mask, end, ans, dis, ablation, c_tokens, c_mask)
        at = attribution_scan(view, tokens, mask, end, ans, dis, ablation, c_tokens, c_mask)
        d_ex, d_at = (ex.ablated_ld - ex.clean_ld).mean(1), (at.ablated_ld - at.clean_ld).mean(1)
        corr = torch.corrcoef(torch.stack([d_ex, d_at]))[0, 1].item()
        print(f"llama attribution vs exact, {ablation}: corr {corr:.4f}")
        assert corr > 0.99

    adapter = load_model(str(tiny_llama_dir))
    est = scan(adapter, _view(adapter, "ioi", 6), "token_mean", method="attribution", check=6, seed=0)
    assert est.method == "attribution" and est.agreement["n_checked"] == 6
