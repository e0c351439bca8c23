"""The bundled zoo: committed models load through the users' loader and solve held-out prompts,
tokenizers keep every task word one token, random benchmark models have GPT-2 small's shapes."""

from __future__ import annotations

import json

import pytest
import torch

from circuitdiff.errors import UnknownModelError
from circuitdiff.tasks import generate
from circuitdiff import catalogue
from circuitdiff.zoo.corpus import single_token_words
from circuitdiff.zoo.evaluate import EVAL_SEED, score, task_items
from circuitdiff.architectures import family_of_model_type
from circuitdiff.zoo.load import load_zoo
from circuitdiff.zoo.tokenizer import check_single_tokens

N_CHECK = 16  # a handful of held-out prompts per task; the full table is evaluate.py's job
KINDS = [
    ("ioi", {}),
    ("sequence", {"members": "numerals", "frame": "done"}),
    ("sequence", {"members": "numwords", "frame": "lost"}),
    ("sequence", {"members": "months", "frame": "names"}),
    ("qa", {}),
]
# Share of the handful that must be top-1 (the targets hold on the full table).
MIN_TOP1 = {"gpt-teacher": 0.8, "gpt-student": 0.7, "bert-teacher": 0.75, "distilbert-student": 0.6,
            "llama-teacher": 0.8, "llama-student": 0.7, "gpt-control-scratch": 0.7, "gpt-control-kd": 0.7}
# Cells the model card says a model does not perform (and why): the controls, from random weights at
# gpt-student's budget, solve every sequence kind and QA but not IOI (held-out top-1 0.41 and 0.33).
# Kept as a check that the card stays true: a retrain that changes it fails here.
NOT_PERFORMED = {("gpt-control-scratch", "ioi"), ("gpt-control-kd", "ioi")}


@pytest.fixture(scope="module", params=catalogue.TRAINED)
def zoo_model(request):
    name = request.param
    if not (catalogue.zoo_path(name) / "config.json").exists():
        pytest.fail(f"zoo model {name} is not committed under {catalogue.ZOO_DIR}")
    torch.set_num_threads(2)
    model, tok = load_zoo(f"zoo:{name}")
    return name, model, tok


@pytest.mark.parametrize("kind,opts", KINDS, ids=[f"{k}-{'-'.join(o.values())}" for k, o in KINDS])
def test_zoo_model_solves_held_out_prompts(zoo_model, kind, opts):
    name, model, tok = zoo_model
    items = task_items(kind, opts, seed=EVAL_SEED + 1)[:N_CHECK]
    s = score(model, tok, family_of_model_type(model.config.model_type), items)
    if (name, kind) in NOT_PERFORMED:
        assert s["top1"] < 0.9 and s["logit_diff"] < 2.0, (name, kind, opts, s)
        return
    assert s["logit_diff"] > 0.5, (name, kind, opts, s)
    assert s["top1"] >= MIN_TOP1[name], (name, kind, opts, s)


def test_eval_prompts_are_unseen_combinations():
    train = {(it.answer, it.distractor) for it in generate.ioi_items(500, seed=0, split="train")}
    held = {(it.answer, it.distractor) for it in generate.ioi_items(100, seed=EVAL_SEED, split="eval")}
    assert held and not (held & train)


def test_committed_models_are_small_safetensors():
    for name in catalogue.TRAINED:
        d = catalogue.zoo_path(name)
        assert (d / "model.safetensors").stat().st_size <= 10 * 2**20, name
        assert not list(d.glob("*.bin")), f"{name}: pickled weights must not be committed"
        recipe = json.loads((d / "training.json").read_text())
        assert recipe["seed"] == 0
        if name == "llama-student":  # Minitron-Depth: the kept layers follow from the recorded removal costs
            costs = recipe["depth_pruning"]["removal_cost_per_layer"]
            keep = sorted(sorted(range(len(costs)), key=lambda i: -costs[i])[:2])
            assert recipe["temperature"] == 2.0 and recipe["init_from_teacher_layers"] == keep
        elif name.endswith("student"):
            assert recipe["temperature"] == 2.0 and recipe["init_from_teacher_layers"] == [0, 2]
        elif name.startswith("gpt-control"):  # the student's shape and batches, never its teacher's layers
            assert recipe["role"] == "control" and recipe["init"] == "random" and "init_from_teacher_layers" not in recipe
            assert recipe["steps"] == recipe["recipe"]["student_steps"]
            assert ("distilled_from" in recipe) == (name == "gpt-control-kd")


def test_control_students_share_nothing_with_the_teacher_but_the_tokenizer():
    """gpt-control-scratch / -kd: gpt-student's shape, random init (the same for both), so their weights
    are neither the teacher's layers (as gpt-student's start) nor each other's after training."""
    teacher, _ = load_zoo("zoo:gpt-teacher")
    student, _ = load_zoo("zoo:gpt-student")
    scratch, tok = load_zoo("zoo:gpt-control-scratch")
    kd, _ = load_zoo("zoo:gpt-control-kd")
    for m in (scratch, kd):
        assert (m.config.n_layer, m.config.n_head, m.config.n_embd) == (2, 4, 128)
        assert sum(p.numel() for p in m.parameters()) == sum(p.numel() for p in student.parameters())
        for k in (0, 2):  # the teacher blocks gpt-student was initialised from
            w, t = m.transformer.h[0].attn.c_attn.weight, teacher.transformer.h[k].attn.c_attn.weight
            assert torch.corrcoef(torch.stack([w.flatten(), t.flatten()]))[0, 1].abs() < 0.5
    assert not torch.equal(scratch.transformer.h[0].attn.c_attn.weight, kd.transformer.h[0].attn.c_attn.weight)
    assert tok.get_vocab() == load_zoo("zoo:gpt-teacher")[1].get_vocab()


