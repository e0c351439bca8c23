"""One comparison over two workers (issue #25): wall time on one worker / on two, GPT-2-small shape.

Each run starts a private stack (Redis, API, workers) with an empty data directory, so the activation
cache is cold: first one worker (``CIRCUITDIFF_SPLIT_JOBS`` off), then two with the split on, where
the second worker scans the student while the first scans the teacher. Each submits the same
comparison of the random-weight GPT-2-small-shaped pair and times it from submission to success (the
workers are started and idle before; model loading is inside the time, as in production's first job).

    .venv/bin/python benchmarks/split.py                      # zoo:gpt2-small-random vs zoo:distilgpt2-random
    .venv/bin/python benchmarks/split.py --prompts 50 --scan exact

Prints ``one_worker_s``, ``two_workers_s`` and ``ratio_one_over_two``; on a machine whose cores the two
workers share, the ratio says as much about the cores as about the split: run it where each worker
has its own GPU (or its own cores, ``taskset``) and nothing else runs.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.service_fixtures import private_stack, start_worker  # noqa: E402


def timed_run(n_workers: int, spec: dict, root: Path) -> float:
    # the cache lives under the fresh data dir: cold
    with private_stack(root, keys=("bench-key",), CIRCUITDIFF_SPLIT_JOBS=str(n_workers > 1).lower(),
                       CIRCUITDIFF_WARM_ROUTING="false") as stack:
        stack.procs += [start_worker(stack.env, root, f"bench-{i}") for i in range(n_workers)]
        with httpx.Client(base_url=stack.base, headers={"Authorization": "Bearer bench-key"}, timeout=60) as c:
            t0 = time.monotonic()
            job = c.post("/v1/comparisons", json=spec).json()
            while job["status"] not in ("succeeded", "failed", "cancelled"):
                job = c.get(f"/v1/comparisons/{job['id']}", params={"wait": 30}).json()
            elapsed = time.monotonic() - t0
            if job["status"] != "succeeded":
                raise SystemExit(f"the comparison {job['status']}: {job.get('error')}")
        return elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", default="zoo:gpt2-small-random")
    ap.add_argument("--student", default="zoo:distilgpt2-random")
    ap.add_argument("--task", default="ioi")
    ap.add_argument("--prompts", type=int, default=20)
    ap.add_argument("--scan", default=None, help="scan method (default: the preset's)")
    args = ap.parse_args()
    spec = {"teacher": args.teacher, "student": args.student, "task": args.task, "n_prompts": args.prompts}
    if args.scan:
        spec["scan"] = args.scan
    times = {}
    for n in (1, 2):
        with tempfile.TemporaryDirectory(prefix=f"split-{n}-") as tmp:
            times[n] = timed_run(n, spec, Path(tmp))
        print(f"{'one_worker_s' if n == 1 else 'two_workers_s'}: {times[n]:.2f}", flush=True)
    print(f"pair: {args.teacher} vs {args.student}; task {args.task}; prompts {args.prompts}")
    print(f"ratio_one_over_two: {times[1] / times[2]:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
