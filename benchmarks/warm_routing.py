"""Warm models first (issue #25): a watch's second checkpoint on two workers, with and without the rule.

For each setting (``CIRCUITDIFF_WARM_ROUTING`` true, then false) the script starts a private stack
(Redis, API, two workers, the watch worker and beat) under a temporary directory, creates a watch on a
checkpoint directory, drops in the first checkpoint and waits for its comparison, then the second.
The first leaves the teacher loaded on one worker; the second needs that teacher again. Printed per
setting: which worker ran each checkpoint, the models each comparison found loaded
(``model_cache_hits``), its load stage and its whole wall time (the result's ``timings``); whether the
second ran where the first had loaded the teacher; then the load time the rule saved. Without the
rule the broker's pick decides (the second lands on the warm worker about half the time): when
``rule_off_second_on_first_worker`` is True, run it again for the cold figure.

    .venv/bin/python benchmarks/warm_routing.py                          # zoo GPT pair (small: ms)
    .venv/bin/python benchmarks/warm_routing.py --teacher /models/llama-8b \\
        --checkpoints /models/student-step-1000,/models/student-step-2000 --prompts 100

Local teachers and checkpoints must lie under one directory, given as the model root (``--root``,
default: the checkpoints' common parent). Run it on a quiet machine: the figures are wall times.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import httpx
import redis

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from circuitdiff.catalogue import zoo_path  # noqa: E402
from tests.service_fixtures import Proc, private_stack, start_worker, wait_for  # noqa: E402
from jobs.commands import beat_argv, watcher_argv  # noqa: E402


def checkpoint_dir(ref: str) -> Path:
    return zoo_path(ref[4:]) if ref.startswith("zoo:") else Path(ref)


def run(setting: bool, args, root: Path) -> dict:
    runs = root / "data" / "models" / "run"
    with private_stack(root, keys=("bench-key",), CIRCUITDIFF_WARM_ROUTING=str(setting).lower(),
                       CIRCUITDIFF_WATCH_TICK_SECONDS=1,
                       CIRCUITDIFF_MODEL_ROOTS=f"{runs.parent},{args.root}") as stack:
        runs.mkdir()
        env = stack.env
        stack.procs += [start_worker(env, root, f"bench-{i}") for i in (1, 2)]
        stack.procs.append(Proc(watcher_argv("watcher"), env, root / "watcher.log"))
        stack.procs.append(Proc(beat_argv(root / "beat-schedule"), env, root / "beat.log"))
        c = httpx.Client(base_url=stack.base, headers={"Authorization": "Bearer bench-key"}, timeout=60)
        w = c.post("/v1/watches", json={
            "name": "bench", "teacher": args.teacher,
            "checkpoints": {"directory": str(runs), "pattern": "step-*", "settle_seconds": 1},
            "comparison": {"task": args.task, "n_prompts": args.prompts}, "interval_seconds": 10,
            "baseline": "first"})
        if w.status_code != 201:
            raise SystemExit(f"the watch was refused: {w.text}")
        w = w.json()
        r = redis.Redis.from_url(stack.url, decode_responses=True)
        out = {}
        for i, ckpt in enumerate(args.checkpoints.split(","), start=1):
            shutil.copytree(checkpoint_dir(ckpt), runs / f"step-{i}")
            wait_for(lambda: len(c.get(f"/v1/watches/{w['id']}/history").json()["items"]) >= i, 600, "the job")
            item = c.get(f"/v1/watches/{w['id']}/history").json()["items"][i - 1]
            job = c.get(f"/v1/comparisons/{item['job_id']}", params={"wait": 0}).json()
            deadline = time.monotonic() + 3600
            while job["status"] not in ("succeeded", "failed") and time.monotonic() < deadline:
                job = c.get(f"/v1/comparisons/{item['job_id']}", params={"wait": 30}).json()
            timings = c.get(f"/v1/comparisons/{job['id']}/result").json()["timings"] if job["status"] == "succeeded" else {}
            out[i] = {"worker": r.hget(f"cd:job:{job['id']}", "worker"), "status": job["status"],
                      "model_cache_hits": job["model_cache_hits"], "load_s": timings.get("load"),
                      "total_s": timings.get("total")}
        return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", default="zoo:gpt-teacher")
    ap.add_argument("--checkpoints", default="zoo:gpt-student,zoo:gpt-control-kd",
                    help="two students, in checkpoint order (zoo names or directories)")
    ap.add_argument("--root", default=None, help="model root holding local teachers/checkpoints")
    ap.add_argument("--task", default="ioi")
    ap.add_argument("--prompts", type=int, default=16)
    args = ap.parse_args()
    if args.root is None:
        local = [Path(p).parent for p in [args.teacher, *args.checkpoints.split(",")] if not p.startswith("zoo:")]
        args.root = str(local[0]) if local else str(REPO)
    figures = {}
    for setting in (True, False):
        with tempfile.TemporaryDirectory(prefix="warm-routing-") as tmp:
            got = run(setting, args, Path(tmp))
        name = "rule_on" if setting else "rule_off"
        for i, row in got.items():
            print(f"{name}_checkpoint{i}: " + " ".join(f"{k}={v}" for k, v in row.items()), flush=True)
        print(f"{name}_second_on_first_worker: {got[2]['worker'] == got[1]['worker']}", flush=True)
        figures[setting] = got[2]
    on, off = figures[True], figures[False]
    if on["load_s"] is not None and off["load_s"] is not None:
        print(f"second_checkpoint_load_s_rule_on: {on['load_s']:.3f}")
        print(f"second_checkpoint_load_s_rule_off: {off['load_s']:.3f}")
        print(f"load_time_saved_s: {off['load_s'] - on['load_s']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
