"""Worker liveness: a heartbeat in Redis that `/ready` and duplicate-delivery checks read.

A daemon thread writes ``cd:workers[name] = now`` every few seconds, also while a job runs in the
solo pool's main thread, so "alive" means the process is alive, not that it is idle.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from functools import lru_cache

from celery import signals

from service.settings import get_settings
from service.store import JobStore

log = logging.getLogger("circuitdiff.worker")
WORKER_NAME = f"{socket.gethostname()}:{os.getpid()}"
_stop = threading.Event()


@lru_cache
def job_store() -> JobStore:
    return JobStore.from_url(get_settings().require_redis_url())


def _beat() -> None:
    interval = get_settings().worker_heartbeat_seconds
    while not _stop.is_set():
        try:
            job_store().heartbeat(WORKER_NAME)
        except Exception as e:  # noqa: BLE001 - Redis down: keep beating, it comes back
            log.warning("heartbeat failed: %s", e)
        _stop.wait(interval)


@signals.worker_ready.connect
def _start_heartbeat(**_):
    threading.Thread(target=_beat, name="heartbeat", daemon=True).start()


@signals.worker_shutdown.connect
def _stop_heartbeat(**_):
    _stop.set()
    try:
        job_store().worker_gone(WORKER_NAME)
    except Exception as e:  # noqa: BLE001
        log.warning("could not deregister worker: %s", e)
