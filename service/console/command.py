"""A resolved spec as the ``circuitdiff compare`` command line that runs it again.

The flags are the CLI's (``circuitdiff.cli.add_compare``); ``tests/service/test_console_command.py``
parses the line back with the CLI's own parser and checks it gives the same spec. Fields the CLI has
no flag for (a control's revision, ``circuits.resamples``) are left to the CLI's default.
"""

from __future__ import annotations

import shlex
from typing import Any

# spec field -> flag, for the fields that map one to one
FLAGS = {
    "task": "--task", "dataset": "--dataset", "preset": "--preset", "ablation": "--ablation",
    "matching": "--matching", "mlp_similarity": "--mlp-similarity", "head_threshold": "--head-threshold",
    "mlp_threshold": "--mlp-threshold", "n_prompts": "--prompts", "seed": "--seed", "bos": "--bos",
    "bootstrap": "--bootstrap", "chance_draws": "--chance-draws", "device": "--device", "dtype": "--dtype",
    "scan": "--scan", "metric": "--metric", "attribution_check": "--attribution-check", "screen_top": "--screen-top",
    "estimator": "--estimator",
}


def _num(x: Any) -> str:
    return str(int(x)) if isinstance(x, float) and x.is_integer() else str(x)


def compare_argv(spec: dict[str, Any], out: str = "result.json") -> list[str]:
    argv = ["circuitdiff", "compare"]
    for role in ("teacher", "student"):
        ref = spec[role]
        argv += [f"--{role}", ref["id"]]
        if ref.get("revision"):
            argv += [f"--{role}-revision", ref["revision"]]
    for ref in spec.get("controls") or []:
        argv += ["--control", ref["id"]]
    for field, flag in FLAGS.items():
        if spec.get(field) is not None:
            argv += [flag, _num(spec[field])]
    for k, v in (spec.get("task_options") or {}).items():
        argv += ["--task-option", f"{k}={v}"]
    if spec.get("duplicate_unmatched") is not None:
        argv.append("--duplicate-unmatched" if spec["duplicate_unmatched"] else "--no-duplicate-unmatched")
    circuits = spec.get("circuits")
    if circuits is not None:
        argv.append("--circuits")
        if circuits.get("threshold") is not None:
            argv += ["--circuit-threshold", _num(circuits["threshold"])]
        if circuits.get("sweep"):
            argv += ["--circuit-sweep", ",".join(_num(t) for t in circuits["sweep"])]
        if circuits.get("null_draws") is not None:
            argv += ["--circuit-null-draws", _num(circuits["null_draws"])]
    return argv + ["--out", out]


def compare_command(spec: dict[str, Any]) -> str:
    return shlex.join(compare_argv(spec))
