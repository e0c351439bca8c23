"""Influence-scan benchmark: every method in float32 and bfloat16 against the machine's matmul rate,
the screened scan against the exact one, and a warm-cache second comparison.

Run by hand (not part of `make test`):

    .venv/bin/python benchmarks/scan.py                   # CPU, 100 IOI prompts, the paper pair's shapes
    .venv/bin/python benchmarks/scan.py --quick           # 16 prompts: a smoke run
    .venv/bin/python benchmarks/scan.py --device cuda     # same figures on a GPU (fails if there is none)
    .venv/bin/python benchmarks/scan.py --only exact,screened --dtypes float32,bfloat16
    .venv/bin/python benchmarks/scan.py --only exact,peers --dtypes float32 --peers hooks,nnsight_skip

Every (method, dtype) runs in its own subprocess so each peak-memory figure is that run's own
(``resource.getrusage`` max RSS on CPU, ``torch.cuda.max_memory_allocated`` on CUDA), and each
process also times a dense matmul of its dtype, so every "fraction of the machine" figure compares
two rates measured in the same process under the same load. All figures come from one invocation
on one machine, side by side. Output: one ``name: value`` line per figure; ``load`` lines give the
machine's load average at the start and the end (the build machine is shared).

Figures, per method M in naive / exact / attribution / screened and dtype D in float32 / bfloat16:
- ``M_D_s``: both models' influence scans, wall time. ``--naive-components N`` (N >= 2) times the
  naive scan on N components per model spread over the layers, times a one-component scan as well,
  and extrapolates only the per-component part to all components (every naive component costs the
  same: one full forward of every prompt; the two fixed passes, clean and corrupted means, run once);
  the line then says so;
- ``M_D_gflops``, ``matmul_D_gflops_in_M``, ``M_D_fraction_of_matmul``: useful FLOPs (counted with
  torch's FlopCounterMode on a separate, untimed run of the same scan; exact and attribution count
  once, in float32, since every dtype runs the same operations) per second of the timed run,
  against a dense D matmul timed in the same process;
- ``speedup_M_D_vs_naive``: naive float32 time / this time; ``speedup_screened_D_vs_exact_float32``;
- ``bf16_vs_fp32_M_*``: the precision contract's figures (max |ΔI| over the clean LD scale,
  Spearman over components above 1% of the largest influence, top-10 identical);
- ``screened_vs_exact_D_*``: on the components the screened scan marks exact, max |ΔI| over the
  LD scale; whether its top-k equals the exact scan's; how many components it re-scanned;
- ``max_abs_influence_diff_rel``: exact float32 vs naive float32 (the exact scan's equality);
- ``compare_first_s``, ``compare_second_s``, ``warm_cache_ratio``: two full comparisons sharing the
  teacher (the second against a new student checkpoint), cold then warm activation cache;
- ``peak_rss_mb_M_D`` (CPU) or ``peak_cuda_mb_M_D`` (CUDA).

The ``peers`` part (issue #28 §0): the same scan written without circuitdiff (benchmarks/peers.py:
``hooks``, ``transformer_lens``, ``nnsight_trace``, ``nnsight_skip``; ``--peers`` picks them), on the
same weights and circuitdiff's own inputs and mean-ablation values, float32, each peer in its own
process on every model it covers (GPT-2; another architecture is named as not covered). A peer whose
optional dependency is missing (nnsight: ``make bench``) is skipped with a line saying so.
- ``peer_<name>_max_abs_diff_rel``: per component, mean over prompts of (ablated LD − clean LD),
  largest |difference| from circuitdiff's exact float32 scan over the mean |clean LD|, on every
  component, before any timing; above 1e-4 the peer is not timed (``peer_<name>_float32_s`` says so);
- ``peer_<name>_float32_s``: the peer's scan of the models it covers, wall time (with
  ``--naive-components N`` the three peers that run one forward per component are extrapolated as the
  naive scan is); ``peak_rss_mb_peer_<name>`` / ``peak_cuda_mb_peer_<name>``;
- ``best_peer``: the fastest peer that passed its check; ``speedup_M_float32_vs_best_peer`` for M in
  exact / screened / attribution: its time over M's float32 time on the same models.
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
sys.path.insert(1, str(REPO / "benchmarks"))  # peers.py, the implementations without circuitdiff


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
    adapters = {r: load_model(getattr(args, r), device=device, dtype=args.dtype) for r in ("teacher", "student")}
    items = task_items(args.task, {}, args.prompts, seed=0)
    task = build_task_data(items, {r: a.tokenizer for r, a in adapters.items()}, name=args.task, device=device)
    return device, adapters, task


def _peak(device) -> dict:
    import torch

    out = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if device.type == "cuda":
        out["peak_cuda_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out


def _options(args) -> dict:
    return {"screen_top": args.screen_top} if args.method == "screened" else {}


def _naive_sample(components: list, n: int) -> list:
    """n components spread evenly over the canonical order (heads row-major, then MLPs)."""
    if n <= 0 or n >= len(components):
        return list(components)
    step = len(components) / n
    return [components[int(i * step)] for i in range(n)]


def worker_scan(args) -> dict:
    """Scan both models with one method in one dtype; per-model LDs come back for the accuracy figures."""
    import torch

    from circuitdiff.scan import scan

    device, adapters, task = _setup(args)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    tokens = {r: float(task.view(r).clean.attention_mask.sum(1).float().mean()) for r in adapters}
    out = {"models": {}, "mean_tokens": tokens, "n_prompts": task.n_prompts, "dtype": args.dtype}
    total = 0.0
    for role, adapter in adapters.items():
        view = task.view(role)
        comps = adapter.components()
        timed = _naive_sample(comps, args.naive_components) if args.method == "naive" else comps
        if args.method != "naive":  # warm-up of kernels / allocator on a tiny slice, not timed
            scan(adapter, view, args.ablation, method=args.method, components=comps[:1], **_options(args))
        _sync(device)
        t0 = time.perf_counter()
        s = scan(adapter, view, args.ablation, method=args.method, batch_size=args.naive_batch, components=timed,
                 **_options(args))
        _sync(device)
        dt = time.perf_counter() - t0
        fixed = None
        if len(timed) < len(comps):
            # the naive scan's two fixed passes (clean, corrupted means) run once whatever the number of
            # components: time a one-component scan too and extrapolate only the per-component part
            _sync(device)
            t1 = time.perf_counter()
            scan(adapter, view, args.ablation, method=args.method, batch_size=args.naive_batch, components=timed[:1],
                 **_options(args))
            _sync(device)
            one = time.perf_counter() - t1
            per = max(0.0, (dt - one) / (len(timed) - 1))
            fixed = max(0.0, one - per)
            scaled = fixed + per * len(comps)
            log(f"naive fixed passes {fixed:.2f}s, {per:.3f}s per component")
        else:
            scaled = dt
        total += scaled
        out["models"][role] = {
            "seconds": scaled, "fixed_seconds": fixed, "timed_components": len(timed), "components": s.components,
            "clean_ld": s.clean_ld.tolist(), "ablated_mean": s.ablated_ld.mean(1).tolist(), "method": s.method,
            "exact": s.is_exact(), "agreement": s.agreement,
        }
        log(f"{args.method} {args.dtype} {role}: {dt:.1f}s for {len(timed)} of {len(comps)} components")
    out["seconds"] = total
    if args.flops > 0:  # the count of the same scan in float32: the same operations in another dtype
        out.update(flops=args.flops, gflops=args.flops / total / 1e9)
    elif args.method != "naive":
        out.update(_flops(args, adapters, task, total))
    out["matmul_gflops"] = _matmul_gflops(device, args.dtype)
    out.update(_peak(device))
    return out


def _flops(args, adapters, task, seconds: float) -> dict:
    """Useful FLOPs of the scan, counted on a separate, untimed run of the same scan."""
    from torch.utils.flop_counter import FlopCounterMode

    from circuitdiff.scan import scan

    counter = FlopCounterMode(display=False)
    with counter:
        for role, adapter in adapters.items():
            scan(adapter, task.view(role), args.ablation, method=args.method, **_options(args))
    flops = counter.get_total_flops()
    return {"flops": flops, "gflops": flops / seconds / 1e9}


def _matmul_gflops(device, dtype: str) -> float:
    """A dense square matmul of ``dtype`` in this process: the machine's rate for that dtype now."""
    import torch

    dt = getattr(torch, dtype)
    n = 8192 if device.type == "cuda" else 2048
    a = torch.randn(n, n, device=device, dtype=dt)
    b = torch.randn(n, n, device=device, dtype=dt)
    for _ in range(3):
        a @ b
    _sync(device)
    reps = 50 if device.type == "cuda" else (20 if dtype == "bfloat16" else 5)
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    _sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - t0) / 1e9


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


