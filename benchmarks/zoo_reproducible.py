"""Zoo reproducibility mode (issue #18): bytes under different machine settings, and the mode's cost.

Run by hand (not part of `make test`):

    .venv/bin/python benchmarks/zoo_reproducible.py --tiny       # the test's tiny recipe: bytes only
    .venv/bin/python benchmarks/zoo_reproducible.py              # short recipe (60 + 30 steps per model)
    .venv/bin/python benchmarks/zoo_reproducible.py --full       # the real recipe, i.e. four whole retrains

Trains the zoo four times, side by side in one invocation: in the reproducibility mode and without it,
each under two outside settings that select different kernels on any AVX2/AVX-512 x86 machine:

- ``A``: the machine as it comes (ATen's best ISA, MKL's own choice, FMA libm), one thread;
- ``B``: ``ATEN_CPU_CAPABILITY=avx2``, ``MKL_ENABLE_INSTRUCTIONS=AVX2``, libm without FMA
  (``GLIBC_TUNABLES``), ``OMP_NUM_THREADS=2`` and ``--threads 2`` — what another x86 machine
  (an AVX2-only one, or one configured with two threads per family) would pick.

Prints, per model, the sha256 of ``model.safetensors`` in each run and the largest absolute weight
difference B vs A, with and without the mode; then CPU seconds per family in each run and the
mode's cost as the ratio mode / no mode under setting A (measured in the same invocation). Then
the cost of each pinned setting alone: CPU seconds per training step of the gpt-teacher shape
(batch 64 x 24 tokens, AdamW), in a fresh process per setting, ratios to the machine's own kernels.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from safetensors.numpy import load_file  # noqa: E402

from circuitdiff.zoo.corpus import CorpusSize  # noqa: E402
from circuitdiff.zoo.reproducible import DROPPED, ENV  # noqa: E402
from circuitdiff.zoo.train import Recipe, train_all  # noqa: E402

SETTING_B = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "OMP_NUM_THREADS": "2",
             "GLIBC_TUNABLES": "glibc.cpu.hwcaps=-FMA,-AVX2"}


def outside(setting: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ENV and k not in DROPPED}
    return env | (SETTING_B if setting == "B" else {"OMP_NUM_THREADS": "1"})


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def max_abs_diff(a: Path, b: Path) -> float:
    wa, wb = load_file(a), load_file(b)
    return max(float(abs(wa[k].astype("float64") - wb[k]).max()) for k in wa)


STEP_SETTINGS = {  # name -> environment additions; "mode" applies the whole mode
    "machine": {},
    "aten_default": {"ATEN_CPU_CAPABILITY": "default"},
    "mkl_compatible": {"MKL_CBWR": "COMPATIBLE,STRICT"},
    "mode": dict(ENV),
}
STEP_CODE = """
import json, time, torch
from transformers import GPT2Config, GPT2LMHeadModel
from circuitdiff.zoo import reproducible
if reproducible.active():
    reproducible.apply()
else:
    torch.set_num_threads(1); torch.use_deterministic_algorithms(True)
torch.manual_seed(0)
m = GPT2LMHeadModel(GPT2Config(vocab_size=1310, n_positions=128, n_embd=128, n_layer=4, n_head=4,
                               resid_pdrop=0, embd_pdrop=0, attn_pdrop=0))
opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
ids = torch.randint(1310, (64, 24), generator=torch.Generator().manual_seed(0))
def step():
    loss = m(input_ids=ids, labels=ids).loss; opt.zero_grad(); loss.backward(); opt.step()
step()
c = time.process_time()
for _ in range(N): step()
print(json.dumps({"capability": torch.backends.cpu.get_cpu_capability(), "cpu_s": (time.process_time() - c) / N}))
"""


def step_costs(n_steps: int = 8, repeats: int = 2) -> dict[str, float]:
    """CPU s per gpt-teacher-shaped step under each setting; settings interleaved, best of ``repeats``."""
    best: dict[str, float] = {}
    for _ in range(repeats):
        for name, extra in STEP_SETTINGS.items():
            env = outside("A") | extra
            out = subprocess.run([sys.executable, "-c", f"N = {n_steps}\n" + STEP_CODE], env=env, cwd=REPO,
                                 capture_output=True, text=True, check=True).stdout
            best[name] = min(best.get(name, float("inf")), json.loads(out.splitlines()[-1])["cpu_s"])
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true", help="the real recipe (two whole retrains per mode)")
    ap.add_argument("--tiny", action="store_true", help="the test's tiny recipe: bytes, no training cost")
    ap.add_argument("--out", type=Path, default=None, help="keep the runs here (default: a temp dir)")
    args = ap.parse_args()
    if args.full:
        r = Recipe()
    elif args.tiny:
        r = Recipe(teacher_steps=4, student_steps=3, bert_teacher_steps=4, bert_student_steps=3, llama_teacher_steps=4,
                   llama_student_steps=3, warmup=2, bert_warmup=2, batch=8,
                   corpus=CorpusSize(ioi=60, seq_per_kind=8, qa_repeats=1, filler=30))
    else:
        r = Recipe(teacher_steps=60, student_steps=30, bert_teacher_steps=60, bert_student_steps=30,
                   llama_teacher_steps=60, llama_student_steps=30)
    root = args.out or Path(tempfile.mkdtemp(prefix="zoo_repro_"))
    runs = {("mode", "A"): dict(reproducible_mode=True, threads=1),
            ("mode", "B"): dict(reproducible_mode=True, threads=1),
            ("off", "A"): dict(reproducible_mode=False, threads=1),
            ("off", "B"): dict(reproducible_mode=False, threads=2)}
    timings = {}
    for (mode, setting), kw in runs.items():
        timings[mode, setting] = train_all(root / f"{mode}-{setting}", 0, r, env=outside(setting), **kw)
    print(f"recipe: {'full' if args.full else 'tiny' if args.tiny else 'short'}; runs under {root}")
    names = sorted(p.parent.name for p in (root / "mode-A").glob("*/model.safetensors"))
    for name in names:
        for mode in ("mode", "off"):
            a, b = (root / f"{mode}-{s}" / name / "model.safetensors" for s in ("A", "B"))
            print(f"{name} {mode}: sha256 A {sha(a)[:16]} B {sha(b)[:16]} identical {sha(a) == sha(b)} "
                  f"max_abs_diff {max_abs_diff(a, b):.3g}")
    costs = step_costs()
    for name, c in costs.items():
        print(f"step_cpu_s_{name}: {c:.3f}  ratio_to_machine: {c / costs['machine']:.2f}")
    for key, t in timings.items():
        print(f"cpu_s {key[0]}-{key[1]}: " + json.dumps({k: round(v, 1) for k, v in t.items() if k.endswith("cpu")}))
    if args.tiny:
        return
    for name in names:
        ratio = timings["mode", "A"][f"{name}-cpu"] / timings["off", "A"][f"{name}-cpu"]
        print(f"mode_cost_ratio_{name} (training cpu s, mode / off, setting A): {ratio:.2f}")
    for fam in ("gpt", "bert", "llama"):
        ratio = timings["mode", "A"][f"{fam}-cpu"] / timings["off", "A"][f"{fam}-cpu"]
        print(f"mode_cost_ratio_{fam} (cpu s, mode / off, setting A): {ratio:.2f}")


if __name__ == "__main__":
    main()
