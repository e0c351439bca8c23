"""One comparison over two workers (``CIRCUITDIFF_SPLIT_JOBS``), with two real workers on the zoo pair:
the worker running a comparison has the idle one scan the student meanwhile and picks the scan up from
the shared activation cache. The result is the one-worker result; a kill -9 of the worker holding the
student's half loses nothing and runs nothing twice (its redelivered message is skipped); a cancel
stops both halves.
"""

from __future__ import annotations

import json
import subprocess

import httpx
import pytest
import redis

from jobs.store import JobStore
from tests.conftest import require_zoo
from tests.service.test_service_flow import _comparable
from tests.service_fixtures import (ALICE_KEY, PY, REPO, SMALL_SPEC, poll_until, private_stack,
                                    start_worker, wait_for)


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    require_zoo("gpt-teacher", "gpt-student")
    root = tmp_path_factory.mktemp("split")
    # a short visibility timeout: the killed worker's half message comes back within the test
    with private_stack(root, CIRCUITDIFF_SPLIT_JOBS="true", CIRCUITDIFF_VISIBILITY_TIMEOUT=20,
                       CIRCUITDIFF_RESTORE_INTERVAL=2, CIRCUITDIFF_WARM_ROUTING="false") as s:
        # the workers stay out of s.procs: a test replaces a killed one, and the replacement is stopped here
        workers = {name: start_worker(s.env, root, name) for name in ("split-a", "split-b")}
        client = httpx.Client(base_url=s.base, headers={"Authorization": f"Bearer {ALICE_KEY}"}, timeout=30)
        r = redis.Redis.from_url(s.url, decode_responses=True)
        yield {"env": s.env, "root": root, "client": client, "r": r, "workers": workers, "data": s.data}
        client.close()
        r.close()
        for w in workers.values():
            w.stop()


def _idle(s) -> None:
    store = JobStore(s["r"])
    wait_for(lambda: len(infos := store.worker_infos(5)) >= 2 and all(i.job is None for i in infos), 120,
             "two idle workers")


def _half_running(s, jid: str) -> dict:
    return wait_for(lambda: (h := s["r"].hgetall(f"cd:half:{jid}")).get("status") == "running" and h, 120,
                    "the student's scan running on the other worker", interval=0.05)


def test_split_result_is_the_one_worker_result(split, tmp_path):
    _idle(split)
    spec = {**SMALL_SPEC, "seed": 31, "n_prompts": 16}
    job = split["client"].post("/v1/comparisons", json=spec).json()
    done = poll_until(split["client"], job["id"], {"succeeded", "failed"}, timeout=600)
    assert done["status"] == "succeeded", done
    half = split["r"].hgetall(f"cd:half:{job['id']}")
    holder = split["r"].hget(f"cd:job:{job['id']}", "worker")
    assert half["status"] == "done" and half["role"] == "student" and half["worker"] not in ("", holder), half
    result = split["client"].get(f"/v1/comparisons/{job['id']}/result").json()
    assert result["scan"]["cache"]["student"] != "disabled"

    out = tmp_path / "one-worker.json"  # the same spec on one process, no cache: this tree's CLI
    cli = subprocess.run([PY, "-m", "circuitdiff.cli", "compare", "--teacher", spec["teacher"], "--student",
                          spec["student"], "--task", "ioi", "--prompts", "16", "--seed", "31", "--no-cache",
                          "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert cli.returncode == 0, cli.stderr[-3000:]
    assert _comparable(result) == _comparable(json.loads(out.read_text()))


def test_kill9_of_the_half_worker_loses_nothing_and_runs_nothing_twice(split):
    _idle(split)
    c, r = split["client"], split["r"]
    job = c.post("/v1/comparisons", json={**SMALL_SPEC, "seed": 32, "n_prompts": 48}).json()
    half = _half_running(split, job["id"])
    victim = next(name for name, w in split["workers"].items() if half["worker"].endswith(f":{w.pid}"))
    split["workers"][victim].kill9()
    done = poll_until(c, job["id"], {"succeeded", "failed"}, timeout=600)
    assert done["status"] == "succeeded" and done["attempts"] == 1, done  # the holder scanned it itself
    assert r.hget(f"cd:half:{job['id']}", "status") == "running"  # the dead worker's half never finished
    # a new worker gets the dead one's unacknowledged half message back and runs nothing
    log = split["workers"][victim].log
    since = log.stat().st_size  # the restarted worker appends to the same log
    split["workers"][victim] = start_worker(split["env"], split["root"], victim)
    new = lambda: log.read_bytes()[since:].decode(errors="replace")  # noqa: E731
    wait_for(lambda: "scan not run here" in new(), 120, "the redelivered half message skipped")
    assert "scan done" not in new() and "Traceback" not in new()


def test_cancel_stops_both_halves(split):
    _idle(split)
    c, r = split["client"], split["r"]
    job = c.post("/v1/comparisons", json={**SMALL_SPEC, "seed": 33, "n_prompts": 48}).json()
    _half_running(split, job["id"])
    assert c.delete(f"/v1/comparisons/{job['id']}").status_code == 202
    assert poll_until(c, job["id"], {"cancelled", "succeeded", "failed"}, timeout=300)["status"] == "cancelled"
    wait_for(lambda: r.hget(f"cd:half:{job['id']}", "status") == "cancelled", 120, "the student's half cancelled")
