"""``make run`` (``python -m jobs.stack``): the whole stack on one machine, no Docker.

Starts, in order: a private Redis server (only when ``REDIS_URL`` is unset; its AOF lives in
``<data_dir>/redis`` so job records survive a restart), one Celery worker (solo pool, queue
``gpu``), the watch worker (queue ``watches``) and Celery beat, which schedule watch checks, and the API under uvicorn on 127.0.0.1:8000 (``CIRCUITDIFF_HOST`` / ``CIRCUITDIFF_PORT``),
each with the command line :mod:`jobs.commands` gives (:func:`processes`).
Ctrl-C or SIGTERM stops them in reverse order; if one dies, the others are stopped too. Children
also get SIGTERM from the kernel if this launcher is killed outright (PR_SET_PDEATHSIG), so
nothing is left running.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

import httpx

from .children import spawn
from .commands import api_argv, beat_argv, watcher_argv, worker_argv
from .redis_server import RedisServer
from .settings import Settings

STOP_TIMEOUT = 15.0


@dataclass
class Child:
    """One process of the stack: its name, its command line, and the running process once started."""

    name: str
    argv: list[str]
    proc: subprocess.Popen | None = field(default=None, repr=False)

    def start(self, env: dict[str, str]) -> None:
        self.proc = spawn(self.argv, env=env)

    def exited(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            print(f"{self.name} did not stop in {STOP_TIMEOUT:.0f}s; killing it", file=sys.stderr)
            self.proc.kill()
            self.proc.wait()


def processes(settings: Settings) -> list[Child]:
    """What ``make run`` starts after Redis, in order (stopped in reverse): the GPU worker, the watch
    worker and beat (watches, issue 16), the API."""
    return [Child("worker", worker_argv("worker")), Child("watcher", watcher_argv("watcher")),
            Child("beat", beat_argv(settings.data_dir / "celerybeat-schedule")), Child("api", api_argv())]


def banner(base: str, keyed: bool) -> str:
    auth = " -H 'Authorization: Bearer $CIRCUITDIFF_KEY'" if keyed else ""
    return f"""
circuitdiff is running at {base}   (API docs: {base}/docs)

Compare the bundled GPT teacher with its distilled student on IOI:

  curl -s -X POST {base}/v1/comparisons{auth} -H 'Content-Type: application/json' \\
       -d '{{"teacher": "zoo:gpt-teacher", "student": "zoo:gpt-student", "task": "ioi"}}'

then poll the returned job and fetch its result and report:

  curl -s '{base}/v1/comparisons/<id>?wait=30'{auth}
  curl -s {base}/v1/comparisons/<id>/result{auth}
  open {base}/v1/comparisons/<id>/report

Press Ctrl-C to stop.
""".rstrip()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m jobs.stack", description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, help="API port (default: CIRCUITDIFF_PORT or 8000)")
    args = ap.parse_args(argv)
    settings = Settings(**({"port": args.port} if args.port is not None else {}))
    env = dict(os.environ, CIRCUITDIFF_DATA_DIR=str(settings.data_dir), CIRCUITDIFF_HOST=settings.host,
               CIRCUITDIFF_PORT=str(settings.port), PYTHONUNBUFFERED="1")
    settings.data_dir.mkdir(parents=True, exist_ok=True)

    stopping = False

    def on_signal(signum, _frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    redis_server = None
    started: list[Child] = []
    try:
        if not settings.redis_url:
            redis_server = RedisServer(settings.data_dir / "redis").start()
            env["REDIS_URL"] = redis_server.url
            print(f"started Redis at {redis_server.url} (data in {redis_server.workdir})", flush=True)
        for child in processes(settings):
            child.start(env)
            started.append(child)
        base = f"http://{settings.host}:{settings.port}"
        deadline = time.monotonic() + 60
        while not stopping:
            try:
                if httpx.get(base + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or any(c.exited() for c in started):
                print("the API did not come up; stopping", file=sys.stderr)
                return 1
            time.sleep(0.2)
        if not stopping:
            print(banner(base, bool(settings.api_keys)), flush=True)
        while not stopping:
            dead = next((c for c in started if c.exited()), None)
            if dead is not None:
                print(f"{dead.name} exited with status {dead.proc.returncode}; stopping", file=sys.stderr)
                return 1
            time.sleep(0.5)
        return 0
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not abort the cleanup
        for child in reversed(started):
            child.stop()
        if redis_server is not None:
            redis_server.stop()
        print("stopped", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
