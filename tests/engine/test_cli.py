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
from circuitdiff.vocabulary import SCHEMA_VERSION

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


class _Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_progress_bar_on_a_terminal_shows_done_total_rate_and_time_left():
    import io

    from circuitdiff.progress_bar import ProgressBar

    clock, out = _Clock(), io.StringIO()
    bar = ProgressBar(out, tty=True, clock=clock)
    bar("influence:teacher", 0, 40)
    clock.t += 10
    bar("influence:teacher", 10, 40)  # 1 per second, 30 to go
    last = out.getvalue().split("\r")[-1]
    assert "influence:teacher" in last and "10/40" in last and "1.0/s" in last and "30s left" in last, last
    clock.t += 5
    bar("influence:teacher", 12, 40, eta=125.0)  # a server's own estimate wins
    assert "2m05s left" in out.getvalue().split("\r")[-1]
    bar("report", 0, 1)  # a new stage starts on its own line; the finished one stays on screen
    assert out.getvalue().count("\n") == 1
    bar.close()
    assert out.getvalue().endswith("\n")


def test_progress_bar_writes_plain_lines_when_not_a_terminal():
    import io

    from circuitdiff.progress_bar import ProgressBar

    clock, out = _Clock(), io.StringIO()
    bar = ProgressBar(out, tty=False, every=30, clock=clock)
    bar("influence:student", 0, 600)
    for i in range(1, 601):  # ten minutes of one component a second
        clock.t += 1
        bar("influence:student", i, 600)
    bar.close()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue() and "\x1b" not in out.getvalue()
    assert lines[0].endswith("influence:student (600 steps)")
    assert 15 <= len(lines) <= 25  # one every 30 s, not one per step
    assert "300/600, 1.0/s, 5m00s left" in "\n".join(lines)
    assert lines[-1].endswith("influence:student 600/600, 1.0/s, done in 10m00s")


def test_version_and_a_missing_dataset_before_any_model_loads(cli, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.startswith("circuitdiff 0.")
    # a teacher that does not exist either: had the models loaded first, that is what would be reported
    p = cli("compare", "--teacher", "/no/such/dir", "--student", "/no/such/dir", "--task", "custom",
            "--dataset", str(tmp_path / "missing.jsonl"))
    assert p.returncode == 2 and "missing.jsonl" in _one_error_line(p) and "no such file" in p.stderr


def test_compare_without_out_prints_the_summary_and_names_the_report_stage(tiny_gpt_dir, tiny_gpt_dir_b, tmp_path, cli):
    p = cli("compare", "--teacher", str(tiny_gpt_dir), "--student", str(tiny_gpt_dir_b), "--task", "sequence",
            "--task-option", "members=months", "--n-prompts", "4", "--bootstrap", "0", "--device", "cpu",
            "--report", str(tmp_path / "r.html"), cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "alignment" in p.stdout and "result:" not in p.stdout and (tmp_path / "r.html").is_file()
    stages = [l.split()[1] for l in p.stderr.splitlines() if l.strip()]
    assert stages[-2:] == ["report", "report"] and "influence:student" in stages
    assert sorted(x.name for x in tmp_path.iterdir()) == ["plots", "r.html"]  # nothing else written


def test_the_prompt_count_has_one_spelling_and_the_old_one_works():
    base = ["compare", "--teacher", "zoo:gpt-teacher", "--student", "zoo:gpt-student", "--task", "ioi"]
    assert spec_from_args(build_parser().parse_args(base + ["--n-prompts", "12"])).n_prompts == 12
    assert spec_from_args(build_parser().parse_args(base + ["--prompts", "12"])).n_prompts == 12


def test_a_zoo_name_without_its_prefix_gets_a_did_you_mean_when_the_hub_is_unreachable():
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")  # the hub unreachable
    p = subprocess.run([sys.executable, "-m", "circuitdiff.cli", "compare", "--teacher", "gpt-teacher", "--student",
                        "zoo:gpt-student", "--task", "ioi", "--n-prompts", "2", "--device", "cpu"],
                       capture_output=True, text=True, timeout=300, env=env, cwd=Path(__file__).resolve().parents[2])
    assert p.returncode == 2
    line = _one_error_line(p)
    assert "did you mean zoo:gpt-teacher?" in line and "use zoo:gpt-teacher" in line, line


def _broken_ioi_file(path: Path) -> None:
    """Nine IOI lines of which line 2 is not JSON, line 3 blank, line 5 an item whose answer no
    tokenizer reads as one token (rejected by the task layer, not by the file check)."""
    from circuitdiff.catalogue import task_items

    items = [{"prompt": it.prompt, "answer": it.answer, "distractor": it.distractor,
              "corrupted_prompt": it.corrupted_prompt} for it in task_items("ioi", {}, 7, 0)]
    lines = [json.dumps(items[0]), "{not json", "", json.dumps(items[1]),
             json.dumps({**items[2], "answer": "Qzxqwv"}), *map(json.dumps, items[3:])]
    path.write_text("\n".join(lines) + "\n")


def test_a_broken_dataset_is_dropped_line_by_line_or_refused_with_strict(zoo_gpt_pair, tmp_path, cli):
    f = tmp_path / "broken.jsonl"
    _broken_ioi_file(f)
    base = ["compare", "--teacher", zoo_gpt_pair[0], "--student", zoo_gpt_pair[1], "--task", "custom",
            "--dataset", str(f), "--n-prompts", "20", "--bootstrap", "0", "--device", "cpu"]
    strict = cli(*base, "--strict")
    assert strict.returncode == 2
    assert "1 of 8 lines invalid (line 2: not valid JSON" in _one_error_line(strict) and "--strict" in strict.stderr
    # the same words with --server, before anything is uploaded (nothing listens on this port)
    from launcher.redis_server import free_port

    remote = cli(*base, "--strict", "--server", f"http://127.0.0.1:{free_port()}")
    assert remote.returncode == 2 and _one_error_line(remote) == _one_error_line(strict)

    ran = cli(*base, "--out", str(tmp_path / "r.json"))
    assert ran.returncode == 0, ran.stderr
    warned = f"dataset {f}: 1 of 8 lines dropped as invalid (line 2: not valid JSON"
    assert f"warning: {warned}" in ran.stderr
    r = json.loads((tmp_path / "r.json").read_text())
    assert any(w.startswith(warned) for w in r["warnings"])
    assert r["schema_version"] == SCHEMA_VERSION and r["task"]["n_rejected"] == 1
    [rej] = r["task"]["rejected"]
    assert rej["line"] == 5 and rej["index"] == 2 and "Qzxqwv" in rej["reason"]  # the file's line, not the item's index
    assert "20 prompts asked for, 6 compared" in " ".join(r["warnings"])
