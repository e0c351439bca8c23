"""Influence-scan benchmark: naive vs exact vs attribution, and a warm-cache second comparison.

Run by hand (not part of `make test`):

    .venv/bin/python benchmarks/scan.py                   # CPU, 100 IOI prompts, the paper pair's shapes
    .venv/bin/python benchmarks/scan.py --quick           # 16 prompts: a smoke run
    .venv/bin/python benchmarks/scan.py --device cuda     # same figures on a GPU (fails if there is none)

Every method runs in its own subprocess so each peak-memory figure is that method's own
(``resource.getrusage`` max RSS on CPU, ``torch.cuda.max_memory_allocated`` on CUDA). All figures
come from one invocation on one machine, side by side. Output: one ``name: value`` line per figure.

Figures (issue #6 targets in brackets):
- naive_s, exact_s, speedup_exact_vs_naive [>= 4]: both models' influence scans, wall time;
- max_abs_influence_diff_rel [<= 1e-4]: max |influence_exact - influence_naive| over every
  component of both models, divided by the clean logit-difference scale (mean |LD_clean|);
- attribution_s, speedup_attribution_vs_naive [>= 40];
- compare_first_s, compare_second_s, warm_cache_ratio [<= 0.5]: two full comparisons sharing the
  teacher (the second against a new student checkpoint), cold then warm activation cache;
- exact_gflops, matmul_gflops, exact_fraction_of_matmul: useful FLOPs of the exact scan (counted
  with torch's FlopCounterMode on a separate run) per second of its timed run, against a dense
  float32 matmul timed in the same process;
- peak_rss_mb_<method> (CPU) or peak_cuda_mb_<method> (CUDA).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def log(msg: str) -> None:
    print(f"# {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- worker side
def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def _setup(args):
    import torch

    from circuitdiff.models.loading import load_model
    from circuitdiff.tasks.dataset import build_task_data
    from circuitdiff.catalogue import task_items

    torch.manual_seed(0)
    device = torch.device(args.device)
    adapters = {r: load_model(getattr(args, r), device=device, dtype="float32") for r in ("teacher", "student")}
    items = task_items(args.task, {}, args.prompts, seed=0)
    task = build_task_data(items, {r: a.tokenizer for r, a in adapters.items()}, name=args.task, device=device)
    return device, adapters, task


def _peak(device) -> dict:
    import torch

    out = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if device.type == "cuda":
        out["peak_cuda_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out


def worker_scan(args) -> dict:
    """Scan both models with one method; per-model LDs come back for the accuracy figures."""
    import torch

    from circuitdiff.scan import scan

    device, adapters, task = _setup(args)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    tokens = {r: float(task.view(r).clean.attention_mask.sum(1).float().mean()) for r in adapters}
    out = {"models": {}, "mean_tokens": tokens, "n_prompts": task.n_prompts}
    total = 0.0
    for role, adapter in adapters.items():
        view = task.view(role)
        if args.method != "naive":  # warm-up of kernels / allocator on a tiny slice, not timed
            scan(adapter, view, args.ablation, method=args.method, components=adapter.components()[:1])
        _sync(device)
        t0 = time.perf_counter()
        s = scan(adapter, view, args.ablation, method=args.method, batch_size=args.naive_batch)
        _sync(device)
        dt = time.perf_counter() - t0
        total += dt
        out["models"][role] = {
            "seconds": dt, "components": s.components, "clean_ld": s.clean_ld.tolist(),
            "ablated_mean": s.ablated_ld.mean(1).tolist(), "method": s.method,
        }
        log(f"{args.method} {role}: {dt:.1f}s for {len(s.components)} components")
    out["seconds"] = total
    if args.method == "exact":
        out.update(_flops(args, adapters, task, device, total))
    out.update(_peak(device))
    return out


def _flops(args, adapters, task, device, seconds: float) -> dict:
    """Useful FLOPs of the exact scan (counted on a separate, untimed run) and dense matmul speed."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from circuitdiff.scan import scan

    counter = FlopCounterMode(display=False)
    with counter:
        for role, adapter in adapters.items():
            scan(adapter, task.view(role), args.ablation, method="exact")
    flops = counter.get_total_flops()
    n = 4096 if device.type == "cuda" else 2048
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    for _ in range(2):
        a @ b
    _sync(device)
    reps = 50 if device.type == "cuda" else 5
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    _sync(device)
    mm = 2 * n**3 * reps / (time.perf_counter() - t0) / 1e9
    return {"exact_flops": flops, "exact_gflops": flops / seconds / 1e9, "matmul_gflops": mm}


