"""One worker per GPU: ``CIRCUITDIFF_GPUS=0,1 make run`` on this GPU-less machine starts two workers
whose environments say devices 0 and 1 and whose names say so too, and a comparison still runs (on
CPU). A job whose model needs several GPUs goes to a worker over several, or is refused at
submission when none runs.

No GPU here, so for the last part the API's view of the workers is staged in the stack's real Redis:
a heartbeat and the published state (jobs.store.WorkerInfo) of a one-GPU worker, then of a multi-GPU
one, exactly as a GPU worker writes them (worker/liveness.py); nothing else is faked.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

import httpx
import redis

from jobs.queue import MULTI_QUEUE
from jobs.store import JobStore, WorkerInfo
from launcher.children import spawn
from launcher.redis_server import free_port
from tests.conftest import require_zoo
from tests.service_fixtures import REPO, SMALL_SPEC, wait_for
from tests.system.test_service_stack import _alive, _children, _make_run_argv

HUB_PAIR = {"teacher": "meta-llama/Llama-3.1-8B", "student": "nvidia/Llama-3.1-Minitron-4B-Depth-Base",
            "task": "ioi", "n_prompts": 8}


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode(errors="replace").split("=", 1) for item in raw if b"=" in item)


def test_make_run_with_gpus_starts_a_worker_per_device_and_routes_by_memory(tmp_path):
    require_zoo("gpt-teacher", "gpt-student")
    data, port = tmp_path / "data", free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIRCUITDIFF_") and k != "REDIS_URL"}
    env.update(CIRCUITDIFF_DATA_DIR=str(data), CIRCUITDIFF_PORT=str(port), CIRCUITDIFF_GPUS="0,1",
               CIRCUITDIFF_WORKER_HEARTBEAT_SECONDS="1", HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    log = tmp_path / "stack.log"
    with open(log, "wb") as fh:
        stack = spawn(_make_run_argv(), env=env, cwd=REPO, stdout=fh, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "Press Ctrl-C to stop." in log.read_text(), 120, "the stack banner")
        url = re.search(r"started Redis at (redis://\S+)", log.read_text()).group(1)
        r = redis.Redis.from_url(url, decode_responses=True)
        store = JobStore(r)
        wait_for(lambda: len(store.worker_infos(30)) == 2, 120, "two GPU workers' heartbeats")

        workers = {}
        for pid in _children(stack.pid):
            cmd = Path(f"/proc/{pid}/cmdline").read_text().split("\0")
            if "worker.celery_app" in cmd:
                workers[cmd[cmd.index("-n") + 1]] = (_environ(pid).get("CUDA_VISIBLE_DEVICES"), cmd[cmd.index("-Q") + 1])
        assert workers == {"gpu0@%h": ("0", "gpu"), "gpu1@%h": ("1", "gpu")}, workers
        infos = store.worker_infos(30)
        assert sorted(w.devices for w in infos) == ["0", "1"] and all(w.device_capacity == {} for w in infos)
        assert sorted(w.queue.split("@")[0] for w in infos) == ["gpu.w.gpu0", "gpu.w.gpu1"]

        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:
            job = c.post("/v1/comparisons", json=SMALL_SPEC)
            assert job.status_code == 202, job.text
            jid = job.json()["id"]
            wait_for(lambda: c.get(f"/v1/comparisons/{jid}").json()["status"] == "succeeded", 300,
                     "the comparison to run on a GPU worker without a GPU (CPU)")
            # without a live GPU worker the API cannot size anything against a GPU: no refusal
            assert c.post("/v1/comparisons", json={**HUB_PAIR, "seed": 1}).status_code == 202

            # a one-GPU worker with 1 GiB: the 8B pair needs several GPUs and nobody has several
            def stage(name: str, pool: str, capacity: dict[str, int]) -> None:
                store.heartbeat(name)
                store.publish_worker(WorkerInfo(name=name, pool=pool, device_capacity=capacity))

            stage("gpuhost:1", "gpu", {"cuda:0": 2**30})
            refused = c.post("/v1/comparisons", json={**HUB_PAIR, "seed": 2})
            assert refused.status_code == 422 and refused.headers["content-type"].startswith("application/problem+json")
            body = refused.json()
            assert body["code"] == "needs_several_gpus" and body["errors"][0]["field"] == "teacher.id"
            assert "CIRCUITDIFF_GPUS=0-3" in body["errors"][0]["fix"] and "1.0 GiB" in body["detail"]
            small = c.post("/v1/comparisons", json={**SMALL_SPEC, "seed": 3})  # fits one GPU: its pool as ever
            assert small.status_code == 202 and store.pool_of(small.json()["id"]) == "gpu"

            stage("gpuhost:2", "multi", {"cuda:0": 2**30, "cuda:1": 2**30})
            stage("gpuhost:1", "gpu", {"cuda:0": 2**30})
            big = c.post("/v1/comparisons", json={**HUB_PAIR, "seed": 2})
            assert big.status_code == 202, big.text
            bid = big.json()["id"]
            assert store.pool_of(bid) == "multi" and r.llen(MULTI_QUEUE) == 1  # its turn waits on gpu.multi
            assert big.json()["queue_position"] == 1
            assert c.delete(f"/v1/comparisons/{bid}").json()["status"] == "cancelled"
        r.close()
        kids = {k for k in _children(stack.pid) if _alive(k)}
    finally:
        stack.send_signal(signal.SIGTERM)
        stack.wait(60)
    assert stack.returncode == 0, log.read_text()[-3000:]
    assert not [k for k in kids if _alive(k)]