def worker_peer_inputs(args) -> dict:
    """circuitdiff's side of the peers (benchmarks/peers.py): per model, the task's tensors, the
    replacement values of the ablation and circuitdiff's exact scan, saved to ``args.peer_inputs``."""
    import torch

    import peers

    args.dtype = "float32"  # the peers are compared in float32
    device, adapters, task = _setup(args)
    saved, notes = {}, {}
    for role, adapter in adapters.items():
        why = peers.unsupported(adapter.hf_model)
        if why:
            notes[role] = why
            continue
        saved[role] = peers.prepare(adapter, task.view(role), getattr(args, role), args.ablation).to_dict()
    torch.save(saved, args.peer_inputs)
    return {"roles": list(saved), "skipped": notes, "n_prompts": task.n_prompts}


def worker_peer(args) -> dict:
    """One peer (benchmarks/peers.py) on every model it covers: checked against circuitdiff's exact scan
    on the components it is timed on, then timed if the check passed."""
    import torch

    import peers

    inputs = torch.load(args.peer_inputs, weights_only=True)
    out: dict = {"peer": args.peer, "roles": {}}
    for role, d in inputs.items():
        out["roles"][role] = peers.run_role(args.peer, peers.ScanInputs.from_dict(d), device=args.device,
                                            batch_size=args.naive_batch, timed_components=args.naive_components,
                                            log=log)
    out.update(_peak(torch.device(args.device)))
    return out


