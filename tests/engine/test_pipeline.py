"""run_comparison end to end on real tiny models (and the zoo pair when it is trained)."""

from __future__ import annotations

import json

import jsonschema
import pytest
import torch

from circuitdiff.errors import Cancelled, TaskTokenizationError
from circuitdiff.pipeline import run_comparison as _run_comparison
from circuitdiff.result import ComparisonResult, result_json_schema


def run_comparison(spec, **kw):
    """Every run here computes: the activation cache (tested in test_cache*) would otherwise serve
    a scan computed by an earlier test, and cancellation / determinism would test nothing."""
    return _run_comparison(spec, cache=False, **kw)


def _validate(result: ComparisonResult) -> dict:
    data = json.loads(result.model_dump_json())
    jsonschema.validate(data, result_json_schema())
    return data


def _assert_self_comparison(data: dict) -> None:
    assert data["alignment"]["score"] == 1.0  # similarities are clipped: no 1.0000000000000009
    assert data["alignment"]["chance"]["ci95"][1] < 1.0  # the correspondence is what the score sees
    # above chance exactly when the model performs the task (a random-weight model does not)
    assert data["alignment"]["above_chance"] == data["performance"]["teacher"]["performs_task"]
    assert all(m["student"] == m["teacher"] for m in data["matches"]), [
        (m["student"], m["teacher"]) for m in data["matches"] if m["student"] != m["teacher"]
    ]
    assert all(m["matched"] for m in data["matches"])
    n = data["models"]["teacher"]["n_layers"] * (data["models"]["teacher"]["n_heads"] + 1)
    assert len(data["matches"]) == n


def test_a_model_compared_with_itself_is_fully_aligned(loud_gpt_dir):
    r = run_comparison({"teacher": str(loud_gpt_dir), "student": str(loud_gpt_dir), "task": "ioi", "n_prompts": 6,
                        "scan": "naive", "bootstrap": 50})
    data = _validate(r)
    _assert_self_comparison(data)
    assert data["influence"]["teacher"] == data["influence"]["student"]
    assert data["robustness"]["compression_ratio"] == 0.0
    assert data["alignment"]["ci95"] == pytest.approx([1.0, 1.0], abs=1e-6)


def test_tiny_pair_result_is_complete_and_valid(loud_gpt_dir, tiny_gpt_dir_b):
    stages = []
    r = run_comparison(
        {"teacher": str(loud_gpt_dir), "student": str(tiny_gpt_dir_b), "task": "sequence", "n_prompts": 5,
         "ablation": "resample", "scan": "naive", "bootstrap": 100, "seed": 3},
        progress=lambda s, d, t: stages.append(s),
    )
    data = _validate(r)
    assert data["spec"]["ablation"] == "resample" and data["spec"]["matching"] == "student_to_teacher"
    assert data["models"]["teacher"]["n_layers"] == 2 and data["models"]["student"]["n_layers"] == 3
    assert len(data["similarity"]["heads"]["rows"]) == 12 and len(data["similarity"]["heads"]["cols"]) == 8
    assert data["similarity"]["mlp_method"] == "linear_cka" and data["similarity"]["mlps_raw"] is None
    assert set(data["influence"]["student"]) >= {"L2H3", "L2MLP"}
    assert 0 <= data["alignment"]["score"] <= 1
    assert len(data["matches"]) == 12 + 3 and data["alignment"]["n_pairs"] == 15
    assert 1 <= len(data["attention"]) <= 4
    view = data["attention"][0]
    assert len(view["tokens"]) == len(view["student_pattern"]) == len(view["teacher_pattern"][0])
    for stage in ("load", "task", "clean", "influence:teacher", "influence:student", "similarity", "alignment"):
        assert stage in stages and stage in data["timings"]
    assert data["engine"]["transformer_lens"] == "4.3.0"
    assert data["task"]["n_prompts"] == 5 and len(data["task"]["dataset_sha256"]) == 64


def test_the_same_spec_gives_the_same_numbers(loud_gpt_dir, tiny_gpt_dir_b):
    spec = {"teacher": str(loud_gpt_dir), "student": str(tiny_gpt_dir_b), "task": "ioi", "n_prompts": 4,
            "scan": "naive", "bootstrap": 30}
    a, b = (run_comparison(spec).model_dump(mode="json") for _ in range(2))
    for key in ("influence", "similarity", "matches", "alignment", "robustness", "performance"):
        assert a[key] == b[key], key


