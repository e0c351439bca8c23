"""Worker liveness: a heartbeat in Redis, and a sweep that rescues the jobs of dead workers.

A daemon thread writes ``cd:workers[name] = now`` every few seconds, also while a job runs in the
solo pool's main thread, so "alive" means the process is alive, not that it is idle. `/ready` and
the claim's duplicate-delivery check read it.

The same thread sweeps for orphans: jobs still ``running`` whose worker has been silent for
``worker_stale_seconds`` (killed, OOM, host lost). It re-sends their id, and the claim counts the
attempt. Celery's own redelivery of the unacknowledged message (acks_late) only happens after
``visibility_timeout``, which must exceed the longest job; the sweep brings a dead worker's job back
within seconds instead of hours. Only one sweeper re-sends a given attempt (SET NX).

It also sends the message of a queued record the API created but could not queue (Redis lost
between the two steps), and removes partial result directories that no running attempt owns.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import threading
import time
from functools import lru_cache

from celery import signals

from jobs.queue import send_job
from jobs.settings import get_settings
from jobs.store import JobStore

log = logging.getLogger("circuitdiff.worker")
WORKER_NAME = f"{socket.gethostname()}:{os.getpid()}"
_stop = threading.Event()



@lru_cache
def job_store() -> JobStore:
    settings = get_settings()
    return JobStore.from_url(settings.require_redis_url(), settings.strides)


def sweep_orphans() -> list[str]:
    from .celery_app import app

    settings = get_settings()
    resent = []
    for job_id, attempts in job_store().orphans(settings.worker_stale_seconds):
        if job_store().mark_resent(job_id, attempts, ttl=settings.visibility_timeout):
            log.warning("job %s: its worker stopped beating; re-queued (attempt %d was lost)", job_id, attempts)
            send_job(app, job_id, pool=job_store().pool_of(job_id))
            resent.append(job_id)
    return resent


def sweep_unsent() -> list[str]:
    """Queued records whose message was never sent (the API lost Redis between creating the record
    and queuing it, so it could neither send nor discard): send it now, once. The client was told
    503; an identical resubmission returns this job, which then runs."""
    from .celery_app import app

    settings = get_settings()
    sent = []
    for job_id in job_store().unsent(older_than=settings.unsent_grace_seconds):
        if job_store().mark_resent(job_id, 0, ttl=settings.visibility_timeout):
            log.warning("job %s: its record was created but never queued; queued now", job_id)
            send_job(app, job_id, pool=job_store().pool_of(job_id))
            sent.append(job_id)
        job_store().mark_sent(job_id)
    return sent


def sweep_partials() -> list[str]:
    """Remove ``results/.<job>.<attempt>.partial`` directories no running attempt owns (an attempt
    that could not delete its own, e.g. on a disk that went read-only, or a worker killed mid-write)."""
    settings = get_settings()
    removed = []
    for d in settings.results_dir.glob(".*.partial"):
        job_id, _, attempt = d.name[1:-len(".partial")].rpartition(".")
        job = job_store().get(job_id) if job_id else None
        if job is None or job.status != "running" or str(job.attempts) != attempt:
            shutil.rmtree(d, ignore_errors=True)
            if not d.exists():
                removed.append(d.name)
    return removed


def _beat() -> None:
    settings = get_settings()
    next_sweep = 0.0
    failing = False  # one warning per outage, not one per beat
    while not _stop.is_set():
        try:
            job_store().heartbeat(WORKER_NAME)
            if failing:
                log.info("heartbeat: Redis reachable again")
                failing = False
            if settings.orphan_sweep and time.monotonic() >= next_sweep:
                next_sweep = time.monotonic() + settings.worker_stale_seconds / 2
                sweep_orphans()
                sweep_unsent()
                sweep_partials()
        except Exception as e:  # noqa: BLE001 - Redis down: keep beating, it comes back
            if not failing:
                log.warning("heartbeat failed (retrying every %.0fs until Redis is back): %s",
                            settings.worker_heartbeat_seconds, e)
            failing = True
        _stop.wait(settings.worker_heartbeat_seconds)


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
