"""Model loading and the bridge adapter, against a plain HF forward on the same checkpoint."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import GPT2LMHeadModel

from circuitdiff.vocabulary import Component
from circuitdiff.errors import ModelLoadError, UnknownModelError
from circuitdiff.fingerprint import weights_sha256
from circuitdiff.models import Intervention, load_model
from circuitdiff.spec import ModelRef
from tests.conftest import causal_batch

TOL = 1e-5


@pytest.fixture(scope="module")
def adapter(tiny_gpt_dir):
    return load_model(str(tiny_gpt_dir))


@pytest.fixture(scope="module")
def hf(tiny_gpt_dir):
    return GPT2LMHeadModel.from_pretrained(tiny_gpt_dir, attn_implementation="eager").eval()


def _batch(adapter, texts):
    return causal_batch(adapter.tokenizer, texts)


TEXTS = [
    "When Mary and John went to the store, John gave a drink to",
    "Van done in 1. Hat done in 2. Ring done in 3. Desk done in 4. Sun done in",
    "Then, Alice and Bob went to the park. Bob gave a book to",
]


def _hf_end_logits(hf, batch, pre_hooks=(), fwd_hooks=()):
    handles = [m.register_forward_pre_hook(f) for m, f in pre_hooks] + [m.register_forward_hook(f) for m, f in fwd_hooks]
    try:
        with torch.no_grad():
            logits = hf(input_ids=batch.tokens, attention_mask=batch.attention_mask).logits
    finally:
        for h in handles:
            h.remove()
    return logits[torch.arange(len(batch)), batch.end_pos]


def test_bridge_logits_equal_plain_hf_forward(adapter, hf):
    b = _batch(adapter, TEXTS)
    got = adapter.run(b).logits
    ref = _hf_end_logits(hf, b)
    assert got.shape == (3, adapter.vocab_size)
    assert (got - ref).abs().max().item() < TOL


def test_info_records_identity_and_shapes(adapter, tiny_gpt_dir, hf):
    info = adapter.info
    assert info["kind"] == "local" and info["adapter"] == "bridge" and info["family"] == "causal"
    assert info["sha256"] == weights_sha256(tiny_gpt_dir)
    assert (adapter.n_layers, adapter.n_heads, adapter.d_head, adapter.d_model) == (2, 4, 8, 32)
    assert adapter.n_params == sum(p.numel() for p in hf.parameters())
    assert info["architecture"] == "GPT2LMHeadModel"
    assert [c.id for c in adapter.components()][:2] == ["L0H0", "L0H1"]
    assert adapter.components()[-1].id == "L1MLP"


def test_captures_have_documented_shapes(adapter):
    b = _batch(adapter, TEXTS)
    out = adapter.run(b, capture=("z", "pattern", "mlp_out"))
    T = b.tokens.shape[1]
    assert len(out.captures["z"]) == 2
    assert out.captures["z"][1].shape == (3, T, 4, 8)
    assert out.captures["pattern"][0].shape == (3, 4, T, T)
    assert out.captures["mlp_out"][0].shape == (3, T, 32)
    # attention rows are probability distributions over earlier keys only
    p = out.captures["pattern"][0]
    assert torch.allclose(p.sum(-1), torch.ones_like(p.sum(-1)), atol=1e-5)
    assert p[0, 0, 0, 1:].abs().max() == 0


def test_head_ablation_at_z_equals_zeroing_the_c_proj_input_slice(adapter, hf):
    b = _batch(adapter, TEXTS)
    layer, h, dh = 1, 2, adapter.d_head

    def pre(module, args):
        x = args[0].clone()
        x[..., h * dh : (h + 1) * dh] = 0
        return (x,)

    ref = _hf_end_logits(hf, b, pre_hooks=[(hf.transformer.h[layer].attn.c_proj, pre)])
    got = adapter.run(b, [Intervention(Component(layer, h))]).logits
    clean = adapter.run(b).logits
    assert (got - clean).abs().max() > 1e-3, "the ablation must change something"
    assert (got - ref).abs().max().item() < TOL


def test_mlp_replacement_equals_hf_mlp_forward_hook(adapter, hf):
    b = _batch(adapter, TEXTS)
    T = b.tokens.shape[1]
    value = torch.randn(T + 3, adapter.d_model, generator=torch.Generator().manual_seed(0))  # longer: cut to fit

    def hook(module, args, out):
        return value[:T].expand_as(out).clone()

    ref = _hf_end_logits(hf, b, fwd_hooks=[(hf.transformer.h[0].mlp, hook)])
    got = adapter.run(b, [Intervention(Component(0), value)]).logits
    assert (got - ref).abs().max().item() < TOL


def test_rows_restrict_an_intervention_to_part_of_a_repeated_batch(adapter):
    b = _batch(adapter, TEXTS)
    c = Component(0, 1)
    alone = adapter.run(b, [Intervention(c)]).logits
    clean = adapter.run(b).logits
    stacked = b.repeat(2)
    got = adapter.run(stacked, [Intervention(c, rows=torch.arange(3, 6))]).logits
    assert torch.allclose(got[:3], clean, atol=TOL)
    assert torch.allclose(got[3:], alone, atol=TOL)


def test_token_ids_select_logits(adapter):
    b = _batch(adapter, TEXTS)
    ids = torch.tensor([[1, 2], [3, 4], [5, 6]])
    full = adapter.run(b).logits
    part = adapter.run(b, token_ids=ids).logits
    assert torch.equal(part, full.gather(1, ids))


def test_intervention_outside_the_model_is_refused(adapter):
    b = _batch(adapter, TEXTS[:1])
    with pytest.raises(ValueError, match="outside this model"):
        adapter.run(b, [Intervention(Component(5, 0))])


# ----------------------------------------------------------------------------- bad input
def test_nonexistent_path(tmp_path):
    with pytest.raises(ModelLoadError, match="no such directory"):
        load_model(str(tmp_path / "missing"))


def test_a_file_is_not_a_model(tmp_path):
    f = tmp_path / "weights.safetensors"
    f.write_bytes(b"x")
    with pytest.raises(ModelLoadError, match="not a directory"):
        load_model(str(f))


def test_a_directory_without_config_is_not_a_model(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ModelLoadError, match="no config.json"):
        load_model(str(tmp_path))


def test_pickle_weights_are_refused(tmp_path, tiny_gpt_dir):
    (tmp_path / "config.json").write_text((tiny_gpt_dir / "config.json").read_text())
    (tmp_path / "pytorch_model.bin").write_bytes(b"not even a pickle")
    with pytest.raises(ModelLoadError, match="pickle weights are never loaded"):
        load_model(str(tmp_path))


def test_corrupt_config_is_a_clear_error(tmp_path, tiny_gpt_dir):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "no-such-architecture"}))
    (tmp_path / "model.safetensors").write_bytes((tiny_gpt_dir / "model.safetensors").read_bytes())
    with pytest.raises(ModelLoadError, match="could not load the checkpoint"):
        load_model(str(tmp_path))


def test_corrupt_weights_are_a_clear_error(tmp_path, tiny_gpt_dir):
    for f in tiny_gpt_dir.iterdir():
        if f.is_file():
            (tmp_path / f.name).write_bytes(f.read_bytes())
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # truncated: the safetensors header is cut
    with pytest.raises(ModelLoadError, match="could not load the checkpoint"):
        load_model(str(tmp_path))


def test_unreachable_hub_is_a_clear_error():
    # HF_HUB_OFFLINE is set for the test session (conftest): the real hub code path fails fast.
    with pytest.raises((ModelLoadError, UnknownModelError), match="gpt2"):
        load_model(ModelRef(id="gpt2", revision="main"))


def test_unknown_zoo_name_is_rejected_by_the_spec_and_the_loader():
    with pytest.raises(ValueError, match="unknown zoo model"):
        ModelRef(id="zoo:no-such-model")
    from circuitdiff.zoo.load import load_zoo

    with pytest.raises(UnknownModelError):
        load_zoo("no-such-model")


def test_zoo_teacher_bridge_equals_hf_and_records_its_weights(zoo_gpt_pair):
    from circuitdiff.catalogue import zoo_path

    adapter = load_model("zoo:gpt-teacher")
    hf = GPT2LMHeadModel.from_pretrained(zoo_path("gpt-teacher"), attn_implementation="eager").eval()
    b = _batch(adapter, TEXTS)
    assert (adapter.run(b).logits - _hf_end_logits(hf, b)).abs().max().item() < TOL
    assert adapter.info["kind"] == "zoo" and adapter.info["sha256"] == weights_sha256(zoo_path("gpt-teacher"))
    assert adapter.n_params == sum(p.numel() for p in hf.parameters())