WORKERS = {"scan": worker_scan, "compare": worker_compare, "peer_inputs": worker_peer_inputs, "peer": worker_peer}
"""The subprocess entry points (``--worker``), each printing its figures as one JSON line."""


# ----------------------------------------------------------------------------- driver side
def run_worker(args, kind: str, method: str | None = None, dtype: str = "float32", flops: int = 0,
               extra: tuple[str, ...] = (), fatal: bool = True) -> dict | None:
    """One worker subprocess; its JSON. A failing worker ends the benchmark, or with ``fatal=False``
    gives None (a peer that crashes is reported as such, the other figures still come)."""
    cmd = [sys.executable, __file__, "--worker", kind, "--device", args.device, "--prompts", str(args.prompts),
           "--teacher", args.teacher, "--student", args.student, "--task", args.task, "--ablation", args.ablation,
           "--naive-batch", str(args.naive_batch), "--naive-components", str(args.naive_components),
           "--screen-top", str(args.screen_top), "--dtype", dtype, "--flops", str(flops), *extra]
    if method:
        cmd += ["--method", method]
    env = dict(os.environ, CIRCUITDIFF_CACHE="0")  # scans are measured uncached; compare has its own
    if kind.startswith("peer"):  # transformer_lens.patching draws a progress bar per call
        env["TQDM_DISABLE"] = "1"
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, env=env, text=True)
    if proc.returncode != 0:
        if not fatal:
            log(f"worker {kind} {method or ''} failed with exit code {proc.returncode}")
            return None
        raise SystemExit(f"benchmark worker {kind} {method or ''} {dtype} failed with exit code {proc.returncode}")
    log(f"worker {kind} {method or ''} {dtype} done in {time.perf_counter() - t0:.0f}s")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def influences(r: dict) -> dict[str, float]:
    """role:component -> influence (|mean ablated LD - mean clean LD|) of a scan worker's output."""
    out = {}
    for role, m in r["models"].items():
        c = sum(m["clean_ld"]) / len(m["clean_ld"])
        out.update({f"{role}:{cid}": abs(x - c) for cid, x in zip(m["components"], m["ablated_mean"])})
    return out


