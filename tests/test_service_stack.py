"""`make run` (python -m jobs.stack) as a user runs it: a subprocess on free ports that starts its
own Redis, a worker and the API, serves a real comparison over HTTP, and leaves no child behind
after SIGTERM."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx

from jobs.children import spawn
from jobs.redis_server import free_port
from tests.service_fixtures import PY, REPO, wait_for


def _children(pid: int) -> set[int]:
    """Direct children of ``pid`` from /proc."""
    out = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.add(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _make_run_argv() -> list[str]:
    """What `make run` runs, read from the Makefile, so the test and the Makefile cannot drift apart."""
    recipe = re.search(r"^run:.*\n\t(.+)$", (REPO / "Makefile").read_text(), re.M).group(1).split()
    assert recipe[0] == "$(PY)", recipe
    return [PY, *recipe[1:]]


def test_make_run_stack_serves_a_comparison_and_stops_cleanly(tmp_path, tiny_gpt_dir, tiny_gpt_dir_b):
    from circuitdiff.catalogue import ZOO_DIR

    data = tmp_path / "data"
    if all((ZOO_DIR / n / "model.safetensors").exists() for n in ("gpt-teacher", "gpt-student")):
        spec = {"teacher": "zoo:gpt-teacher", "student": "zoo:gpt-student", "task": "ioi", "n_prompts": 8}
    else:  # the zoo is trained by another step of the build; the stack itself is what is tested here
        for name, src in (("teacher", tiny_gpt_dir), ("student", tiny_gpt_dir_b)):
            shutil.copytree(src, data / "models" / name)
        spec = {"teacher": str(data / "models/teacher"), "student": str(data / "models/student"),
                "task": "ioi", "n_prompts": 8}
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIRCUITDIFF_") and k != "REDIS_URL"}
    env.update(CIRCUITDIFF_DATA_DIR=str(data), CIRCUITDIFF_PORT=str(port), HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    log = tmp_path / "stack.log"
    kids: set[int] = set()
    with open(log, "wb") as fh:
        stack = spawn(_make_run_argv(), env=env, cwd=REPO, stdout=fh, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: "Press Ctrl-C to stop." in log.read_text(), 90, "the stack banner")
        banner = log.read_text()
        assert base in banner and "zoo:gpt-teacher" in banner and "zoo:gpt-student" in banner
        assert re.search(r"started Redis at redis://127\.0\.0\.1:(\d+)", banner).group(1) != "6379"
        kids = _children(stack.pid)
        assert len(kids) == 3, kids  # redis, worker, api

        with httpx.Client(base_url=base, timeout=30) as c:
            wait_for(lambda: c.get("/ready").status_code == 200, 60, "/ready")
            job = c.post("/v1/comparisons", json=spec)
            assert job.status_code == 202, job.text
            jid = job.json()["id"]
            deadline = time.monotonic() + 300
            while (st := c.get(f"/v1/comparisons/{jid}", params={"wait": 10}).json())["status"] not in (
                    "succeeded", "failed"):
                assert time.monotonic() < deadline, st
            assert st["status"] == "succeeded", st
            result = c.get(f"/v1/comparisons/{jid}/result").json()
            assert result["models"]["teacher"]["n_layers"] >= 1 and result["alignment"]["n_pairs"] > 0
        assert (data / "results" / jid / "result.json").is_file()
    finally:
        stack.send_signal(signal.SIGTERM)
        stack.wait(60)
    assert stack.returncode == 0, log.read_text()[-3000:]
    assert "stopped" in log.read_text()
    left = [k for k in kids if _alive(k)]
    assert not left, f"children still running after SIGTERM: {left}"
