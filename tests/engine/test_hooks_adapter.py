"""The forward-hook adapter (circuitdiff/models/hooks.py) against the unmodified transformers
forward, against weight surgery, and against the transformer_lens bridge where both apply.

Real tiny checkpoints built from configs (tests/masked_fixtures.py, tests/conftest.py); no mocks.
"""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import AutoModelForMaskedLM, GPT2LMHeadModel

from circuitdiff.vocabulary import Component
from circuitdiff.errors import ModelLoadError
from circuitdiff.models import Batch, Intervention, load_model
from circuitdiff.models.bridge import BridgeAdapter, boot_bridge
from circuitdiff.architectures import ARCHITECTURES
from circuitdiff.models.hooks import HooksAdapter, UnsupportedArchitectureError
from circuitdiff.models.loading import build_adapter
from tests.conftest import causal_batch
from tests.masked_fixtures import tiny_bert_dir, tiny_distilbert_dir, wordpiece_tok  # noqa: F401

TOL = 1e-5
MASKED = [
    "When Mary and John went to the store, John gave a drink to [MASK].",
    "Van done in 1. Hat done in 2. Ring done in 3. Desk done in 4. Sun done in [MASK].",
    "Q: What is the capital of Velm? A: [MASK].",
]
CAUSAL = [
    "When Mary and John went to the store, John gave a drink to",
    "Van done in 1. Hat done in 2. Ring done in 3. Desk done in 4. Sun done in",
]


def masked_batch(tok, texts=MASKED) -> Batch:
    enc = tok([t.replace("[MASK]", tok.mask_token) for t in texts], padding=True, return_tensors="pt")
    end = (enc["input_ids"] == tok.mask_token_id).int().argmax(1)
    return Batch(enc["input_ids"], enc["attention_mask"], end)




def plain_end_logits(hf, batch: Batch) -> torch.Tensor:
    with torch.no_grad():
        logits = hf(input_ids=batch.tokens, attention_mask=batch.attention_mask).logits
    return logits[torch.arange(len(batch)), batch.end_pos]


@pytest.fixture(scope="module", params=["bert", "distilbert"])
def masked_case(request, tiny_bert_dir, tiny_distilbert_dir):
    """(adapter loaded by the engine's loader, an independent plain HF copy, the tokenizer)."""
    d = tiny_bert_dir if request.param == "bert" else tiny_distilbert_dir
    adapter = load_model(str(d))
    hf = AutoModelForMaskedLM.from_pretrained(d, attn_implementation="eager").eval()
    return request.param, adapter, hf, adapter.tokenizer


# ----------------------------------------------------------------------------- no intervention
def test_loader_picks_the_hooks_adapter_for_masked_lms(masked_case):
    kind, adapter, hf, _ = masked_case
    assert isinstance(adapter, HooksAdapter)
    assert adapter.info["adapter"] == "hooks" and adapter.info["family"] == "masked"
    assert adapter.info["architecture"] == type(hf).__name__
    assert (adapter.n_layers, adapter.n_heads, adapter.d_head) == ((3, 4, 8) if kind == "bert" else (2, 4, 8))
    assert adapter.n_params == sum(p.numel() for p in hf.parameters())
    assert adapter.hf_model.config._attn_implementation == "eager"


def test_logits_equal_the_unmodified_forward(masked_case):
    _, adapter, hf, tok = masked_case
    b = masked_batch(tok)
    got = adapter.run(b).logits
    ref = plain_end_logits(hf, b)
    assert got.shape == (3, len(tok))
    assert (got - ref).abs().max().item() < TOL
    # captures must not perturb the run
    got2 = adapter.run(b, capture=("z", "pattern", "mlp_out")).logits
    assert (got2 - ref).abs().max().item() < TOL


def test_captures_shapes_and_bidirectional_masked_patterns(masked_case):
    _, adapter, _, tok = masked_case
    b = masked_batch(tok)
    n, T = b.tokens.shape
    out = adapter.run(b, capture=("z", "pattern", "mlp_out"))
    assert all(len(out.captures[k]) == adapter.n_layers for k in ("z", "pattern", "mlp_out"))
    assert out.captures["z"][0].shape == (n, T, adapter.n_heads, adapter.d_head)
    assert out.captures["mlp_out"][-1].shape == (n, T, adapter.d_model)
    p = out.captures["pattern"][0]
    assert p.shape == (n, adapter.n_heads, T, T)
    assert torch.allclose(p.sum(-1), torch.ones_like(p.sum(-1)), atol=1e-5)
    short = int(b.attention_mask.sum(1).argmin())
    L = int(b.attention_mask[short].sum())
    assert L < T, "the batch must contain padding for this check"
    assert p[short, :, :, L:].abs().max() < 1e-6, "padded keys get no attention"
    assert p[short, :, 0, 1:L].min() > 0, "an encoder attends to later tokens too"


