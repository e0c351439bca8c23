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

from .queue import QUEUE, WATCH_QUEUE


def worker_argv(name: str = "worker", *extra: str) -> list[str]:
    """``python -m celery ... worker`` named ``<name>@<host>``; ``extra`` goes to Celery as is."""
    return [
        sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker", "-Q", QUEUE, "-P", "solo",
        "--prefetch-multiplier", "1", "-c", "1", "-n", f"{name}@%h", "--without-gossip", "--without-mingle",
        "--loglevel", "INFO", *extra,
    ]


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
