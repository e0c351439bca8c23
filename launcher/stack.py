"""``make run`` (``python -m launcher``): the whole stack on one machine, no Docker, supervised.

Starts, in order: a private Redis server (only when ``REDIS_URL`` is unset; its AOF lives in
``<data_dir>/redis`` so job records survive a restart), the Celery workers (solo pool): one per
device or device range of ``CIRCUITDIFF_GPUS`` (``0,1``: ``gpu0`` and ``gpu1`` on queue ``gpu``, each
seeing its own device; ``0-3``: ``gpus0-3`` on queue ``gpu.multi``), else ``CIRCUITDIFF_WORKERS`` on
queue ``gpu``, the watch worker (queue ``watches``) and Celery beat, which schedule
watch checks (issue 16), and the API under uvicorn on 127.0.0.1:8000 (``CIRCUITDIFF_HOST`` /
``CIRCUITDIFF_PORT``), each with the command line :mod:`jobs.commands` gives (:func:`processes`).

A child that dies (a worker killed by the OOM killer, a crashed Redis) is restarted after a
bounded, growing delay (:class:`Backoff`: 1 s doubling up to 30 s, back to 1 s once it has run a
minute) while the others stay up: the dead worker's job is redelivered (acks_late, and the live
workers' orphan sweep) and a restarted Redis reloads its append-only file. Ctrl-C or SIGTERM stops
the children in reverse order. Children also get SIGTERM from the kernel if this launcher is killed
outright (PR_SET_PDEATHSIG), so nothing is left running.

Another process (Celery beat, say) is one more :class:`Child` in :func:`processes`.
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

from jobs.commands import api_argv, beat_argv, gpu_worker_argv, gpu_worker_env, gpu_worker_name, watcher_argv, worker_argv
from jobs.settings import Settings

from .children import spawn
from .redis_server import RedisServer

STOP_TIMEOUT = 15.0


@dataclass
class Backoff:
    """Delay before restarting a child that died: ``first`` s, doubling per quick death up to ``cap``;
    a child that ran ``stable`` s before dying starts again from ``first``."""

    first: float = 1.0
    cap: float = 30.0
    stable: float = 60.0
    failures: int = 0

    def next_delay(self, ran_for: float) -> float:
        if ran_for >= self.stable:
            self.failures = 0
        delay = min(self.cap, self.first * 2**self.failures)
        self.failures += 1
        return delay


@dataclass
class Child:
    """One supervised process of the stack: its name, its command line, and its state once started."""

    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)  # on top of the stack's (a GPU worker's devices)
    proc: subprocess.Popen | None = field(default=None, repr=False)
    started_at: float = 0.0
    restarts: int = 0
    restart_at: float | None = None  # when a dead child is due to start again
    backoff: Backoff = field(default_factory=Backoff)

    def start(self, env: dict[str, str]) -> None:
        self.proc = spawn(self.argv, env={**env, **self.env})
        self.started_at, self.restart_at = time.monotonic(), None

    def exited(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

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


class RedisChild(Child):
    """The stack's own Redis as a supervised child: restarted on the same port and AOF directory."""

    def __init__(self, server: RedisServer):
        super().__init__("redis", [])
        self.server = server

    def start(self, env: dict[str, str]) -> None:
        self.server.start()
        self.proc = self.server.proc
        self.started_at, self.restart_at = time.monotonic(), None

    def stop(self) -> None:
        self.server.stop()


def processes(settings: Settings) -> list[Child]:
    """What ``make run`` starts after Redis, in order (stopped in reverse): the GPU workers, the watch
    worker and beat (watches, issue 16), the API. With ``CIRCUITDIFF_GPUS``, one worker per group of
    devices, seeing only those (``CUDA_VISIBLE_DEVICES``); else ``CIRCUITDIFF_WORKERS`` workers."""
    if settings.gpus:
        workers = [Child(gpu_worker_name(g), gpu_worker_argv(g), gpu_worker_env(g)) for g in settings.gpus]
    else:
        workers = [Child(f"worker{i}", worker_argv(f"worker{i}")) for i in range(1, settings.workers + 1)]
    return [*workers, Child("watcher", watcher_argv("watcher")),
            Child("beat", beat_argv(settings.data_dir / "celerybeat-schedule")), Child("api", api_argv())]


def supervise(children: list[Child], env: dict[str, str], now: float | None = None) -> None:
    """One round: schedule a restart for each child that died, start those that are due."""
    now = time.monotonic() if now is None else now
    for child in children:
        if child.exited() and child.restart_at is None:
            delay = child.backoff.next_delay(now - child.started_at)
            child.restart_at = now + delay
            print(f"{child.name} exited with status {child.returncode}; restarting it in {delay:.0f}s",
                  file=sys.stderr, flush=True)
        if child.restart_at is not None and now >= child.restart_at:
            try:
                child.start(env)
                child.restarts += 1
                print(f"{child.name} restarted (restart {child.restarts})", file=sys.stderr, flush=True)
            except Exception as e:  # noqa: BLE001 - e.g. Redis's port taken: try again after the next delay
                child.restart_at = now + child.backoff.next_delay(0)
                print(f"{child.name} could not be restarted: {e}", file=sys.stderr, flush=True)


def banner(base: str, keyed: bool) -> str:
    # double quotes: the shell must expand $CIRCUITDIFF_KEY (single quotes would send it literally)
    auth = ' -H "Authorization: Bearer $CIRCUITDIFF_KEY"' if keyed else ""
    return f"""
circuitdiff is running at {base}   (API docs: {base}/docs)

Open the console in a browser: {base}/{"   (sign in with your API key)" if keyed else ""}

Compare the bundled GPT teacher with its distilled student on IOI:

  curl -s -X POST {base}/v1/comparisons{auth} -H 'Content-Type: application/json' \\
       -d '{{"teacher": "zoo:gpt-teacher", "student": "zoo:gpt-student", "task": "ioi"}}'

then poll the returned job and fetch its result and report:

  curl -s '{base}/v1/comparisons/<id>?wait=30'{auth}
  curl -s {base}/v1/comparisons/<id>/result{auth}
  open {base}/v1/comparisons/<id>/report{"   (in a browser signed in to the console)" if keyed else ""}

Press Ctrl-C to stop.
""".rstrip()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m launcher", description=__doc__.splitlines()[0])
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

    started: list[Child] = []
    try:
        if not settings.redis_url:
            redis_child = RedisChild(RedisServer(settings.data_dir / "redis"))
            redis_child.start(env)
            started.append(redis_child)
            env["REDIS_URL"] = redis_child.server.url
            print(f"started Redis at {redis_child.server.url} (data in {redis_child.server.workdir})", flush=True)
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
            supervise(started, env)
            time.sleep(0.5)
        return 0
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not abort the cleanup
        for child in reversed(started):
            child.stop()
        print("stopped", flush=True)