def ld_scale(r: dict) -> float:
    """The clean LD scale: the larger of the two models' mean |LD_clean|."""
    return max(sum(abs(x) for x in m["clean_ld"]) / len(m["clean_ld"]) for m in r["models"].values())


def influence_error(a: dict, b: dict) -> tuple[float, float]:
    """(max |influence_a - influence_b| over both models, the clean LD scale of b)."""
    ia, ib = influences(a), influences(b)
    common = [c for c in ib if c in ia]  # a naive scan timed on a sample covers only that sample
    return max(abs(ia[c] - ib[c]) for c in common), ld_scale(b)


def spearman_vs(a: dict, b: dict) -> float:
    from circuitdiff.scan.attribution import spearman

    ia, ib = influences(a), influences(b)
    common = [c for c in ib if c in ia]
    return spearman([ia[c] for c in common], [ib[c] for c in common])


def by_kind_vs(a: dict, ref: dict, k: int = 10) -> dict[str, str]:
    """Agreement of ``a``'s influences with ``ref``'s separately for heads and MLPs, per model: Spearman,
    top-k overlap, max |error| over the clean LD scale (#28 §1)."""
    from circuitdiff.scan.attribution import agreement_by_kind

    ia, ib, scale = influences(a), influences(ref), ld_scale(ref)
    out: dict[str, str] = {}
    for role in ref["models"]:
        pre = role + ":"
        by = agreement_by_kind({c[len(pre):]: v for c, v in ia.items() if c.startswith(pre)},
                               {c[len(pre):]: v for c, v in ib.items() if c.startswith(pre)}, top_k=k, scale=scale)
        for kind, g in by.items():
            out[f"{role}_{kind}"] = (f"spearman {g['spearman']:.3f}, top-{g['top_k']} overlap {g['top_k_overlap']:.2f}, "
                                     f"max error {g['max_abs_error_rel']:.3g} of the LD scale ({g['n_checked']} compared)")
    return out


def precision_vs(low: dict, ref: dict) -> dict:
    """The precision contract's figures per model, worst over the two (circuitdiff.scan.precision)."""
    from circuitdiff.scan.precision import precision_figures
    from circuitdiff.vocabulary import PRECISION_CONTRACTS

    k = PRECISION_CONTRACTS["bfloat16"]["top_k_identical"]
    il, ir, scale = influences(low), influences(ref), ld_scale(ref)
    rel, rho, top, meets = 0.0, 1.0, True, True
    for role in ref["models"]:
        pre = role + ":"
        f = precision_figures({c: v for c, v in ir.items() if c.startswith(pre)},
                              {c: v for c, v in il.items() if c.startswith(pre)}, scale)
        rel, rho = max(rel, f["max_rel"]), min(rho, f["spearman"])
        top, meets = top and f["top_k_identical"], meets and f["meets"]
    return {"max_abs_influence_diff_rel": rel, "spearman": rho, f"top{k}_identical": top, "meets_contract": meets}


