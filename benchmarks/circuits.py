"""Circuit-search benchmark: evaluations per second of the exact machinery vs the naive reference.

Run by hand (not part of `make test`):

    .venv/bin/python benchmarks/circuits.py                 # CPU, GPT-2-small-shaped pair, 32 IOI prompts
    .venv/bin/python benchmarks/circuits.py --quick         # 8 prompts, fewer sets: a smoke run
    .venv/bin/python benchmarks/circuits.py --device cuda   # the same on a GPU

One evaluation = the mean logit difference with one set of components ablated at once
(circuitdiff.scan.circuits.CircuitEvaluator). The workload is what a pruning search asks: sets of
growing size, drawn with a fixed seed, whose lowest ablated layer is spread over the model, scored
in batches of ``--batch`` sets (a speculative look-ahead) and one at a time. Both methods score the
same sets in the same process, side by side; random weights (the zoo's ``*-random`` models) give
the real shapes, and the numbers need not mean anything. Figures, one ``name: value`` line each:

- ``<role>_naive_evals_per_s``, ``<role>_exact_evals_per_s``, ``<role>_exact_batched_evals_per_s``;
- ``<role>_speedup_exact_vs_naive`` (one at a time) and ``<role>_speedup_exact_batched_vs_naive``;
- ``<role>_max_abs_diff_rel``: max |exact − naive| over the sets / mean |LD_clean| (must be ≤ 1e-5);
- ``zoo_search_s``, ``zoo_evaluations``: a full search (T = 20, mean ablation) on the trained zoo
  GPT teacher, for scale.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def log(msg: str) -> None:
    print(f"# {msg}", file=sys.stderr, flush=True)


def workload(components: list[str], n_sets: int, seed: int) -> list[frozenset[str]]:
    """Ablated sets as a search meets them: a growing removed core plus one trial component."""
    import random

    rng = random.Random(seed)
    order = components[:]
    rng.shuffle(order)
    sets = []
    for i in range(n_sets):
        core = order[: int(len(order) * 0.8 * i / max(1, n_sets - 1))]
        trial = rng.choice(order)
        sets.append(frozenset(core) | {trial})
    return sets


def timed(fn, device) -> tuple[float, object]:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0, out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--prompts", type=int, default=32)
    p.add_argument("--sets", type=int, default=48, help="ablated sets per method and model")
    p.add_argument("--batch", type=int, default=16, help="sets per batched call (the search's largest look-ahead)")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--teacher", default="zoo:gpt2-small-random")
    p.add_argument("--student", default="zoo:distilgpt2-random")
    p.add_argument("--task", default="ioi")
    p.add_argument("--ablation", default="mean", choices=["zero", "mean", "resample"])
    args = p.parse_args()
    if args.quick:
        args.prompts, args.sets = 8, 16

    import torch

    from circuitdiff.catalogue import task_items
    from circuitdiff.models.loading import load_model
    from circuitdiff.scan.circuits import CircuitEvaluator, search
    from circuitdiff.tasks.dataset import build_task_data

    if args.device == "cuda" and not torch.cuda.is_available():
        print("CUDA is not available", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    print(f"machine: {args.device} {platform.machine()} x{torch.get_num_threads()} threads; torch {torch.__version__}")
    print(f"pair: {args.teacher} vs {args.student}; task {args.task}; {args.prompts} prompts; ablation {args.ablation}; "
          f"{args.sets} sets, batches of {args.batch}")
    adapters = {r: load_model(getattr(args, r), device=device) for r in ("teacher", "student")}
    task = build_task_data(task_items(args.task, {}, args.prompts, seed=0),
                           {r: a.tokenizer for r, a in adapters.items()}, name=args.task, device=device)
    for role, adapter in adapters.items():
        view = task.view(role)
        sets = workload([c.id for c in adapter.components()], args.sets, seed=0)
        res = {}
        for name, method, batch in (("naive", "naive", 1), ("exact", "exact", 1), ("exact_batched", "exact", args.batch)):
            ev = CircuitEvaluator(adapter, view, args.ablation, method=method)  # clean pass outside the timing
            ev.score_ablated([sets[0]])  # warm-up, then a fresh memo
            ev.memo = {frozenset(): ev.clean_ld}
            dt, scores = timed(lambda: [x for k in range(0, len(sets), batch)
                                        for x in ev.score_ablated(sets[k:k + batch])], device)
            res[name] = (dt, scores, ev)
            print(f"{role}_{name}_evals_per_s: {len(sets) / dt:.2f}")
            log(f"{role} {name} ({ev.method}): {dt:.2f}s for {len(sets)} sets")
        print(f"{role}_speedup_exact_vs_naive: {res['naive'][0] / res['exact'][0]:.2f}")
        print(f"{role}_speedup_exact_batched_vs_naive: {res['naive'][0] / res['exact_batched'][0]:.2f}")
        scale = float(res["naive"][2].clean_lds.abs().mean())
        diff = max(abs(a - b) for a, b in zip(res["naive"][1], res["exact_batched"][1]))
        print(f"{role}_max_abs_diff_rel: {diff / scale:.2e}")

    zoo = load_model("zoo:gpt-teacher", device=device)
    ztask = build_task_data(task_items("sequence", {}, args.prompts, seed=0),
                            {"teacher": zoo.tokenizer, "student": zoo.tokenizer}, name="sequence", device=device)
    ev = CircuitEvaluator(zoo, ztask.view("teacher"), args.ablation)
    found = search(ev, [20.0])
    print(f"zoo_search_s: {found.wall_s:.2f}")
    print(f"zoo_evaluations: {ev.n_evaluations}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