def test_paper_preset_follows_each_tasks_notebook(loud_gpt_dir, tiny_gpt_dir_b):
    """IOI (IOI_alignment_metric.ipynb): raw eigenvector MLP similarity, no thresholds, no duplicated
    pairs. Sequence (seq_alignment_metric.ipynb): rescaled MLP similarity, thresholds, below-threshold
    head pairs counted twice and MLP pairs never."""
    spec = {"teacher": str(loud_gpt_dir), "student": str(tiny_gpt_dir_b), "n_prompts": 4, "preset": "paper",
            "scan": "naive"}
    ioi = _validate(run_comparison({**spec, "task": "ioi"}))
    assert ioi["similarity"]["mlp_method"] == "eigen_top3_raw" and ioi["similarity"]["mlps_raw"] is None
    assert ioi["spec"]["head_threshold"] == ioi["spec"]["mlp_threshold"] == 0.0
    assert not any(m["duplicated"] for m in ioi["matches"]) and all(m["matched"] for m in ioi["matches"])
    assert ioi["spec"]["ablation"] == "zero" and ioi["similarity"]["head_method"] == "row_cosine_all_rows"
    assert "IOI_alignment_metric.ipynb" in ioi["alignment"]["protocol"]
    # the raw similarity is the eigen method itself: its values, not rescaled ones, are in the matrix
    assert max(max(r) for r in ioi["similarity"]["mlps"]["values"]) < 1.0

    seq = _validate(run_comparison({**spec, "task": "sequence", "head_threshold": 0.999, "mlp_threshold": 0.999}))
    first = [m for m in seq["matches"] if not m["duplicated"]]
    dup = [m for m in seq["matches"] if m["duplicated"]]
    assert len(first) == 15 and seq["similarity"]["mlp_method"] == "eigen_top3_rescaled"
    assert any(not m["matched"] for m in first if m["kind"] == "mlp")  # a below-threshold MLP pair ...
    assert all(m["kind"] == "head" for m in dup)  # ... is never duplicated
    assert len(dup) == sum(not m["matched"] for m in first if m["kind"] == "head") > 0
    assert seq["alignment"]["n_pairs"] == len(first) + len(dup)
    assert "seq_alignment_metric.ipynb" in seq["alignment"]["protocol"]
    # one setting governs every interval: the paper preset uses the authors' 10,000 resamples
    assert seq["spec"]["bootstrap"] == 10_000 and seq["alignment"]["ci95"] is not None


def test_cancel_stops_between_components(loud_gpt_dir):
    seen = []

    def progress(stage, done, total):
        seen.append((stage, done))

    with pytest.raises(Cancelled):
        run_comparison({"teacher": str(loud_gpt_dir), "student": str(loud_gpt_dir), "task": "ioi", "n_prompts": 4,
                        "scan": "naive"}, progress=progress,
                       cancelled=lambda: any(s == "influence:teacher" and d >= 2 for s, d in seen))
    assert not any(s == "influence:student" for s, _ in seen)


