"""The ``circuitdiff`` command: once as a user runs it (the installed entry point, a real subprocess),
then in process (``main(argv)``) where what is tested is the command, not the interpreter start."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from circuitdiff.cli import format_validation_error, spec_from_args, build_parser

BIN = Path(sys.executable).parent / "circuitdiff"


def _run(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    return subprocess.run([str(BIN), *args], capture_output=True, text=True, timeout=timeout, env=env)


def _one_error_line(p) -> str:
    lines = [l for l in p.stderr.splitlines() if l.startswith("error:")]
    assert len(lines) == 1, p.stderr
    assert "Traceback" not in p.stderr
    return lines[0]


def test_compare_writes_a_result_and_prints_a_summary(tiny_gpt_dir, tiny_gpt_dir_b, tmp_path):
    out = tmp_path / "result.json"
    p = _run("compare", "--teacher", str(tiny_gpt_dir), "--student", str(tiny_gpt_dir_b), "--task", "sequence",
             "--task-option", "members=months", "--prompts", "4", "--scan", "naive", "--ablation", "zero",
             "--seed", "7", "--device", "cpu", "--out", str(out))
    assert p.returncode == 0, p.stderr
    data = json.loads(out.read_text())
    assert data["spec"]["task_options"] == {"members": "months", "frame": "done"}
    assert data["spec"]["seed"] == 7 and data["spec"]["ablation"] == "zero"
    assert f"alignment {data['alignment']['score']:.4f}" in p.stdout
    assert "top teacher components" in p.stdout and str(out) in p.stdout
    assert "influence:student" in p.stderr  # progress goes to stderr
    assert "Traceback" not in p.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--teacher", "zoo:nope", "--student", "zoo:gpt-student"], "teacher.id: unknown zoo model 'nope'"),
        (["--teacher", "/no/such/dir", "--student", "/no/such/dir"], "/no/such/dir: no such directory"),
        (["--teacher", "zoo:gpt-teacher", "--student", "zoo:gpt-student", "--task-option", "colour=red"],
         "task_options.colour: unknown option"),
        (["--teacher", "zoo:gpt-teacher", "--student", "zoo:gpt-student", "--circuit-threshold", "30"],
         "--circuit-threshold need --circuits"),
        (["--teacher", "zoo:gpt-teacher", "--student", "zoo:gpt-student", "--circuits", "--circuit-sweep", "10,x"],
         "--circuit-sweep '10,x': expected numbers separated by commas"),
        (["--teacher", "zoo:gpt-teacher", "--student", "zoo:gpt-student", "--circuits", "--circuit-sweep", "0,20"],
         "circuits.sweep: every sweep threshold must be between 0 and 100"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(args, message, tmp_path, cli):
    p = cli("compare", *args, "--task", "ioi", "--out", str(tmp_path / "r.json"))
    assert p.returncode == 2
    assert message in _one_error_line(p)
    assert not (tmp_path / "r.json").exists()


def test_a_directory_that_is_not_a_model(tmp_path, tiny_gpt_dir, cli):
    (tmp_path / "junk").mkdir()
    p = cli("compare", "--teacher", str(tmp_path / "junk"), "--student", str(tiny_gpt_dir), "--task", "ioi",
             "--out", str(tmp_path / "r.json"))
    assert p.returncode == 2
    assert "not a model checkpoint (no config.json)" in _one_error_line(p)


def test_listings(cli):
    p = cli("tasks")
    assert p.returncode == 0 and "sequence" in p.stdout and "members=numerals|numwords|months" in p.stdout
    p = cli("models")
    assert p.returncode == 0 and "zoo:gpt-teacher" in p.stdout and "zoo:gpt2-small-random" in p.stdout


def test_validation_errors_are_formatted_as_field_message():
    from pydantic import ValidationError

    args = build_parser().parse_args(["compare", "--teacher", "zoo:gpt-teacher", "--student", "zoo:gpt-student",
                                      "--task", "ioi", "--prompts", "0", "--out", "x.json"])
    with pytest.raises(ValidationError) as e:
        spec_from_args(args)
    assert format_validation_error(e.value) == "n_prompts: Input should be greater than or equal to 1"


def test_circuit_flags_fill_the_spec_field():
    base = ["compare", "--teacher", "zoo:gpt-teacher", "--student", "zoo:gpt-student", "--task", "ioi", "--out", "x.json"]
    assert spec_from_args(build_parser().parse_args(base)).circuits is None
    spec = spec_from_args(build_parser().parse_args(base + ["--circuits"]))
    assert spec.circuits.threshold == 20.0 and spec.circuits.sweep is None
    spec = spec_from_args(build_parser().parse_args(
        base + ["--circuits", "--circuit-threshold", "25", "--circuit-sweep", "30,10,20", "--circuit-null-draws", "50"]))
    assert (spec.circuits.threshold, spec.circuits.sweep, spec.circuits.null_draws) == (25.0, [10.0, 20.0, 30.0], 50)


def test_summary_hedges_a_mean_drop_difference_whose_interval_includes_zero(tmp_path):
    from circuitdiff.cli import summary

    r = {
        "models": {role: {"id": f"zoo:{role}", "n_layers": 2, "n_heads": 4, "n_params": 1000} for role in ("teacher", "student")},
        "performance": {role: {"logit_diff": 3.0, "logit_diff_std": 1.0, "accuracy": 1.0, "performs_task": True}
                        for role in ("teacher", "student")},
        "task": {"name": "ioi", "options": {}, "n_prompts": 10, "n_rejected": 0},
        "alignment": {"score": 0.9, "ci95": None, "n_pairs": 10, "direction": "student_to_teacher", "mean_similarity": 0.95},
        "robustness": {
            "teacher": {"mean_drop": 10.0, "mean_drop_ci95": [1.0, 20.0], "severity": 0.1},
            "student": {"mean_drop": 20.0, "mean_drop_ci95": [2.0, 40.0], "severity": 0.2},
            "delta_mean_drop": 9.57, "delta_mean_drop_ci95": [-14.35, 37.28], "compression_ratio": 0.4, "slope_mean": 23.9,
        },
        "influence": {role: {"L0H0": {"influence": 1.0, "delta": -1.0}} for role in ("teacher", "student")},
    }
    text = summary(r)
    assert ("student - teacher mean drop +9.57 [-14.35, 37.28] pp (point difference; 95% over components) "
            "(the interval includes 0)") in text
    r["robustness"]["delta_mean_drop_ci95"] = [2.0, 15.0]
    assert "(the interval includes 0)" not in summary(r)
