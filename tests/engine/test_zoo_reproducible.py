"""Issue #18: zoo training in the reproducibility mode gives the same bytes whatever kernels the
machine would pick; without the mode the same settings change the bytes (so the check can fail).

"Another machine" is emulated by the outside settings that make a machine choose its kernels: the
ATen ISA (``ATEN_CPU_CAPABILITY``), MKL's ISA (``MKL_ENABLE_INSTRUCTIONS``), glibc's libm variant
(``GLIBC_TUNABLES``) and the thread count. The full retrain is ``benchmarks/zoo_reproducible.py
--full`` and the slow test in ``test_zoo.py``.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pytest
import torch

from circuitdiff import catalogue
from circuitdiff.zoo import reproducible
from circuitdiff.zoo.corpus import CorpusSize
from circuitdiff.zoo.init_student import llama_layers_to_keep
from circuitdiff.zoo.train import Recipe, train_all

TINY = Recipe(teacher_steps=4, student_steps=3, bert_teacher_steps=4, bert_student_steps=3, llama_teacher_steps=4,
              llama_student_steps=3, warmup=2,
              bert_warmup=2, batch=8, corpus=CorpusSize(ioi=60, seq_per_kind=8, qa_repeats=1, filler=30))
# What this machine picks by itself vs what an AVX2-only, two-thread, no-FMA machine would pick
MACHINE_A = {"OMP_NUM_THREADS": "1"}
MACHINE_B = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "OMP_NUM_THREADS": "2",
             "GLIBC_TUNABLES": "glibc.cpu.hwcaps=-FMA,-AVX2"}


def _outside(setting: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in reproducible.ENV and k not in reproducible.DROPPED}
    return env | setting


def _digests(root) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_mode_environment_overrides_the_machine_settings():
    env = reproducible.environment({"PATH": "/bin", "ATEN_CPU_CAPABILITY": "avx512", "OMP_NUM_THREADS": "8",
                                    "MKL_ENABLE_INSTRUCTIONS": "AVX512", "GLIBC_TUNABLES": "glibc.cpu.x86_ibt=on"})
    assert env["ATEN_CPU_CAPABILITY"] == "default" and env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == "1"
    assert env["MKL_CBWR"] == "COMPATIBLE,STRICT" and "-FMA" in env["GLIBC_TUNABLES"]
    assert "MKL_ENABLE_INSTRUCTIONS" not in env and env["PATH"] == "/bin"


def test_mode_is_applied_in_a_fresh_process_and_refused_in_this_one():
    code = ("import json, torch; from circuitdiff.zoo import reproducible; "
            "print(json.dumps(reproducible.apply()))")
    out = subprocess.run([sys.executable, "-c", code], env=reproducible.environment(_outside(MACHINE_B)),
                         capture_output=True, text=True, check=True).stdout
    applied = json.loads(out)
    assert applied["cpu_capability"] == "DEFAULT"
    assert (applied["mkldnn"], applied["threads"], applied["deterministic"]) == ("False", "1", "True")
    if not reproducible.active():  # this pytest process chose its kernels without the mode
        with pytest.raises(reproducible.ReproducibilityError, match="before torch is imported"):
            reproducible.apply()
        assert torch.backends.mkldnn.enabled  # refused before changing anything


def test_training_is_bit_identical_across_machine_settings_only_in_the_mode(tmp_path):
    for setting, outside in (("A", MACHINE_A), ("B", MACHINE_B)):
        train_all(tmp_path / f"mode-{setting}", 0, TINY, env=_outside(outside))
    a, b = _digests(tmp_path / "mode-A"), _digests(tmp_path / "mode-B")
    assert {p.split("/")[0] for p in a} == set(catalogue.TRAINED) | {"llama-teacher", "llama-student"}
    assert a == b  # every weight file, tokenizer, config and training.json
    # the Llama family shares the GPT tokenizer, and its student keeps the teacher layers that cost most
    assert a["llama-teacher/tokenizer.json"] == a["gpt-teacher/tokenizer.json"]
    meta = json.loads((tmp_path / "mode-A" / "llama-student" / "training.json").read_text())
    costs = meta["depth_pruning"]["removal_cost_per_layer"]
    assert len(costs) == TINY.teacher_layers and meta["init_from_teacher_layers"] == list(
        llama_layers_to_keep(costs, len(TINY.student_layers)))
    assert meta["kernels"]["cpu_capability"] == "DEFAULT" and meta["reproducible"] is True

    if torch.backends.cpu.get_cpu_capability() not in ("AVX2", "AVX512"):
        pytest.skip("this machine has no AVX2: settings A and B pick the same kernels without the mode")
    train_all(tmp_path / "off-A", 0, TINY, only="gpt", reproducible_mode=False, threads=1, env=_outside(MACHINE_A))
    train_all(tmp_path / "off-B", 0, TINY, only="gpt", reproducible_mode=False, threads=2, env=_outside(MACHINE_B))
    weights = "gpt-teacher/model.safetensors"
    off_a, off_b = _digests(tmp_path / "off-A"), _digests(tmp_path / "off-B")
    assert off_a[weights] != off_b[weights]  # the settings do change the kernels: the check can fail
    assert off_a["gpt-teacher/tokenizer.json"] == a["gpt-teacher/tokenizer.json"]


def test_depth_pruning_keeps_the_layers_whose_removal_costs_most():
    assert llama_layers_to_keep([0.1, 0.5, 0.05, 0.3], 2) == (1, 3)
    assert llama_layers_to_keep([0.2, 0.2, 0.2, 0.1], 2) == (0, 1)  # ties: the lower layer
