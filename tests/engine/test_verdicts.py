"""The verdict (#29 §1): what an alignment score means, read against chance, the depth reference and
control students (circuitdiff.analysis.verdict), on the bundled GPT family.

The bundled controls perform `sequence` but not IOI (circuitdiff/zoo/README.md), so the zoo checks run
on `sequence`: the distilled student with a control of the data gets the top verdict; a model of the
same data that shares no lineage with the teacher (gpt-control-scratch) never does, with or without a
control of its own.
"""

from __future__ import annotations

import numpy as np
import pytest

from circuitdiff.analysis.matching import Pair
from circuitdiff.analysis.verdict import VERDICTS, Reference, decide, depth_similarities
from circuitdiff.pipeline import run_comparison
from tests.conftest import require_zoo


def test_the_verdict_follows_its_gates_in_order():
    ok = dict(performing=True, above_chance=True, depth=Reference(0.4, (0.38, 0.42)))
    assert decide(None, None, **ok, controls=[]) == "not_scored"
    assert decide(0.9, (0.88, 0.92), **{**ok, "performing": False}, controls=[]) == "not_performing"
    assert decide(0.9, (0.88, 0.92), **{**ok, "above_chance": False}, controls=[]) == "not_above_chance"
    assert decide(0.41, (0.40, 0.43), **ok, controls=[]) == "same_layout"  # intervals overlap the depth's
    assert decide(0.9, (0.88, 0.92), **ok, controls=[]) == "beyond_depth_reference"  # no control: not the top
    assert decide(0.9, (0.88, 0.92), **ok, controls=[Reference(0.6, (0.58, 0.62))]) == "kept_teacher_components"
    assert decide(0.9, (0.88, 0.92), **ok, controls=[Reference(0.6, None), Reference(0.89, (0.87, 0.91))]) \
        == "same_layout"  # one control as good as the student is enough
    assert decide(0.9, None, **ok, controls=[Reference(0.6, None)]) == "kept_teacher_components"  # points
    assert list(VERDICTS)[-1] == "kept_teacher_components"


def test_depth_similarity_is_the_mean_over_the_teacher_layer_at_the_same_relative_depth():
    # student 2 layers x 2 heads, teacher 4 layers x 2 heads: student layer 0 -> teacher layer 1, 1 -> 3
    heads = np.arange(4 * 8, dtype=float).reshape(4, 8) / 100
    mlps = np.arange(2 * 4, dtype=float).reshape(2, 4) / 10
    pairs = [Pair("L0H1", "L0H0", 0.9, True, 1, 0, "head"), Pair("L1H0", "L3H1", 0.9, True, 2, 7, "head"),
             Pair("L1MLP", "L2MLP", 0.8, True, 1, 2, "mlp")]
    got = depth_similarities(pairs, heads, mlps, student_layers=2, teacher_layers=4, teacher_heads=2)
    assert got == pytest.approx([heads[1, 2:4].mean(), heads[2, 6:8].mean(), mlps[1, 3]])


def _run(student: str, controls: list[str]) -> dict:
    spec = {"teacher": "zoo:gpt-teacher", "student": student, "task": "sequence", "n_prompts": 30,
            "controls": controls, "bootstrap": 200}
    return run_comparison(spec, cache=False).model_dump(mode="json")


@pytest.fixture(scope="module")
def zoo_gpt():
    require_zoo("gpt-teacher", "gpt-student", "gpt-control-scratch", "gpt-control-kd")


def test_the_distilled_student_beyond_a_control_kept_the_teachers_components(zoo_gpt):
    r = _run("zoo:gpt-student", ["zoo:gpt-control-scratch"])
    a = r["alignment"]
    (control,) = a["controls"]
    assert control["model"] == "zoo:gpt-control-scratch" and control["performs_task"] is True
    assert a["ci95"][0] > control["ci95"][1] and a["ci95"][0] > a["depth_reference"]["ci95"][1]
    assert a["verdict"] == "kept_teacher_components", a["verdict_reason"]
    assert "control zoo:gpt-control-scratch" in a["verdict_reason"]


