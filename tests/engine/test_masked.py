"""Masked-LM task forms (issue #4): cloze batches, custom masked prompts, and a BERT → DistilBERT
comparison whose influences equal an independent plain-hook reference written here.

Tiny BertForMaskedLM / DistilBertForMaskedLM checkpoints built from configs (tests/masked_fixtures.py).
"""

from __future__ import annotations

import json

import jsonschema
import pytest
import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer

from circuitdiff.errors import TaskTokenizationError
from circuitdiff.pipeline import run_comparison
from circuitdiff.result import result_json_schema
from circuitdiff.tasks.custom import parse_items
from circuitdiff.tasks.dataset import build_task_data
from circuitdiff.catalogue import task_items
from tests.masked_fixtures import tiny_bert_dir, tiny_distilbert_dir, wordpiece_tok  # noqa: F401

MASKED = {"teacher": "masked", "student": "masked"}


def _pair(tok):
    return {"teacher": tok, "student": tok}


@pytest.mark.parametrize("task, options", [("ioi", {}), ("sequence", {}), ("sequence", {"members": "months"}),
                                           ("qa", {"facts": "zoo"})])
def test_cloze_batches_read_the_mask(wordpiece_tok, task, options):
    tok = wordpiece_tok
    items = task_items(task, options, 8, seed=0)
    data = build_task_data(items, _pair(tok), name=task, forms=MASKED)
    assert data.form == "masked" and data.token_alignment == "shared_vocabulary" and not data.word_aligned
    assert data.n_prompts == 8 and data.rejected == []
    assert data.info()["example_prompt"] == items[0].masked_prompt
    v = data.view("teacher")
    rows = torch.arange(v.n)
    assert (v.clean.tokens[rows, v.clean.end_pos] == tok.mask_token_id).all()
    assert (v.corrupted.tokens[rows, v.corrupted.end_pos] == tok.mask_token_id).all()
    assert torch.equal(v.clean.end_pos, v.corrupted.end_pos)
    for i, it in enumerate(data.items):
        ids = tok(it.masked_prompt.replace("[MASK]", tok.mask_token))["input_ids"]
        n = len(ids)
        assert v.clean.tokens[i, :n].tolist() == ids and v.clean.attention_mask[i].sum() == n
        assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id  # the model's own framing, no BOS
        assert v.clean.end_pos[i] == ids.index(tok.mask_token_id)
        # the bare word, lower-cased, no leading space; never [UNK]
        assert v.answer_ids[i] == tok.convert_tokens_to_ids(it.answer.lower()) != tok.unk_token_id
        assert v.distractor_ids[i] == tok.convert_tokens_to_ids(it.distractor.lower()) != tok.unk_token_id


def test_custom_masked_prompts_are_used_and_checked(wordpiece_tok):
    tok = wordpiece_tok
    lines = [
        # an explicit cloze form (and its corrupted twin) differing from the decoder prompt
        {"prompt": "Q: What is the capital of Velm? A:", "answer": "Tarro", "distractor": "Penna",
         "masked_prompt": "The capital of Velm is [MASK].", "corrupted_masked_prompt": "The capital of Orra is [MASK]."},
        # no masked_prompt: the default cloze "prompt [MASK]." and its corrupted form
        {"prompt": "When Mary and John went to the store, John gave a drink to", "answer": "Mary",
         "distractor": "John", "corrupted_prompt": "When Anna and Tom went to the store, Paul gave a drink to"},
        {"prompt": "x", "answer": "Mary", "distractor": "John", "masked_prompt": "[MASK] and [MASK]."},
        {"prompt": "x", "answer": "Zzqxv", "distractor": "John", "masked_prompt": "It was [MASK]."},
        {"prompt": "x", "answer": "Mary", "distractor": "Ωμ", "masked_prompt": "It was [MASK]."},
        {"prompt": "x", "answer": "Mary", "distractor": "John", "masked_prompt": "Then [MASK] left.",
         "corrupted_masked_prompt": "Then and then [MASK] left."},
        {"prompt": "Then, Bob and Amy went home. Bob gave a book to", "answer": "Amy", "distractor": "Bob"},
        {"prompt": "Then, Sam and Ella went home. Sam gave a book to", "answer": "Ella", "distractor": "Sam"},
    ]
    items = parse_items("\n".join(json.dumps(x) for x in lines))
    data = build_task_data(items, _pair(tok), name="custom", forms=MASKED)
    reasons = {r["index"]: r["reason"] for r in data.rejected}
    assert set(reasons) == {2, 3, 4, 5}
    assert "exactly once" in reasons[2]
    assert "'zzqxv' is" in reasons[3] and "tokens for the teacher" in reasons[3]  # lower-cased, several pieces
    assert "distractor 'ωμ' is unknown" in reasons[4] and "[UNK]" in reasons[4]  # never silently [UNK] (pitfall 12)
    assert "mask positions" in reasons[5]
    v = data.view("student")
    first = tok("The capital of Velm is [MASK].")["input_ids"]
    assert v.clean.tokens[0, : len(first)].tolist() == first
    assert v.corrupted.tokens[0, : len(first)].tolist() == tok("The capital of Orra is [MASK].")["input_ids"]
    second = tok("When Anna and Tom went to the store, Paul gave a drink to [MASK].")["input_ids"]
    assert v.corrupted.tokens[1, : len(second)].tolist() == second
    # the last two have no corrupted form: each borrows another prompt of the same length and mask index
    assert torch.equal(v.corrupted.tokens[2], v.clean.tokens[3])
    assert not torch.equal(v.corrupted.tokens[3], v.clean.tokens[3])
    assert torch.equal(v.corrupted.end_pos, v.clean.end_pos)
    assert any("corrupted_masked_prompt" in w for w in data.warnings)