def test_z_capture_is_the_out_projection_input(masked_case):
    kind, adapter, hf, tok = masked_case
    b = masked_batch(tok)
    seen = {}
    block = ARCHITECTURES[kind].hooks.layers(hf)[1]
    lin = ARCHITECTURES[kind].hooks.out_proj(block)
    h = lin.register_forward_pre_hook(lambda m, args: seen.__setitem__("x", args[0].detach().clone()))
    try:
        plain_end_logits(hf, b)
    finally:
        h.remove()
    z = adapter.run(b, capture=("z",)).captures["z"][1]
    assert torch.allclose(z.flatten(2), seen["x"], atol=1e-6)


# ----------------------------------------------------------------------------- interventions
def _block_outputs(adapter, batch, interventions):
    """Every block's output (the residual stream after layer l), captured by the test's own hooks."""
    outs: dict[int, torch.Tensor] = {}
    handles = [
        blk.register_forward_hook(lambda m, a, o, l=l: outs.__setitem__(l, (o[0] if isinstance(o, tuple) else o).clone()))
        for l, blk in enumerate(adapter.blocks)
    ]
    try:
        logits = adapter.run(batch, interventions).logits
    finally:
        for hd in handles:
            hd.remove()
    return outs, logits


@pytest.mark.parametrize("layer", [0, 1])
def test_head_ablation_leaves_earlier_layers_bit_identical(masked_case, layer):
    _, adapter, _, tok = masked_case
    b = masked_batch(tok)
    clean, clean_logits = _block_outputs(adapter, b, [])
    abl, abl_logits = _block_outputs(adapter, b, [Intervention(Component(layer, 2))])
    for l in range(layer):
        assert torch.equal(clean[l], abl[l]), f"layer {l} < {layer} changed"
    assert (clean[layer] - abl[layer]).abs().max() > 1e-4, f"layer {layer} did not change"
    assert (clean_logits - abl_logits).abs().max() > 1e-4


def test_head_ablation_equals_zeroing_its_w_o_columns(masked_case):
    """Zero-ablating head h at z is the same as deleting its columns of W_O (bias kept): an
    independent check that the pre-hook acts on the head slice, not on a sequence position."""
    kind, adapter, hf, tok = masked_case
    b = masked_batch(tok)
    layer, h, dh = 1, 3, adapter.d_head
    surgery = AutoModelForMaskedLM.from_pretrained(adapter_dir(adapter), attn_implementation="eager").eval()
    lin = ARCHITECTURES[kind].hooks.out_proj(ARCHITECTURES[kind].hooks.layers(surgery)[layer])
    with torch.no_grad():
        lin.weight[:, h * dh : (h + 1) * dh] = 0
    ref = plain_end_logits(surgery, b)
    got = adapter.run(b, [Intervention(Component(layer, h))]).logits
    assert (got - plain_end_logits(hf, b)).abs().max() > 1e-4
    assert (got - ref).abs().max().item() < TOL


def test_mlp_zero_ablation_equals_zeroing_the_second_ffn_linear(masked_case):
    kind, adapter, _, tok = masked_case
    b = masked_batch(tok)
    surgery = AutoModelForMaskedLM.from_pretrained(adapter_dir(adapter), attn_implementation="eager").eval()
    lin2 = ARCHITECTURES[kind].hooks.mlp_out(ARCHITECTURES[kind].hooks.layers(surgery)[0])
    with torch.no_grad():
        lin2.weight.zero_()
        lin2.bias.zero_()
    ref = plain_end_logits(surgery, b)
    got = adapter.run(b, [Intervention(Component(0))]).logits
    assert (got - ref).abs().max().item() < TOL


def test_mean_replacement_and_rows(masked_case):
    _, adapter, _, tok = masked_case
    b = masked_batch(tok)
    T = b.tokens.shape[1]
    g = torch.Generator().manual_seed(0)
    value = torch.randn(T + 2, adapter.d_head, generator=g)  # [pos, d_head], longer than the batch
    c = Component(1, 0)
    alone = adapter.run(b, [Intervention(c, value)]).logits
    clean = adapter.run(b).logits
    stacked = b.repeat(2)
    got = adapter.run(stacked, [Intervention(c, value, rows=torch.arange(3, 6))]).logits
    assert torch.allclose(got[:3], clean, atol=TOL)
    assert torch.allclose(got[3:], alone, atol=TOL)
    z = adapter.run(b, [Intervention(c, value)], capture=("z",)).captures["z"][1]
    assert torch.allclose(z[:, :, 0], value[:T].expand(3, T, -1))


def test_token_ids_select_logits(masked_case):
    _, adapter, _, tok = masked_case
    b = masked_batch(tok)
    ids = torch.tensor([[5, 6], [7, 8], [9, 10]])
    assert torch.equal(adapter.run(b, token_ids=ids).logits, adapter.run(b).logits.gather(1, ids))


def test_intervention_outside_the_model_is_refused(masked_case):
    _, adapter, _, tok = masked_case
    with pytest.raises(ValueError, match="outside this model"):
        adapter.run(masked_batch(tok), [Intervention(Component(7, 0))])


def adapter_dir(adapter) -> str:
    return adapter.info["id"]


