"""Service test fixtures: a real Redis server, the real API under uvicorn, real Celery workers.

Everything runs as subprocesses on free ports with its data in a tmp dir; nothing here touches the
machine's own Redis on 6379. Loaded by ``tests/conftest.py`` (``pytest_plugins``).

Session fixtures share one stack (Redis + API + one worker) across the service tests; tests that
kill or stop things (chaos, the launcher) build their own with :func:`start_api`/:func:`start_worker`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import httpx
import pytest
import redis

from jobs.commands import api_argv, worker_argv
from jobs.queue import QUEUE
from launcher.children import spawn
from launcher.redis_server import RedisServer, free_port

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
ALICE_KEY, BOB_KEY = "alice-test-key", "bob-test-key"
CAROL_KEY = "carol-test-key"  # one test owns carol's jobs: listings of a known set
SMALL_SPEC = {
    "teacher": "zoo:gpt-teacher",
    "student": "zoo:gpt-student",
    "task": "ioi",
    "n_prompts": 8,
}


class Proc:
    """A child process with its output in a log file (read it when a test fails)."""

    def __init__(self, args: list[str], env: dict, log: Path):
        self.log = log
        self._fh = open(log, "ab")
        self.p = spawn(args, env=env, cwd=REPO, stdout=self._fh, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self.p.pid

    def alive(self) -> bool:
        return self.p.poll() is None

    def tail(self, n: int = 4000) -> str:
        return self.log.read_bytes()[-n:].decode(errors="replace")

    def stop(self, timeout: float = 15.0) -> None:
        if self.alive():
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill9()
        self._fh.close()

    def kill9(self) -> None:
        if self.alive():
            self.p.kill()  # SIGKILL: no cleanup, no ack; exactly what an OOM kill does
            self.p.wait()


def service_env(redis_url: str, data_dir: Path, *, keys: tuple[str, ...] = (ALICE_KEY, BOB_KEY, CAROL_KEY), **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIRCUITDIFF_") and k != "REDIS_URL"}
    env.update(
        REDIS_URL=redis_url,
        CIRCUITDIFF_DATA_DIR=str(data_dir),
        CIRCUITDIFF_MODEL_ROOTS=str(data_dir / "models"),
        CIRCUITDIFF_API_KEYS=",".join(keys),
        CIRCUITDIFF_PROGRESS_INTERVAL="0.5",
        CIRCUITDIFF_WORKER_HEARTBEAT_SECONDS="1",
        CIRCUITDIFF_WORKER_STALE_SECONDS="5",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        PYTHONUNBUFFERED="1",
    )
    env.update({k: str(v) for k, v in extra.items()})
    return env


def wait_for(pred, timeout: float, what: str, proc: Proc | None = None, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        if proc is not None and not proc.alive():
            raise AssertionError(f"{what}: process exited\n{proc.tail()}")
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}" + (f"\n{proc.tail()}" if proc else ""))


def start_api(env: dict, log_dir: Path, port: int | None = None) -> tuple[Proc, str]:
    port = port or free_port()
    env = dict(env, CIRCUITDIFF_HOST="127.0.0.1", CIRCUITDIFF_PORT=str(port))
    proc = Proc(api_argv(), env, log_dir / f"api-{port}.log")
    base = f"http://127.0.0.1:{port}"

    def up():
        try:
            return httpx.get(base + "/health", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    wait_for(up, 30, "API /health", proc)
    return proc, base


def start_worker(env: dict, log_dir: Path, name: str) -> Proc:
    proc = Proc(worker_argv(name), env, log_dir / f"worker-{name}.log")
    r = redis.Redis.from_url(env["REDIS_URL"], decode_responses=True)
    wait_for(lambda: any(w.endswith(f":{proc.pid}") for w in r.zrange("cd:workers", 0, -1)), 60,
             "worker heartbeat", proc)
    r.close()
    return proc


@dataclass
class PrivateStack:
    """What :func:`private_stack` started: the service environment, the API's base URL, the Redis URL,
    the data directory and the processes it stops at the end (the API first; append others)."""

    env: dict
    base: str
    url: str
    data: Path
    procs: list[Proc] = field(default_factory=list)


@contextmanager
def private_stack(root: Path, *, keys: tuple[str, ...] = (ALICE_KEY, BOB_KEY, CAROL_KEY), **extra) -> Iterator[PrivateStack]:
    """A stack of its own under ``root``: a Redis server, a data directory with an empty model root
    (``data/models``), the service environment (``extra`` settings on top) and the API. When the block
    ends, every process in ``procs`` stops, newest first, then Redis."""
    server = RedisServer(root / "redis").start()
    procs: list[Proc] = []
    try:
        data = root / "data"
        (data / "models").mkdir(parents=True, exist_ok=True)
        env = service_env(server.url, data, keys=keys, **extra)
        api, base = start_api(env, root)
        procs.append(api)
        yield PrivateStack(env, base, server.url, data, procs)
    finally:
        for p in reversed(procs):
            p.stop()
        server.stop()


def poll_until(client: httpx.Client, job_id: str, statuses: set[str], timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    body: dict = {}
    while time.monotonic() < deadline:
        body = client.get(f"/v1/comparisons/{job_id}", params={"wait": 5}).json()
        if body.get("status") in statuses:
            return body
    raise AssertionError(f"job {job_id} never reached {statuses}; last: {body}")


def broker_settled(url: str, since: float = 0.0) -> bool:
    """The broker holds no message for a worker to act on: the queue is empty and every delivery made
    after ``since`` (a unix time) has been acknowledged.

    kombu's Redis transport keeps a delivered, unacknowledged message in the ``unacked`` hash and
    its delivery time in the ``unacked_index`` sorted set until the worker acks it, which with
    ``acks_late`` happens after the task returned: settled means every message that was queued
    has been taken and handled. ``since`` leaves out the deliveries of a worker killed before it
    (they stay unacknowledged until the visibility timeout)."""
    r = redis.Redis.from_url(url, decode_responses=True)
    try:
        return r.llen(QUEUE) == 0 and r.zcount("unacked_index", since, "+inf") == 0
    finally:
        r.close()


def redis_snapshot(url: str) -> set[str]:
    r = redis.Redis.from_url(url, decode_responses=True)
    try:
        return set(r.keys("*"))
    finally:
        r.close()


def data_snapshot(data_dir: Path) -> set[str]:
    return {str(p.relative_to(data_dir)) for p in data_dir.rglob("*") if p.is_file() and not p.name.startswith(".ready-")}


@pytest.fixture(scope="session")
def svc_redis(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def svc_data(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("svc-data")
    (d / "models").mkdir()
    return d


@pytest.fixture(scope="session")
def svc_logs(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("svc-logs")


@pytest.fixture(scope="session")
def svc_env(svc_redis, svc_data) -> dict:
    return service_env(svc_redis.url, svc_data)


@pytest.fixture(scope="session")
def svc_api_proc(svc_env, svc_logs):
    proc, base = start_api(svc_env, svc_logs)
    yield proc, base
    proc.stop()


@pytest.fixture(scope="session")
def svc_api(svc_api_proc) -> str:
    return svc_api_proc[1]


@pytest.fixture(scope="session")
def svc_worker(svc_env, svc_logs):
    proc = start_worker(svc_env, svc_logs, "session")
    yield proc
    proc.stop()


def _client(base: str, key: str) -> httpx.Client:
    return httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30)


@pytest.fixture
def alice(svc_api):
    with _client(svc_api, ALICE_KEY) as c:
        yield c


@pytest.fixture
def bob(svc_api):
    with _client(svc_api, BOB_KEY) as c:
        yield c


@pytest.fixture
def carol(svc_api):
    with _client(svc_api, CAROL_KEY) as c:
        yield c


def copy_pair(data_dir: Path, teacher: Path, student: Path) -> tuple[str, str]:
    """Copy a checkpoint pair under ``data_dir``'s model root (models/teacher, models/student) once;
    their real absolute paths, as a spec names them."""
    import shutil

    out = []
    for name, src in (("teacher", teacher), ("student", student)):
        dst = data_dir / "models" / name
        if not dst.exists():
            shutil.copytree(src, dst)
        out.append(str(dst.resolve()))
    return out[0], out[1]


@pytest.fixture(scope="session")
def local_pair(svc_data, tiny_gpt_dir, tiny_gpt_dir_b) -> tuple[str, str]:
    """The tiny GPT pair from conftest (real checkpoints, random weights) under the model root."""
    return copy_pair(svc_data, tiny_gpt_dir, tiny_gpt_dir_b)


@pytest.fixture(scope="session")
def local_spec(local_pair) -> dict:
    return {"teacher": local_pair[0], "student": local_pair[1], "task": "ioi", "n_prompts": 8}