def worker_compare(args) -> dict:
    """Two comparisons sharing the teacher with one activation cache: cold, then warm with a new
    student checkpoint (the scheduler's case: every new distillation run against its teacher)."""
    import torch

    from circuitdiff.cache import ActivationCache
    from circuitdiff.pipeline import run_comparison

    with tempfile.TemporaryDirectory() as tmp:
        new_student = Path(tmp) / "student-v2"
        _save_new_student(args.student, new_student, args.device)
        cache = ActivationCache(Path(tmp) / "cache")
        if args.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        base = {"teacher": args.teacher, "task": args.task, "n_prompts": args.prompts, "ablation": args.ablation,
                "scan": "exact", "bootstrap": 0, "device": args.device}
        t0 = time.perf_counter()
        first = run_comparison({**base, "student": args.student}, cache=cache)
        t1 = time.perf_counter()
        second = run_comparison({**base, "student": str(new_student)}, cache=cache)
        t2 = time.perf_counter()
    log(f"compare: first {t1 - t0:.1f}s {first.scan.cache}, second {t2 - t1:.1f}s {second.scan.cache}")
    return {
        "first": t1 - t0, "second": t2 - t1, "first_cache": first.scan.cache, "second_cache": second.scan.cache,
        "first_timings": first.timings, "second_timings": second.timings, **_peak(torch.device(args.device)),
    }


def _save_new_student(student: str, out: Path, device: str) -> None:
    """A second student checkpoint (same architecture and tokenizer, other weights) on disk."""
    import torch

    from circuitdiff.models.loading import load_model

    adapter = load_model(student, device="cpu")
    hf = adapter.bridge.original_model if hasattr(adapter, "bridge") else adapter.hf_model
    from transformers import GPT2LMHeadModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(12345)
        fresh = GPT2LMHeadModel(hf.config)
    fresh.save_pretrained(out, safe_serialization=True)
    adapter.tokenizer.save_pretrained(out)


# ----------------------------------------------------------------------------- driver side
def run_worker(args, kind: str, method: str | None = None) -> dict:
    cmd = [sys.executable, __file__, "--worker", kind, "--device", args.device, "--prompts", str(args.prompts),
           "--teacher", args.teacher, "--student", args.student, "--task", args.task, "--ablation", args.ablation,
           "--naive-batch", str(args.naive_batch)]
    if method:
        cmd += ["--method", method]
    env = dict(os.environ, CIRCUITDIFF_CACHE="0")  # scans are measured uncached; compare has its own
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, env=env, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"benchmark worker {kind} {method or ''} failed with exit code {proc.returncode}")
    log(f"worker {kind} {method or ''} done in {time.perf_counter() - t0:.0f}s")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def influence_error(a: dict, b: dict) -> tuple[float, float]:
    """(max |influence_a - influence_b| over both models, the clean LD scale)."""
    worst, scale = 0.0, 0.0
    for role in a["models"]:
        ma, mb = a["models"][role], b["models"][role]
        assert ma["components"] == mb["components"]
        ca = sum(ma["clean_ld"]) / len(ma["clean_ld"])
        cb = sum(mb["clean_ld"]) / len(mb["clean_ld"])
        scale = max(scale, sum(abs(x) for x in mb["clean_ld"]) / len(mb["clean_ld"]))
        for x, y in zip(ma["ablated_mean"], mb["ablated_mean"]):
            worst = max(worst, abs(abs(x - ca) - abs(y - cb)))
    return worst, scale