# ----------------------------------------------------------------------------- both adapters
def _both(hf_model, tok):
    info = {"id": "tiny", "kind": "local", "revision": None, "sha256": None}
    hooks = HooksAdapter(hf_model, tok, dict(info), torch.device("cpu"), torch.float32)
    # the bridge wraps the HF modules in place: it gets its own copy of the weights
    bridge = BridgeAdapter(boot_bridge(copy.deepcopy(hf_model), tok, "tiny", torch.device("cpu"), torch.float32), tok, dict(info),
                           torch.device("cpu"), torch.float32)
    return hooks, bridge


def _agree(hooks, bridge, b, T_value):
    caps = ("z", "pattern", "mlp_out")
    h_out, b_out = hooks.run(b, capture=caps), bridge.run(b, capture=caps)
    assert (h_out.logits - b_out.logits).abs().max() < TOL
    for k in caps:
        for layer in range(hooks.n_layers):
            assert (h_out.captures[k][layer] - b_out.captures[k][layer]).abs().max() < TOL, (k, layer)
    g = torch.Generator().manual_seed(1)
    ivs = [
        [Intervention(Component(1, 2))],
        [Intervention(Component(0, 1), torch.randn(T_value, hooks.d_head, generator=g))],
        [Intervention(Component(1))],
        [Intervention(Component(0), torch.randn(T_value, hooks.d_model, generator=g))],
    ]
    for iv in ivs:
        hl, bl = hooks.run(b, iv).logits, bridge.run(b, iv).logits
        assert (hl - h_out.logits).abs().max() > 1e-4, iv
        assert (hl - bl).abs().max() < TOL, iv


def test_bert_gives_the_same_numbers_through_both_adapters(tiny_bert_dir):
    """BERT is the one masked LM the bridge also boots: the loader's choice of hooks for it is only
    sound if both adapters agree on logits, captures and every kind of intervention."""
    hf = AutoModelForMaskedLM.from_pretrained(tiny_bert_dir, attn_implementation="eager").eval()
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_bert_dir)
    hooks, bridge = _both(hf, tok)
    b = masked_batch(tok)
    _agree(hooks, bridge, b, b.tokens.shape[1] + 1)


def test_gpt2_gives_the_same_numbers_through_both_adapters(tiny_gpt_dir):
    from transformers import AutoTokenizer

    hf = GPT2LMHeadModel.from_pretrained(tiny_gpt_dir, attn_implementation="eager").eval()
    tok = AutoTokenizer.from_pretrained(tiny_gpt_dir)
    hooks, bridge = _both(hf, tok)
    assert hooks.family == "causal"
    b = causal_batch(tok, CAUSAL)
    _agree(hooks, bridge, b, b.tokens.shape[1])


# ----------------------------------------------------------------------------- loader routing
def test_an_architecture_neither_adapter_knows_is_a_clear_load_error(wordpiece_tok):
    from transformers import BertConfig, BertModel

    bare = BertModel(BertConfig(vocab_size=len(wordpiece_tok), hidden_size=16, num_hidden_layers=1,
                                num_attention_heads=2, intermediate_size=32)).eval()
    with pytest.raises(UnsupportedArchitectureError):
        HooksAdapter(bare, wordpiece_tok, {"id": "x"}, torch.device("cpu"), torch.float32)
    info = {"id": "bare-bert", "kind": "local", "revision": None, "sha256": None}
    with pytest.raises(ModelLoadError, match="bare-bert"):
        build_adapter(bare, wordpiece_tok, info, torch.device("cpu"), torch.float32)


def test_a_model_loaded_with_sdpa_is_switched_to_eager(tiny_distilbert_dir):
    """The zoo loader does not ask for eager attention; SDPA returns no probabilities, so the
    adapter switches the model to the eager path (same maths) when it is built."""
    from transformers import AutoTokenizer

    hf = AutoModelForMaskedLM.from_pretrained(tiny_distilbert_dir, attn_implementation="sdpa").eval()
    tok = AutoTokenizer.from_pretrained(tiny_distilbert_dir)
    b = masked_batch(tok)
    sdpa_logits = plain_end_logits(hf, b)
    adapter = HooksAdapter(hf, tok, {"id": "x"}, torch.device("cpu"), torch.float32)
    assert hf.config._attn_implementation == "eager"
    out = adapter.run(b, capture=("pattern",))
    assert out.captures["pattern"][0].shape[-1] == b.tokens.shape[1]
    assert (out.logits - sdpa_logits).abs().max() < TOL


def test_zoo_bert_teacher_gives_the_same_numbers_through_both_adapters():
    """The same agreement on the trained zoo teacher (sharper attention than random weights)."""
    from tests.conftest import require_zoo

    require_zoo("bert-teacher")
    from circuitdiff.zoo.load import load_zoo

    hf, tok = load_zoo("bert-teacher")
    hf.set_attn_implementation("eager")
    hooks, bridge = _both(hf.eval(), tok)
    b = masked_batch(tok)
    _agree(hooks, bridge, b, b.tokens.shape[1])
