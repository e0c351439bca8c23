"""One real comparison of the bundled GPT pair on IOI, shared by the report's test modules.

Runs the engine once per test process (a few seconds on CPU) and hands out copies of the result.
"""

from __future__ import annotations

import copy
import functools

import pytest

from circuitdiff.catalogue import zoo_path

ZOO_SPEC = {"teacher": "zoo:gpt-teacher", "student": "zoo:gpt-student", "task": "ioi", "n_prompts": 12,
            "seed": 0, "device": "cpu", "circuits": {"sweep": [10, 20, 30], "null_draws": 50}}


@functools.lru_cache(maxsize=1)
def _run() -> dict:
    from circuitdiff.pipeline import run_comparison

    return run_comparison(ZOO_SPEC).model_dump(mode="json")


def zoo_ioi_result() -> dict:
    missing = [n for n in ("gpt-teacher", "gpt-student") if not (zoo_path(n) / "config.json").exists()]
    if missing:
        pytest.fail(f"zoo models {missing} are not in circuitdiff/zoo/models: train them with `make zoo`")
    return copy.deepcopy(_run())