def spearman_vs(a: dict, b: dict) -> float:
    from circuitdiff.scan.attribution import spearman

    xs, ys = [], []
    for role in a["models"]:
        ma, mb = a["models"][role], b["models"][role]
        ca = sum(ma["clean_ld"]) / len(ma["clean_ld"])
        cb = sum(mb["clean_ld"]) / len(mb["clean_ld"])
        xs += [abs(x - ca) for x in ma["ablated_mean"]]
        ys += [abs(y - cb) for y in mb["ablated_mean"]]
    return spearman(xs, ys)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--prompts", type=int, default=100)
    p.add_argument("--quick", action="store_true", help="16 prompts: a smoke run of every figure")
    p.add_argument("--teacher", default="zoo:gpt2-small-random")
    p.add_argument("--student", default="zoo:distilgpt2-random")
    p.add_argument("--task", default="ioi")
    p.add_argument("--ablation", default="mean", choices=["zero", "mean", "resample"])
    p.add_argument("--naive-batch", type=int, default=32, help="prompts per forward in the naive scan")
    p.add_argument("--only", default="naive,exact,attribution,compare", help="comma list of parts to run")
    p.add_argument("--worker", choices=["scan", "compare"], help=argparse.SUPPRESS)
    p.add_argument("--method", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.quick:
        args.prompts = min(args.prompts, 16)

    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda requested but torch.cuda.is_available() is False "
              f"(torch {torch.__version__}, CUDA build {torch.version.cuda})", file=sys.stderr)
        return 2

    if args.worker == "scan":
        print(json.dumps(worker_scan(args)))
        return 0
    if args.worker == "compare":
        print(json.dumps(worker_compare(args)))
        return 0

    parts = set(args.only.split(","))
    figures: list[tuple[str, object]] = []
    add = lambda k, v: (figures.append((k, v)), print(f"{k}: {v}", flush=True))  # noqa: E731
    dev = torch.cuda.get_device_name() if args.device == "cuda" else f"{platform.processor() or platform.machine()} x{os.cpu_count()}"
    add("machine", f"{args.device} {dev}; torch {torch.__version__}; threads {torch.get_num_threads()}")
    add("pair", f"{args.teacher} vs {args.student}; task {args.task}; ablation {args.ablation}")
    peak_key = "peak_cuda_mb" if args.device == "cuda" else "peak_rss_mb"

    res = {}
    for method in ("naive", "exact", "attribution"):
        if method in parts:
            res[method] = run_worker(args, "scan", method)
    any_res = next(iter(res.values()), None)
    if any_res:
        add("prompts", any_res["n_prompts"])
        add("mean_tokens_per_prompt", round(sum(any_res["mean_tokens"].values()) / 2, 1))
    for method, r in res.items():
        add(f"{method}_s", round(r["seconds"], 2))
    if "naive" in res and "exact" in res:
        add("speedup_exact_vs_naive", round(res["naive"]["seconds"] / res["exact"]["seconds"], 2))
        err, scale = influence_error(res["exact"], res["naive"])
        add("clean_ld_scale", f"{scale:.4g}")
        add("max_abs_influence_diff", f"{err:.3g}")
        add("max_abs_influence_diff_rel", f"{err / scale:.3g}" if scale > 0 else "nan")
    if "naive" in res and "attribution" in res:
        add("speedup_attribution_vs_naive", round(res["naive"]["seconds"] / res["attribution"]["seconds"], 1))
        add("attribution_spearman_vs_naive", round(spearman_vs(res["attribution"], res["naive"]), 3))
    if "exact" in res:
        e = res["exact"]
        add("exact_gflops", round(e["exact_gflops"], 1))
        add("matmul_gflops", round(e["matmul_gflops"], 1))
        add("exact_fraction_of_matmul", round(e["exact_gflops"] / e["matmul_gflops"], 3))
    if "compare" in parts:
        c = run_worker(args, "compare")
        add("compare_first_s", round(c["first"], 2))
        add("compare_second_s", round(c["second"], 2))
        add("warm_cache_ratio", round(c["second"] / c["first"], 3))
        add("compare_cache", f"first {c['first_cache']}, second {c['second_cache']}")
        res["compare"] = c
    for method, r in res.items():
        if peak_key in r:
            add(f"{peak_key}_{method}", round(r[peak_key], 1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