def screened_vs(scr: dict, ex: dict, k: int) -> dict:
    """Screened against the full exact scan: max |ΔI| on the components marked exact (over the LD
    scale), the top-k per model identical, how many components were re-scanned."""
    i_s, i_e, scale = influences(scr), influences(ex), ld_scale(ex)
    flags = {f"{role}:{c}": f for role, m in scr["models"].items() for c, f in zip(m["components"], m["exact"])}
    worst = max(abs(i_s[c] - i_e[c]) for c in i_e if flags[c])
    top = True
    for role in ex["models"]:
        keys = [c for c in i_e if c.startswith(role + ":")]
        kk = min(k, len(keys))
        top = top and set(sorted(keys, key=lambda c: -i_s[c])[:kk]) == set(sorted(keys, key=lambda c: -i_e[c])[:kk])
    n_exact = {role: sum(m["exact"]) for role, m in scr["models"].items()}
    n_all = {role: len(m["exact"]) for role, m in scr["models"].items()}
    est_off = max((abs(i_s[c] - i_e[c]) for c in i_e if not flags[c]), default=0.0)
    margins = {role: m["agreement"]["error_margin"] for role, m in scr["models"].items()}
    return {"max_exact_diff_rel": worst / scale, f"top{k}_identical": top,
            "n_exact": ", ".join(f"{r} {n_exact[r]}/{n_all[r]}" for r in n_exact),
            "max_estimate_error_rel": est_off / scale,
            "error_margin_rel": ", ".join(f"{r} {margins[r] / scale:.3g}" for r in margins)}


METHODS = ("naive", "exact", "attribution", "screened")


def run_peers(args, res: dict, add) -> dict:
    """The peers part (benchmarks/peers.py): circuitdiff's inputs once, then each peer in its own
    process, checked before it is timed; then the best peer against circuitdiff's methods (``res``)."""
    import peers

    names = [n for n in args.peers.split(",") if n]
    for n in names:
        if n not in peers.PEERS:
            raise SystemExit(f"unknown peer {n!r}; choose from {', '.join(peers.PEERS)}")
    runnable = []
    for n in names:
        why = peers.missing_dependency(n)
        if why:  # an optional dependency missing: said, never a crash
            add(f"peer_{n}", f"skipped ({why})")
        else:
            runnable.append(n)
    if not runnable:
        add("best_peer", "none (no peer could run)")
        return {}
    out: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "peer_inputs.pt")
        info = run_worker(args, "peer_inputs", extra=("--peer-inputs", path))
        if not res:
            add("prompts", info["n_prompts"])
        for role, why in info["skipped"].items():
            add(f"peers_{role}", f"not scanned by the peers ({why})")
        if not info["roles"]:
            add("best_peer", "none (the peers cover neither model of this pair)")
            return {}
        for n in runnable:
            r = run_worker(args, "peer", extra=("--peer", n, "--peer-inputs", path), fatal=False)
            if r is None:
                add(f"peer_{n}", "failed (its worker exited with an error, see the log above); not timed")
                continue
            out[n] = r
    for k, v in peer_report(out, res, info["skipped"]):
        add(k, v)
    return out