def test_a_masked_lm_tokenizer_without_a_mask_token_is_refused(wordpiece_tok, tiny_gpt_dir):
    gpt_tok = AutoTokenizer.from_pretrained(tiny_gpt_dir)
    with pytest.raises(TaskTokenizationError, match="no mask token"):
        build_task_data(task_items("ioi", {}, 4, seed=0), {"teacher": gpt_tok, "student": gpt_tok}, name="ioi",
                        forms=MASKED)


# ----------------------------------------------------------------------------- the pipeline
def _validate(result) -> dict:
    data = json.loads(result.model_dump_json())
    jsonschema.validate(data, result_json_schema())
    return data


@pytest.fixture(scope="module")
def bert_pair_result(tiny_bert_dir, tiny_distilbert_dir):
    spec = {"teacher": str(tiny_bert_dir), "student": str(tiny_distilbert_dir), "task": "ioi", "n_prompts": 6,
            "ablation": "mean", "bootstrap": 20}  # scan defaults to "exact"
    return spec, _validate(run_comparison(spec, cache=False))


def test_the_engine_picks_the_masked_form_from_the_model_family(bert_pair_result):
    _, data = bert_pair_result
    assert data["task"]["form"] == "masked" and data["task"]["token_alignment"] == "shared_vocabulary"
    assert "[MASK]" in data["task"]["example_prompt"]
    for role, arch in (("teacher", "BertForMaskedLM"), ("student", "DistilBertForMaskedLM")):
        m = data["models"][role]
        assert (m["family"], m["adapter"], m["architecture"]) == ("masked", "hooks", arch)
    assert len(data["influence"]["teacher"]) == 3 * 5 and len(data["influence"]["student"]) == 2 * 5
    # the exact fast scan covers GPT-2 only: the naive scan ran, and the result says so
    assert data["scan"]["method"] == "naive"
    assert any("does not cover" in w and "naive" in w for w in data["warnings"])
    assert 0 < data["alignment"]["score"] <= 1


