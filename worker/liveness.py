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
import sys
import threading
import time
from functools import lru_cache

from celery import signals

from jobs.queue import MULTI_QUEUE, send_job
from jobs.settings import get_settings
from jobs.store import JobStore, WorkerInfo
from jobs.turns import DEFAULT_POOL

log = logging.getLogger("circuitdiff.worker")
WORKER_NAME = f"{socket.gethostname()}:{os.getpid()}"
_stop = threading.Event()
# What this worker publishes (jobs.store.WorkerInfo): its pool and own queue are set when Celery is
# ready (the queues it was started on), the job by worker/tasks.py around each run.
_me = {"pool": DEFAULT_POOL, "queue": None, "job": None, "idle_since": time.monotonic(), "capacity": {}}


def own_queue(node: str) -> str:
    """The queue only this worker reads (its Celery node name, stable across restarts): where a job
    whose models it holds loaded is passed to it (worker/tasks.py, warm models first)."""
    return f"gpu.w.{node}"


def pool() -> str:
    return _me["pool"]


def device_memory() -> dict[str, int]:
    """Bytes torch has allocated per visible GPU; {} on CPU or before this process used CUDA (never
    initialises CUDA from the heartbeat thread)."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return {}
    return {f"cuda:{i}": int(torch.cuda.memory_allocated(i)) for i in range(torch.cuda.device_count())}


def device_capacity() -> dict[str, int]:
    """Bytes per visible GPU a job may plan on: its total memory, capped by the engine's memory budget
    (circuitdiff.models.placement reads the same cap); {} without a GPU. What the API compares a job's
    estimated size with to tell whether it needs several GPUs (service/submission.py)."""
    import torch

    if not torch.cuda.is_available():
        return {}
    cap = get_settings().engine.memory_budget
    out = {}
    for i in range(torch.cuda.device_count()):
        total = int(torch.cuda.get_device_properties(i).total_memory)
        out[f"cuda:{i}"] = min(total, cap) if cap is not None else total
    return out


def publish() -> None:
    from . import runner

    job_store().publish_worker(WorkerInfo(
        name=WORKER_NAME, pool=_me["pool"], devices=os.environ.get("CUDA_VISIBLE_DEVICES"), queue=_me["queue"],
        job=_me["job"], models=runner.models().loaded(), device_memory=device_memory(),
        device_capacity=_me["capacity"]))


def running(job_id: str | None) -> None:
    """This worker started (``job_id``) or ended (None) a job: published at once, for the routing."""
    _me["job"] = job_id
    if job_id is None:
        _me["idle_since"] = time.monotonic()
    try:
        publish()
    except Exception as e:  # noqa: BLE001 - the next heartbeat publishes it
        log.warning("could not publish worker state: %s", e)



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


def sweep_idle_pool() -> bool:
    """An idle worker sees jobs queued in its pool for longer than the unsent grace: a turn went
    missing (sent to a worker's own queue that is gone, say), so send one more to the pool's queue.
    A spare turn is harmless: a message that finds nothing queued is acknowledged and dropped."""
    from .celery_app import app
    settings = get_settings()
    if _me["job"] is not None or time.monotonic() - _me["idle_since"] < settings.unsent_grace_seconds:
        return False
    stale = job_store().oldest_queued(_me["pool"], older_than=settings.unsent_grace_seconds)
    if stale is None:
        return False
    log.warning("job %s waits in pool %s while this worker is idle; sending a turn", stale, _me["pool"])
    send_job(app, stale, pool=_me["pool"])
    _me["idle_since"] = time.monotonic()
    return True


def _beat() -> None:
    settings = get_settings()
    next_sweep = 0.0
    failing = False  # one warning per outage, not one per beat
    while not _stop.is_set():
        try:
            job_store().heartbeat(WORKER_NAME)
            publish()
            if failing:
                log.info("heartbeat: Redis reachable again")
                failing = False
            if settings.orphan_sweep and time.monotonic() >= next_sweep:
                next_sweep = time.monotonic() + settings.worker_stale_seconds / 2
                sweep_orphans()
                sweep_unsent()
                sweep_partials()
                sweep_idle_pool()
        except Exception as e:  # noqa: BLE001 - Redis down: keep beating, it comes back
            if not failing:
                log.warning("heartbeat failed (retrying every %.0fs until Redis is back): %s",
                            settings.worker_heartbeat_seconds, e)
            failing = True
        _stop.wait(settings.worker_heartbeat_seconds)


@signals.worker_ready.connect
def _start_heartbeat(sender=None, **_):
    if sender is not None:  # the consumer: the queues it was started on, and one of its own
        _me["pool"] = "multi" if MULTI_QUEUE in sender.app.amqp.queues.consume_from else DEFAULT_POOL
        _me["queue"] = own_queue(sender.hostname)
        sender.add_task_queue(_me["queue"])
        _me["capacity"] = device_capacity()
    threading.Thread(target=_beat, name="heartbeat", daemon=True).start()


@signals.worker_shutdown.connect
def _stop_heartbeat(**_):
    _stop.set()
    try:
        job_store().worker_gone(WORKER_NAME)
    except Exception as e:  # noqa: BLE001
        log.warning("could not deregister worker: %s", e)