def test_bad_custom_dataset_is_a_clear_error(loud_gpt_dir, tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text("\n".join(
        json.dumps({"prompt": "When Amy and Sam went to the store, Sam gave a drink to", "answer": f"Qwxz{i}zz",
                    "distractor": "Sam"}) for i in range(4)))
    with pytest.raises(TaskTokenizationError, match="answer ' Qwxz0zz' is"):
        run_comparison({"teacher": str(loud_gpt_dir), "student": str(loud_gpt_dir), "task": "custom", "dataset": str(f),
                        "n_prompts": 4, "scan": "naive"})


def test_different_vocabularies_are_compared_on_shared_words(loud_gpt_dir, tiny_gpt_other_vocab_dir):
    # issue #4: no shared tokenisation -> tokens mapped to shared words by character offsets
    data = _validate(run_comparison({"teacher": str(loud_gpt_dir), "student": str(tiny_gpt_other_vocab_dir),
                                     "task": "ioi", "n_prompts": 4, "scan": "naive"}))
    assert data["task"]["token_alignment"] == "word_pooled" and data["task"]["form"] == "causal"
    assert data["similarity"]["head_method"].startswith("word_pooled_")


# ----------------------------------------------------------------------------- the zoo pair
@pytest.mark.parametrize("task, options", [("ioi", {}), ("sequence", {})])
def test_zoo_pair_reproduces_the_method(zoo_gpt_pair, task, options):
    teacher, student = zoo_gpt_pair
    # default (exact) scan: equal to the naive one (tests/engine/test_fast_scan.py), minutes faster on CPU
    r = run_comparison({"teacher": teacher, "student": student, "task": task, "task_options": options,
                        "n_prompts": 40, "bootstrap": 200})
    data = _validate(r)
    perf, rb, a = data["performance"], data["robustness"], data["alignment"]
    print(f"\n{task}: LD teacher {perf['teacher']['logit_diff']:.3f} (acc {perf['teacher']['accuracy']:.2f}), "
          f"student {perf['student']['logit_diff']:.3f} (acc {perf['student']['accuracy']:.2f}); "
          f"alignment {a['score']:.4f} {a['ci95']}; mean drop teacher {rb['teacher']['mean_drop']:.2f} "
          f"student {rb['student']['mean_drop']:.2f}; severity {rb['teacher']['severity']:.4f} / "
          f"{rb['student']['severity']:.4f}; C {rb['compression_ratio']:.3f}")
    assert perf["teacher"]["performs_task"] and perf["student"]["performs_task"]
    assert 0 < a["score"] < 1
    # a distilled pair is aligned beyond chance (issue #12)
    assert a["above_chance"] and a["score"] > a["chance"]["ci95"][1], a["chance"]
    assert a["ci95"][0] <= a["score"] <= a["ci95"][1]
    assert rb["teacher"] is not None and rb["student"] is not None
    assert 0 < rb["compression_ratio"] < 1
    # the paper's finding (docs/method.md §Method 6): the student leans harder on fewer components
    assert rb["student"]["mean_drop"] > rb["teacher"]["mean_drop"]
    assert rb["student"]["severity"] > rb["teacher"]["severity"]
    assert data["models"]["teacher"]["sha256"] and data["models"]["teacher"]["kind"] == "zoo"


def test_zoo_teacher_compared_with_itself(zoo_gpt_pair):
    teacher, _ = zoo_gpt_pair
    data = _validate(run_comparison({"teacher": teacher, "student": teacher, "task": "ioi", "n_prompts": 8,
                                     "bootstrap": 50}))
    _assert_self_comparison(data)
    assert all(m["confidence"] == 1.0 for m in data["matches"]) and data["alignment"]["confidence_resamples"] == 50
    assert data["unpaired"] == {"student": [], "teacher": []}


def test_a_student_built_from_copied_teacher_layers_matches_each_copied_mlp(tmp_path):
    """Default preset MLP similarity (linear CKA): a student made of the zoo teacher's first two
    layers sees exactly the teacher's inputs there, so each copied MLP must match its original."""
    import copy

    from transformers import AutoTokenizer, GPT2LMHeadModel

    from circuitdiff.catalogue import zoo_path

    teacher = GPT2LMHeadModel.from_pretrained(zoo_path("gpt-teacher"))
    student = copy.deepcopy(teacher)
    student.transformer.h = student.transformer.h[:2]
    student.config.n_layer = 2
    student.save_pretrained(tmp_path, safe_serialization=True)
    AutoTokenizer.from_pretrained(zoo_path("gpt-teacher")).save_pretrained(tmp_path)
    data = _validate(run_comparison({"teacher": "zoo:gpt-teacher", "student": str(tmp_path), "task": "ioi",
                                     "n_prompts": 16, "bootstrap": 0}))
    assert data["similarity"]["mlp_method"] == "linear_cka"
    mlps = {m["student"]: m for m in data["matches"] if m["kind"] == "mlp"}
    for layer in range(2):
        m = mlps[f"L{layer}MLP"]
        assert m["teacher"] == f"L{layer}MLP" and m["similarity"] >= 0.999, m


def test_a_pair_of_unrelated_random_models_is_not_above_chance(tiny_gpt_dir, tiny_gpt_dir_b):
    data = _validate(run_comparison({"teacher": str(tiny_gpt_dir), "student": str(tiny_gpt_dir_b), "task": "ioi",
                                     "n_prompts": 12, "scan": "naive", "bootstrap": 0}))
    a = data["alignment"]
    print("\nrandom pair:", a["score"], a["chance"])
    assert not a["above_chance"]
    assert a["score"] <= a["chance"]["ci95"][1] and a["chance"]["p_value"] > 0.05  # the score itself is chance


def test_one_to_one_matching_pairs_each_component_once_and_lists_the_surplus(loud_gpt_dir, tiny_gpt_dir_b):
    data = _validate(run_comparison({"teacher": str(loud_gpt_dir), "student": str(tiny_gpt_dir_b), "task": "ioi",
                                     "n_prompts": 6, "scan": "naive", "matching": "one_to_one", "bootstrap": 20}))
    heads = [m for m in data["matches"] if m["kind"] == "head"]
    mlps = [m for m in data["matches"] if m["kind"] == "mlp"]
    assert len(heads) == 8 and len(mlps) == 2  # the teacher has 2 x 4 heads, the student 3 x 4
    assert len({m["student"] for m in data["matches"]}) == len({m["teacher"] for m in data["matches"]}) == 10
    assert len(data["unpaired"]["student"]) == 5 and data["unpaired"]["teacher"] == []
    assert all(0 <= m["confidence"] <= 1 for m in data["matches"])
    assert data["alignment"]["direction"] == "one_to_one"


def test_the_items_in_a_result_reproduce_it_as_a_custom_dataset(zoo_gpt_pair, tmp_path, cli):
    teacher, student = zoo_gpt_pair
    spec = {"teacher": teacher, "student": student, "n_prompts": 8, "bootstrap": 30}
    first = run_comparison({**spec, "task": "ioi"}).model_dump(mode="json")
    assert len(first["task"]["items"]) == 8 and first["task"]["items"][0]["corrupted_prompt"]
    (tmp_path / "result.json").write_text(json.dumps(first))
    assert cli("items", str(tmp_path / "result.json"), "--out", str(tmp_path / "items.jsonl")).returncode == 0
    again = run_comparison({**spec, "task": "custom", "dataset": str(tmp_path / "items.jsonl")})
    again = again.model_dump(mode="json")
    assert again["task"]["dataset_sha256"] == first["task"]["dataset_sha256"]
    for key in ("performance", "influence", "similarity", "matches", "alignment", "robustness", "unpaired"):
        assert again[key] == first[key], key


@pytest.mark.slow  # GPT-2-small shapes on CPU: about two minutes on a shared machine
def test_random_gpt2_shaped_pair_runs_and_is_flagged(zoo_gpt_pair):
    # the default (exact) scan: this pair is what benchmarks time; the naive one takes minutes on CPU
    r = run_comparison({"teacher": "zoo:gpt2-small-random", "student": "zoo:distilgpt2-random", "task": "ioi",
                        "n_prompts": 4, "bootstrap": 0})
    data = _validate(r)
    assert data["models"]["teacher"]["n_layers"] == 12 and data["models"]["student"]["n_layers"] == 6
    print("\nrandom pair LDs:", data["performance"])
    assert not data["performance"]["teacher"]["performs_task"]
    assert not data["performance"]["student"]["performs_task"]
    assert data["robustness"]["teacher"] is None and data["robustness"]["note"]
    assert data["alignment"]["score"] is not None


def test_performs_task_needs_a_logit_difference_distinguishable_from_zero():
    from circuitdiff.analysis.performance import performance as performance_section

    right = torch.ones(4, dtype=torch.bool)
    # LDs of a seeded random GPT-2-small-shaped model on 4 IOI prompts: mean > 0 by chance
    noise = performance_section(torch.tensor([0.181, -0.601, 0.796, 0.136]), right)
    assert noise["logit_diff"] > 0 and not noise["performs_task"]
    assert performance_section(torch.tensor([2.1, 1.9, 2.5, 2.2]), right)["performs_task"]
    assert not performance_section(torch.tensor([-2.1, -1.9, -2.5, -2.2]), right)["performs_task"]
    assert performance_section(torch.tensor([0.5]), right)["performs_task"]  # one prompt: the sign only


def test_fewer_prompts_than_asked_for_is_a_warning_the_job_status_repeats(zoo_gpt_pair, tmp_path):
    """#27: 20 prompts asked for and 6 compared is said in the result's warnings, and the worker's
    files step hands the same warnings to the job record (its status shows what its result says)."""
    from circuitdiff.catalogue import task_items
    from worker import artifacts

    teacher, student = zoo_gpt_pair
    items = task_items("ioi", {}, 6, 0)
    (tmp_path / "six.jsonl").write_text("".join(json.dumps({"prompt": it.prompt, "answer": it.answer,
                                                            "distractor": it.distractor,
                                                            "corrupted_prompt": it.corrupted_prompt}) + "\n"
                                                for it in items))
    r = run_comparison({"teacher": teacher, "student": student, "task": "custom", "n_prompts": 20, "bootstrap": 0,
                        "dataset": str(tmp_path / "six.jsonl")})
    short = [w for w in r.warnings if "prompts asked for" in w]
    assert short == ["20 prompts asked for, 6 compared (the dataset has 6): intervals are wider than asked for"]
    out = tmp_path / "files"
    out.mkdir()
    assert artifacts.write(r, out) == r.warnings