def _reference_lds(model_dir, items, kind: str) -> dict[str, float]:
    """Mean LD at the mask with each component mean-ablated, from scratch: own tokenisation, own
    per-position means, own forward(-pre) hooks on the plain HF model."""
    tok = AutoTokenizer.from_pretrained(model_dir)
    hf = AutoModelForMaskedLM.from_pretrained(model_dir, attn_implementation="eager").eval()

    def encode(texts):
        enc = tok([t.replace("[MASK]", tok.mask_token) for t in texts], padding=True, return_tensors="pt")
        return enc["input_ids"], enc["attention_mask"]

    ids, mask = encode([it.masked_prompt for it in items])
    cids, cmask = encode([it.corrupted_masked_prompt for it in items])
    assert ids.shape == cids.shape
    pos = (ids == tok.mask_token_id).int().argmax(1)
    ans = torch.tensor([tok.convert_tokens_to_ids(it.answer.lower()) for it in items])
    dis = torch.tensor([tok.convert_tokens_to_ids(it.distractor.lower()) for it in items])
    if kind == "bert":
        blocks = hf.bert.encoder.layer
        o_proj, ffn_out, H = (lambda b: b.attention.output.dense), (lambda b: b.output.dense), hf.config.num_attention_heads
    else:
        blocks = hf.distilbert.transformer.layer
        o_proj, ffn_out, H = (lambda b: b.attention.out_lin), (lambda b: b.ffn.lin2), hf.config.n_heads

    def ld(pre_hooks=(), fwd_hooks=()):
        hs = [m.register_forward_pre_hook(f) for m, f in pre_hooks] + [m.register_forward_hook(f) for m, f in fwd_hooks]
        try:
            with torch.no_grad():
                logits = hf(input_ids=ids, attention_mask=mask).logits
        finally:
            for h in hs:
                h.remove()
        end = logits[torch.arange(len(ids)), pos].double()
        return float((end.gather(1, ans[:, None]) - end.gather(1, dis[:, None])).mean())

    # per-position means over the corrupted prompts' real tokens
    seen: dict[tuple[str, int], torch.Tensor] = {}
    hs = []
    for l, b in enumerate(blocks):
        hs.append(o_proj(b).register_forward_pre_hook(lambda m, a, l=l: seen.__setitem__(("z", l), a[0].detach())))
        hs.append(ffn_out(b).register_forward_hook(lambda m, a, o, l=l: seen.__setitem__(("mlp", l), o.detach())))
    with torch.no_grad():
        hf(input_ids=cids, attention_mask=cmask)
    for h in hs:
        h.remove()
    w = cmask.double()[:, :, None]
    means = {k: ((v.double() * w).sum(0) / w.sum(0).clamp(min=1)).float() for k, v in seen.items()}  # [T, d]

    out = {}
    dh = hf.config.hidden_size // H if kind == "bert" else hf.config.dim // H
    for l, b in enumerate(blocks):
        for h in range(H):
            def pre(m, a, l=l, h=h):
                x = a[0].clone()
                x[..., h * dh : (h + 1) * dh] = means[("z", l)][: x.shape[1], h * dh : (h + 1) * dh]
                return (x,)
            out[f"L{l}H{h}"] = ld(pre_hooks=[(o_proj(b), pre)])
        out[f"L{l}MLP"] = ld(fwd_hooks=[(ffn_out(b), lambda m, a, o, l=l: means[("mlp", l)][: o.shape[1]].expand_as(o).clone())])
    out["clean"] = ld()
    return out


def test_influences_equal_an_independent_plain_hook_reference(bert_pair_result, tiny_bert_dir, tiny_distilbert_dir):
    spec, data = bert_pair_result
    items = task_items("ioi", {}, spec["n_prompts"], seed=0)
    assert data["task"]["n_prompts"] == len(items)
    moved = 0
    for role, d, kind in (("teacher", tiny_bert_dir, "bert"), ("student", tiny_distilbert_dir, "distilbert")):
        ref = _reference_lds(d, items, kind)
        assert data["performance"][role]["logit_diff"] == pytest.approx(ref["clean"], abs=1e-5)
        got = data["influence"][role]
        assert set(got) == set(ref) - {"clean"}
        for cid, v in got.items():
            assert v["logit_diff"] == pytest.approx(ref[cid], abs=1e-5), (role, cid)
            assert v["influence"] == pytest.approx(abs(ref[cid] - ref["clean"]), abs=1e-5), (role, cid)
            moved += v["influence"] > 1e-3
    assert moved >= 10, "the reference must be checked on components that matter"


def test_zoo_bert_pair_influences_equal_the_plain_hook_reference():
    from circuitdiff.catalogue import zoo_path
    from tests.conftest import require_zoo

    require_zoo("bert-teacher", "distilbert-student")
    spec = {"teacher": "zoo:bert-teacher", "student": "zoo:distilbert-student", "task": "sequence", "n_prompts": 6,
            "ablation": "mean", "bootstrap": 0, "device": "cpu"}
    data = _validate(run_comparison(spec, cache=False))
    items = task_items("sequence", {}, 6, seed=0)
    for role, name, kind in (("teacher", "bert-teacher", "bert"), ("student", "distilbert-student", "distilbert")):
        ref = _reference_lds(zoo_path(name), items, kind)
        assert data["performance"][role]["logit_diff"] == pytest.approx(ref["clean"], abs=1e-5)
        for cid, v in data["influence"][role].items():
            assert v["logit_diff"] == pytest.approx(ref[cid], abs=1e-5), (role, cid)
