"""The command lines of the two processes, as argv lists: the one source for ``make run``
(:mod:`launcher.stack`), the tests (``tests/service_fixtures.py``) and the Dockerfile (whose worker
runs ``python -m worker``, which executes :func:`worker_argv`).

The worker: one job per GPU (solo pool, prefetch 1) on queue ``gpu``; all other Celery settings are
in :mod:`jobs.queue`. Gossip and mingle are off: workers share nothing but the broker and the job
records, and liveness is our own heartbeat (worker/liveness.py).
"""

from __future__ import annotations

import sys

from pathlib import Path

from .queue import MULTI_QUEUE, QUEUE, WATCH_QUEUE


def worker_argv(name: str = "worker", *extra: str, queue: str = QUEUE) -> list[str]:
    """``python -m celery ... worker`` named ``<name>@<host>`` on ``queue``; ``extra`` goes to Celery as is."""
    return [
        sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker", "-Q", queue, "-P", "solo",
        "--prefetch-multiplier", "1", "-c", "1", "-n", f"{name}@%h", "--without-gossip", "--without-mingle",
        "--loglevel", "INFO", *extra,
    ]


def gpu_worker_name(devices: tuple[int, ...]) -> str:
    """``gpu0`` for one device, ``gpus0-3`` for a worker over several."""
    return f"gpu{devices[0]}" if len(devices) == 1 else f"gpus{devices[0]}-{devices[-1]}"


def gpu_worker_argv(devices: tuple[int, ...], *extra: str) -> list[str]:
    """The worker for ``devices`` (a group of ``CIRCUITDIFF_GPUS``): named after them, on queue ``gpu``
    for one device, on ``gpu.multi`` (jobs that need several GPUs) for several. Which devices it sees
    is its environment's ``CUDA_VISIBLE_DEVICES`` (:func:`gpu_worker_env`), or the container's."""
    return worker_argv(gpu_worker_name(devices), *extra, queue=MULTI_QUEUE if len(devices) > 1 else QUEUE)


def gpu_worker_env(devices: tuple[int, ...]) -> dict[str, str]:
    return {"CUDA_VISIBLE_DEVICES": ",".join(map(str, devices))}


def watcher_argv(name: str = "watcher", *extra: str) -> list[str]:
    """The light worker for watch checks and webhook deliveries (queue ``watches``, no GPU work)."""
    return [
        sys.executable, "-m", "celery", "-A", "worker.watch_app", "worker", "-Q", WATCH_QUEUE, "-P", "solo",
        "--prefetch-multiplier", "1", "-c", "1", "-n", f"{name}@%h", "--without-gossip", "--without-mingle",
        "--loglevel", "INFO", *extra,
    ]


def beat_argv(schedule: Path) -> list[str]:
    """Celery beat, which sends the watch tick (worker/watch_app.py); ``schedule``: its state file."""
    return [sys.executable, "-m", "celery", "-A", "worker.watch_app", "beat", "--schedule", str(schedule),
            "--loglevel", "INFO"]


def api_argv() -> list[str]:
    """The API under uvicorn, bound as the settings say (service/__main__.py)."""
    return [sys.executable, "-m", "service"]