def test_student_shapes_follow_the_recipe():
    t, _ = load_zoo("zoo:gpt-teacher")
    s, _ = load_zoo("zoo:gpt-student")
    assert (t.config.n_layer, s.config.n_layer) == (4, 2)
    assert t.config.n_embd == s.config.n_embd and t.config.n_head == s.config.n_head == 4
    bt, btok = load_zoo("zoo:bert-teacher")
    ds, dtok = load_zoo("zoo:distilbert-student")
    assert (bt.config.num_hidden_layers, ds.config.n_layers) == (4, 2)
    assert btok.get_vocab() == dtok.get_vocab()
    lt, ltok = load_zoo("zoo:llama-teacher")
    ls, _ = load_zoo("zoo:llama-student")
    assert (lt.config.num_hidden_layers, ls.config.num_hidden_layers) == (4, 2)
    assert (lt.config.num_attention_heads, lt.config.num_key_value_heads) == (4, 2)  # GQA
    assert ls.config.num_key_value_heads == 2 and lt.config.hidden_size == ls.config.hidden_size == 128


@pytest.mark.parametrize("name", catalogue.TRAINED)
def test_tokenizer_keeps_task_words_single_tokens(name):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(catalogue.zoo_path(name))
    fam = catalogue.zoo_model(name).family
    check_single_tokens(tok, fam)  # raises on any split word
    words = single_token_words()
    assert len(words) > 200
    if fam == "causal":
        ids = tok("Mary gave a drink to John")["input_ids"]
        assert tok.bos_token_id not in ids  # the engine, not the tokenizer, decides BOS
        assert tok.convert_ids_to_tokens(tok(" Mary", add_special_tokens=False)["input_ids"]) == ["ĠMary"]
        assert tok.bos_token == tok.eos_token == tok.pad_token == "<|endoftext|>"
    else:
        enc = tok(generate.ioi_items(1, seed=3)[0].masked_prompt)["input_ids"]
        assert enc.count(tok.mask_token_id) == 1 and enc[0] == tok.cls_token_id


def test_catalogue_knows_random_models():
    assert not catalogue.zoo_model("zoo:gpt2-small-random").trained and not catalogue.zoo_model("distilgpt2-random").trained
    assert catalogue.zoo_model("zoo:gpt-teacher").trained
    assert set(catalogue.RANDOM) == {"gpt2-small-random", "distilgpt2-random"}
    with pytest.raises(UnknownModelError):
        load_zoo("zoo:no-such-model")


@pytest.fixture(scope="session")
def random_pair():
    torch.set_num_threads(2)
    return load_zoo("zoo:gpt2-small-random"), load_zoo("zoo:distilgpt2-random")


def test_random_models_have_gpt2_small_shapes(random_pair):
    (big, tok), (small, _) = random_pair
    for model, layers, params in ((big, 12, 124_439_808), (small, 6, 81_912_576)):
        c = model.config
        assert (c.n_layer, c.n_head, c.n_embd, c.vocab_size, c.n_positions) == (layers, 12, 768, 50257, 1024)
        assert sum(p.numel() for p in model.parameters()) == params
    ids = tok(generate.ioi_items(2, seed=1)[0].prompt, return_tensors="pt")["input_ids"]
    assert int(ids.max()) < 50257
    with torch.no_grad():
        assert big(ids).logits.shape == (1, ids.shape[1], 50257)


def test_random_models_are_seeded(random_pair):
    (_, _), (a, _) = random_pair  # built with seed 0
    w0 = a.transformer.h[0].attn.c_attn.weight[:4, :4].clone()
    b, _ = load_zoo("zoo:distilgpt2-random", seed=0)
    assert torch.equal(w0, b.transformer.h[0].attn.c_attn.weight[:4, :4])
    c, _ = load_zoo("zoo:distilgpt2-random", seed=1)
    assert not torch.equal(w0, c.transformer.h[0].attn.c_attn.weight[:4, :4])


@pytest.mark.slow
def test_retraining_reproduces_the_committed_bytes(tmp_path):
    """`make zoo` in the reproducibility mode (issue #18), under outside settings that pick other
    kernels (AVX2 ATen, AVX2 MKL, non-FMA libm, 2 OpenMP threads): every file is the committed one."""
    import hashlib
    import os

    from circuitdiff.zoo.train import train_all

    if not json.loads((catalogue.zoo_path("gpt-teacher") / "training.json").read_text()).get("reproducible"):
        pytest.skip("the committed weights predate the reproducibility mode (issue #18): retrain with `make zoo`")
    env = os.environ | {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "OMP_NUM_THREADS": "2",
                        "GLIBC_TUNABLES": "glibc.cpu.hwcaps=-FMA,-AVX2"}
    train_all(tmp_path, seed=0, env=env)
    for name in catalogue.TRAINED:
        for f in ("model.safetensors", "tokenizer.json", "config.json", "training.json"):
            fresh, committed = (hashlib.sha256((d / name / f).read_bytes()).hexdigest()
                                for d in (tmp_path, catalogue.ZOO_DIR))
            assert fresh == committed, (name, f)
