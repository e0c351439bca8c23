"""The queue between the API and the workers: its names, all Celery configuration, and the producer.

Celery is transport only: job state lives in our records (:mod:`jobs.store`).

- Redis broker; no result backend (the job record and result.json are the result).
- JSON serializer only, and a message carries only the job id: nothing a client sent is ever
  deserialised by the worker from the broker.
- ``task_acks_late`` + ``task_reject_on_worker_lost``: a worker killed mid-job (OOM, kill -9)
  leaves the message unacknowledged and it is redelivered after ``visibility_timeout``; the job
  record's own attempt counter stops a job that keeps killing workers (``max_attempts``).
- ``visibility_timeout`` must exceed the longest job, or a running job is handed to a second worker.
- Queue ``gpu``, solo pool, prefetch 1: one job per GPU at a time, none held back by a busy worker.
  A message is a turn (jobs.turns): the worker that takes it runs the job whose turn it is. Queue
  ``gpu.multi`` is the same for workers over several GPUs; each worker also reads a queue of its own,
  ``gpu.w.<node>`` (worker/liveness.py), where a job whose models it holds loaded is passed to it,
  and where the student's side of a split comparison (``SCAN_HALF``) is sent.

The producer (:func:`send_job`) knows only the task's name, so the API never imports the worker;
the worker builds its app here with ``include=["worker.tasks"]``.
"""

from __future__ import annotations

from collections.abc import Sequence

from celery import Celery

from .settings import Settings
from .turns import POOLS

QUEUE = "gpu"  # also the Redis list that holds the waiting messages
# Jobs whose memory plan spreads a model over several GPUs: taken only by a worker started with several
# (`CIRCUITDIFF_GPUS=0-3`), which listens here and on nothing else.
MULTI_QUEUE = "gpu.multi"
POOL_QUEUES = {"gpu": QUEUE, "multi": MULTI_QUEUE}  # a job's pool (jobs.turns) -> its queue
assert tuple(POOL_QUEUES) == POOLS
TASK_NAME = "circuitdiff.run_job"
SCAN_HALF = "circuitdiff.scan_half"  # one model's side of a split comparison, sent to a worker's own queue
# Watches (the watches package): checks and webhook deliveries run on their own light queue and worker, so a
# long comparison on the gpu queue never holds back a check or an alert.
WATCH_QUEUE = "watches"
WATCH_TICK = "circuitdiff.watch_tick"  # beat: check due watches, judge finished watch jobs
WATCH_CHECK = "circuitdiff.watch_check"  # POST /v1/watches/{id}/check
WEBHOOK_DELIVER = "circuitdiff.deliver_webhook"


def make_celery(settings: Settings, *, include: Sequence[str] = ()) -> Celery:
    """A Celery app on the settings' Redis; building it connects nowhere."""
    app = Celery("circuitdiff", broker=settings.require_redis_url(), include=list(include))
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,
        result_backend=None,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_default_queue=QUEUE,
        task_routes={TASK_NAME: {"queue": QUEUE}, WATCH_TICK: {"queue": WATCH_QUEUE},
                     WATCH_CHECK: {"queue": WATCH_QUEUE}, WEBHOOK_DELIVER: {"queue": WATCH_QUEUE}},
        worker_prefetch_multiplier=1,
        worker_pool="solo",
        worker_concurrency=1,
        worker_hijack_root_logger=False,
        # Whatever a library prints (a stray progress bar) is not a warning about the job.
        worker_redirect_stdouts_level="INFO",
        worker_send_task_events=False,
        # A job interrupted by a lost broker connection is redelivered (acks_late), so do not
        # let it also run on: one job, one run.
        worker_cancel_long_running_tasks_on_connection_loss=True,
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout,
            "unacked_restore_interval": settings.restore_interval,
            "unacked_restore_throttle": 1,
            "socket_timeout": 30,
            "socket_connect_timeout": 5,
            "health_check_interval": 10,
        },
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.5},
    )
    return app


def send_job(app: Celery, job_id: str, *, pool: str = "gpu", countdown: float | None = None) -> None:
    """Queue ``job_id`` for a worker of ``pool`` (after ``countdown`` seconds when given), by task name
    only. The message is a turn in that pool (jobs.turns): the worker that takes it runs the job whose
    turn it is, which is ``job_id`` only when no other key's job is due first."""
    app.send_task(TASK_NAME, args=[job_id], queue=POOL_QUEUES[pool], countdown=countdown)


def send_watch_check(app: Celery, watch_id: str) -> None:
    """Ask the watch worker to check ``watch_id`` now (by task name only)."""
    app.send_task(WATCH_CHECK, args=[watch_id], queue=WATCH_QUEUE)
