"""`make run` (python -m launcher) as a user runs it: a subprocess on free ports that starts its
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
import redis

from launcher.children import spawn
from launcher.redis_server import free_port
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


def _wait_children(pid: int, n: int, what: str, gone: int | None = None) -> set[int]:
    def alive_children():
        kids = {c for c in _children(pid) if _alive(c)}
        return kids if len(kids) == n and gone not in kids else None

    return wait_for(alive_children, 60, what)


def test_make_run_stack_serves_supervises_and_stops_cleanly(tmp_path, tiny_gpt_dir, tiny_gpt_dir_b):
    """`make run` with CIRCUITDIFF_WORKERS=2 serves a comparison; a worker killed mid-job (issue 11
    #3: it took the whole stack down) is restarted while the API stays up, and the job is redelivered
    and succeeds; Redis killed is restarted with its records; SIGTERM leaves no child behind."""
    data = tmp_path / "data"
    for name, src in (("teacher", tiny_gpt_dir), ("student", tiny_gpt_dir_b)):
        shutil.copytree(src, data / "models" / name)
    spec = {"teacher": str(data / "models/teacher"), "student": str(data / "models/student"),
            "task": "ioi", "n_prompts": 24}
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIRCUITDIFF_") and k != "REDIS_URL"}
    env.update(CIRCUITDIFF_DATA_DIR=str(data), CIRCUITDIFF_PORT=str(port), CIRCUITDIFF_WORKERS="2",
               CIRCUITDIFF_WORKER_HEARTBEAT_SECONDS="1", CIRCUITDIFF_WORKER_STALE_SECONDS="3",
               CIRCUITDIFF_PROGRESS_INTERVAL="0.2", HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    log = tmp_path / "stack.log"
    kids: set[int] = set()
    with open(log, "wb") as fh:
        stack = spawn(_make_run_argv(), env=env, cwd=REPO, stdout=fh, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: "Press Ctrl-C to stop." in log.read_text(), 90, "the stack banner")
        banner = log.read_text()
        assert base in banner and "zoo:gpt-teacher" in banner and "zoo:gpt-student" in banner
        redis_url = re.search(r"started Redis at (redis://127\.0\.0\.1:(\d+)/0)", banner)
        assert redis_url.group(2) != "6379"
        kids = _wait_children(stack.pid, 6, "redis, two workers, the watch worker, beat and the api")
        cmdlines = [Path(f"/proc/{k}/cmdline").read_text().replace("\0", " ") for k in kids]
        assert sum("worker.watch_app beat" in c for c in cmdlines) == 1  # make run starts beat (issue 16)
        assert sum("worker.watch_app worker" in c and "-Q watches" in c for c in cmdlines) == 1
        r = redis.Redis.from_url(redis_url.group(1), decode_responses=True)

        with httpx.Client(base_url=base, timeout=30) as c:
            wait_for(lambda: c.get("/ready").status_code == 200, 60, "/ready")
            job = c.post("/v1/comparisons", json=spec)
            assert job.status_code == 202, job.text
            jid = job.json()["id"]
            wait_for(lambda: (c.get(f"/v1/comparisons/{jid}").json().get("progress") or {}).get("stage"), 120,
                     "the job to run")
            holder = int(r.hget(f"cd:job:{jid}", "worker").rsplit(":", 1)[1])
            assert holder in kids
            os.kill(holder, signal.SIGKILL)
            assert c.get("/health").status_code == 200  # the API stays up
            kids = _wait_children(stack.pid, 6, "the killed worker replaced", gone=holder)
            deadline = time.monotonic() + 300
            while (st := c.get(f"/v1/comparisons/{jid}", params={"wait": 10}).json())["status"] not in (
                    "succeeded", "failed"):
                assert time.monotonic() < deadline, st
            assert st["status"] == "succeeded" and st["attempts"] == 2, st
            result = c.get(f"/v1/comparisons/{jid}/result").json()
            assert result["models"]["teacher"]["n_layers"] >= 1 and result["alignment"]["n_pairs"] > 0

            redis_pid = next(k for k in kids if "redis-server" in Path(f"/proc/{k}/cmdline").read_text())
            os.kill(redis_pid, signal.SIGKILL)
            _wait_children(stack.pid, 6, "Redis restarted", gone=redis_pid)
            wait_for(lambda: c.get("/ready").status_code == 200, 60, "/ready after the Redis restart")
            assert c.get(f"/v1/comparisons/{jid}").json()["status"] == "succeeded"  # the AOF kept the record
        r.close()
        assert (data / "results" / jid / "result.json").is_file()
        assert "restarting it in" in log.read_text() and stack.poll() is None
        kids = {k for k in _children(stack.pid) if _alive(k)}
    finally:
        stack.send_signal(signal.SIGTERM)
        stack.wait(60)
    assert stack.returncode == 0, log.read_text()[-3000:]
    assert "stopped" in log.read_text()
    left = [k for k in kids if _alive(k)]
    assert not left, f"children still running after SIGTERM: {left}"


def test_banner_commands_send_the_key_when_pasted_into_a_shell():
    """Issue 11 #4: the banner's curl lines, run by bash with CIRCUITDIFF_KEY set, send that key
    (single quotes around the header kept `$CIRCUITDIFF_KEY` literal)."""
    from launcher.stack import banner

    text = banner("http://127.0.0.1:8000", keyed=True)
    commands = re.findall(r"^\s*(curl .*?[^\\])$", text, re.M | re.S)
    assert len(commands) == 3, text
    for cmd in commands:
        argv = subprocess.run(["bash", "-c", "curl() { printf '%s\\n' \"$@\"; }\n" + cmd.replace("<id>", "j1")],
                              env={"CIRCUITDIFF_KEY": "s3cret", "PATH": os.environ["PATH"]},
                              capture_output=True, text=True, check=True).stdout.splitlines()
        assert "Authorization: Bearer s3cret" in argv, (cmd, argv)
    assert "Authorization" not in banner("http://127.0.0.1:8000", keyed=False)
    # the console is where a person starts (issue #26): the banner names it, and sign-in when keyed
    assert "console in a browser: http://127.0.0.1:8000/   (sign in with your API key)" in text
    assert "sign in" not in banner("http://127.0.0.1:8000", keyed=False)