def test_a_model_of_the_same_data_without_lineage_never_gets_the_top_verdict(zoo_gpt):
    alone = _run("zoo:gpt-control-scratch", [])["alignment"]
    assert alone["verdict"] != "kept_teacher_components", alone["verdict_reason"]
    with_control = _run("zoo:gpt-control-scratch", ["zoo:gpt-control-kd"])["alignment"]
    assert with_control["verdict"] in ("same_layout", "not_above_chance"), with_control["verdict_reason"]


def _head_permuted_teacher(out):
    """gpt-teacher with the heads of every layer in another order (q, k, v columns and the output
    projection's rows moved together): the same function, every head under another index."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from circuitdiff.catalogue import zoo_path

    src = zoo_path("gpt-teacher")
    model = AutoModelForCausalLM.from_pretrained(src)
    n_head, d = model.config.n_head, model.config.n_embd
    dh = d // n_head
    perm = [1, 2, 3, 0][:n_head] if n_head == 4 else list(range(1, n_head)) + [0]
    cols = torch.cat([torch.arange(p * dh, (p + 1) * dh) for p in perm])
    with torch.no_grad():
        for block in model.transformer.h:
            w, b = block.attn.c_attn.weight, block.attn.c_attn.bias  # Conv1D: [d, 3d]
            w.copy_(torch.cat([w[:, i * d:(i + 1) * d][:, cols] for i in range(3)], dim=1))
            b.copy_(torch.cat([b[i * d:(i + 1) * d][cols] for i in range(3)]))
            block.attn.c_proj.weight.copy_(block.attn.c_proj.weight[cols, :])
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(src).save_pretrained(out)
    return out


def test_a_head_permuted_copy_of_the_teacher_kept_its_components(zoo_gpt, tmp_path):
    copy = _head_permuted_teacher(tmp_path / "permuted")
    r = _run(str(copy), ["zoo:gpt-control-scratch"])
    a = r["alignment"]
    assert r["performance"]["student"]["logit_diff"] == pytest.approx(r["performance"]["teacher"]["logit_diff"],
                                                                      rel=1e-4)  # the same function
    assert {m["student"]: m["teacher"] for m in r["matches"] if m["kind"] == "head"}["L0H0"] == "L0H1"
    assert a["verdict"] == "kept_teacher_components", a["verdict_reason"]


def test_the_score_interval_covers_other_prompt_draws_better_than_influences_alone(zoo_gpt):
    """#29 §4: ten draws of 40 IOI prompts (seeds 0-9). With similarities, matching and influences
    recomputed on every resample, the query rows weighted by the prompts that have them and the
    resamples' bias removed, another draw's score falls inside a draw's 95% interval 80% of the time
    (the influences-only interval of the previous release: 43%; two independent estimates with exact
    intervals: about 83%), and the resamples' spread is 1.1x the draws' (was 0.37x). Generous bounds between the two; what remains is
    in the closing note of #29."""
    scores, lows, highs, spreads = [], [], [], []
    for seed in range(10):
        r = run_comparison({"teacher": "zoo:gpt-teacher", "student": "zoo:gpt-student", "task": "ioi",
                            "n_prompts": 40, "seed": seed}, cache=False)
        a = r.alignment
        assert a.ci_method and "matching" in a.ci_method
        scores.append(a.score), lows.append(a.ci95[0]), highs.append(a.ci95[1])
        spreads.append((a.ci95[1] - a.ci95[0]) / (2 * 1.96))
    inside = [lows[i] <= scores[j] <= highs[i] for i in range(10) for j in range(10) if i != j]
    assert np.mean(inside) >= 0.5, (np.mean(inside), scores, lows, highs)
    assert np.mean(spreads) / np.std(scores, ddof=1) >= 0.6