def peer_report(out: dict[str, dict], res: dict, not_covered: dict[str, str] | None = None
                ) -> list[tuple[str, str]]:
    """The peers' figures from their workers' results ``out`` (peer -> {"roles": role -> the dict of
    peers.run_role}): each peer's equality figure, its time only if every model passed the check,
    the fastest that passed, and circuitdiff's float32 methods in ``res`` against it on the same models.
    ``not_covered``: role -> why the peers do not scan that model (named in every time line)."""
    import peers

    tol = peers.TOLERANCE
    lines: list[tuple[str, str]] = []
    passed: dict[str, tuple[float, list[str]]] = {}
    for n, r in out.items():
        roles = r["roles"]
        figs = {role: m["max_abs_diff_rel"] for role, m in roles.items() if "max_abs_diff_rel" in m}
        skipped = {**(not_covered or {}), **{role: m["skipped"] for role, m in roles.items() if "skipped" in m}}
        if not figs:
            lines.append((f"peer_{n}", f"not run ({'; '.join(f'{k}: {v}' for k, v in skipped.items())})"))
            continue
        detail = ", ".join(f"{role} {v:.3g}" for role, v in figs.items())
        lines.append((f"peer_{n}_max_abs_diff_rel",
                      f"{max(figs.values()):.3g} ({detail}; limit {tol:g}, vs circuitdiff exact float32)"))
        failed = [role for role, m in roles.items() if "passed" in m and not m["passed"]]
        failed += [role for role, m in roles.items() if m.get("timed_run_max_abs_diff_rel", 0.0) > tol]
        if failed or not all("seconds" in m for m in roles.values() if "skipped" not in m):
            lines.append((f"peer_{n}_float32_s",
                          f"not timed: failed its equality check on {', '.join(failed) or 'a model'} (> {tol:g})"))
            continue
        covered = [role for role, m in roles.items() if "seconds" in m]
        note = [" and ".join(covered) + (" only" if skipped else "")]
        if skipped:
            note.append("; ".join(f"{k} not covered: {v}" for k, v in skipped.items()))
        if any(m.get("fixed_seconds") is not None for m in roles.values()):
            timed = min(m["timed_components"] for m in roles.values() if "timed_components" in m)
            note.append(f"timed on {timed} components per model, scaled to all")
        seconds = sum(roles[role]["seconds"] for role in covered)
        lines.append((f"peer_{n}_float32_s", f"{seconds:.2f} ({'; '.join(note)})"))
        passed[n] = (seconds, covered)
    if not passed:
        lines.append(("best_peer", "none (no peer ran and passed its equality check)"))
        return lines
    best = min(passed, key=lambda k: passed[k][0])
    seconds, covered = passed[best]
    lines.append(("best_peer", best))
    for method in ("exact", "screened", "attribution"):
        r = res.get((method, "float32"))
        if r is not None:
            mine = sum(r["models"][role]["seconds"] for role in covered)
            lines.append((f"speedup_{method}_float32_vs_best_peer",
                          f"{seconds / mine:.2f} ({best}, on {' and '.join(covered)})"))
    return lines


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


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
    p.add_argument("--naive-components", type=int, default=0, metavar="N",
                   help="time the naive scan on N >= 2 components per model and extrapolate its per-component part to all (0 = all)")
    p.add_argument("--naive-all-dtypes", action="store_true",
                   help="run the naive scan in every dtype (default: float32 only, the reference of the speedups)")
    p.add_argument("--screen-top", type=int, default=20, help="screened scan: screen_top")
    p.add_argument("--dtypes", default="float32,bfloat16", help="comma list of dtypes for every scan method")
    p.add_argument("--only", default="naive,exact,attribution,screened,compare,peers",
                   help="comma list of parts to run")
    p.add_argument("--peers", default="hooks,transformer_lens,nnsight_trace,nnsight_skip",
                   help="comma list of peers (benchmarks/peers.py) for the peers part")
    p.add_argument("--worker", choices=list(WORKERS), help=argparse.SUPPRESS)
    p.add_argument("--method", help=argparse.SUPPRESS)
    p.add_argument("--peer", help=argparse.SUPPRESS)
    p.add_argument("--peer-inputs", help=argparse.SUPPRESS)
    p.add_argument("--dtype", default="float32", help=argparse.SUPPRESS)
    p.add_argument("--flops", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.naive_components == 1:
        p.error("--naive-components needs at least 2 (the per-component cost is measured as a difference)")
    if args.quick:
        args.prompts = min(args.prompts, 16)

    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda requested but torch.cuda.is_available() is False "
              f"(torch {torch.__version__}, CUDA build {torch.version.cuda})", file=sys.stderr)
        return 2

    if args.worker:
        print(json.dumps(WORKERS[args.worker](args)))
        return 0

    parts = set(args.only.split(","))
    dtypes = args.dtypes.split(",")
    add = lambda k, v: print(f"{k}: {v}", flush=True)  # noqa: E731
    if args.device == "cuda":
        dev = torch.cuda.get_device_name()
    else:
        model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), platform.processor() or platform.machine())
        flags = Path("/proc/cpuinfo").read_text()
        isa = [f for f in ("avx512f", "avx512_bf16", "amx_bf16") if f" {f}" in flags]
        dev = f"{model} x{os.cpu_count()} ({', '.join(isa) or 'no AVX-512/AMX'})"
    add("machine", f"{args.device} {dev}; torch {torch.__version__}; threads {torch.get_num_threads()}")
    add("load_at_start", load_average())
    add("pair", f"{args.teacher} vs {args.student}; task {args.task}; ablation {args.ablation}")
    peak_key = "peak_cuda_mb" if args.device == "cuda" else "peak_rss_mb"

    res: dict[tuple[str, str], dict] = {}
    for method in METHODS:
        for dtype in dtypes:
            if method in parts and (method != "naive" or dtype == "float32" or args.naive_all_dtypes):
                # exact and attribution run the same operations in every dtype: their FLOPs are
                # counted once (float32); the screened scan's re-scanned set can differ, so it counts its own
                same = res.get((method, "float32"), {}).get("flops", 0) if method in ("exact", "attribution") else 0
                res[method, dtype] = run_worker(args, "scan", method, dtype, flops=same)
    any_res = next(iter(res.values()), None)
    if any_res:
        add("prompts", any_res["n_prompts"])
        add("mean_tokens_per_prompt", round(sum(any_res["mean_tokens"].values()) / 2, 1))
    naive = res.get(("naive", "float32"))
    for (method, dtype), r in res.items():
        note = "" if method != "naive" or args.naive_components <= 0 else \
            f" (timed on {args.naive_components} components per model, scaled to all)"
        add(f"{method}_{dtype}_s", f"{r['seconds']:.2f}{note}")
        if "gflops" in r:
            add(f"{method}_{dtype}_gflops", round(r["gflops"], 1))
        add(f"matmul_{dtype}_gflops_in_{method}", round(r["matmul_gflops"], 1))
        if "gflops" in r:
            add(f"{method}_{dtype}_fraction_of_matmul", round(r["gflops"] / r["matmul_gflops"], 3))
        if naive is not None and (method, dtype) != ("naive", "float32"):
            add(f"speedup_{method}_{dtype}_vs_naive", round(naive["seconds"] / r["seconds"], 2))
    exact32 = res.get(("exact", "float32"))
    if naive is not None and exact32 is not None:
        err, scale = influence_error(exact32, naive)
        add("clean_ld_scale", f"{scale:.4g}")
        add("max_abs_influence_diff_rel", f"{err / scale:.3g} (exact float32 vs naive float32, on the components "
            "the naive scan ran)")
    if naive is not None and ("attribution", "float32") in res:
        add("attribution_spearman_vs_naive", round(spearman_vs(res["attribution", "float32"], naive), 3))
    ref = exact32 or naive
    for method in ("attribution", "screened"):
        if (method, "float32") in res and ref is not None:
            for k, v in by_kind_vs(res[method, "float32"], ref).items():
                add(f"{method}_float32_vs_exact_{k}", v)
    for method in METHODS:
        if (method, "float32") in res and (method, "bfloat16") in res and (method != "naive" or args.naive_components <= 0):
            for k, v in precision_vs(res[method, "bfloat16"], res[method, "float32"]).items():
                add(f"bf16_vs_fp32_{method}_{k}", f"{v:.3g}" if isinstance(v, float) else v)
    for dtype in dtypes:
        scr, ex = res.get(("screened", dtype)), res.get(("exact", dtype))
        if scr is not None and ex is not None:
            for k, v in screened_vs(scr, ex, args.screen_top).items():
                add(f"screened_vs_exact_{dtype}_{k}", f"{v:.3g}" if isinstance(v, float) else v)
        if scr is not None and exact32 is not None:
            add(f"speedup_screened_{dtype}_vs_exact_float32", round(exact32["seconds"] / scr["seconds"], 2))
    if "peers" in parts:
        for n, r in run_peers(args, res, add).items():
            res["peer_" + n, ""] = r
    if "compare" in parts:
        c = run_worker(args, "compare")
        add("compare_first_s", round(c["first"], 2))
        add("compare_second_s", round(c["second"], 2))
        add("warm_cache_ratio", round(c["second"] / c["first"], 3))
        add("compare_cache", f"first {c['first_cache']}, second {c['second_cache']}")
        res["compare", ""] = c
    for (method, dtype), r in res.items():
        if peak_key in r:
            add(f"{peak_key}_{method}{'_' + dtype if dtype else ''}", round(r[peak_key], 1))
    add("load_at_end", load_average())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
