"""All Celery configuration, in one place. Celery is transport only: job state lives in our records.

- Redis broker; no result backend (the job record and result.json are the result).
- JSON serializer only, and a message carries only the job id: nothing a client sent is ever
  deserialised by the worker from the broker.
- ``task_acks_late`` + ``task_reject_on_worker_lost``: a worker killed mid-job (OOM, kill -9)
  leaves the message unacknowledged and it is redelivered after ``visibility_timeout``; the job
  record's own attempt counter stops a job that keeps killing workers (``max_attempts``).
- ``visibility_timeout`` must exceed the longest job, or a running job is handed to a second worker.
- Queue ``gpu``, solo pool, prefetch 1: one job per GPU at a time, none held back by a busy worker.

The API imports this module to send messages; it imports nothing heavy (tasks load lazily).
"""

from __future__ import annotations

from celery import Celery

from service.settings import Settings, get_settings

QUEUE = "gpu"
TASK_NAME = "circuitdiff.run_job"


def make_celery(settings: Settings) -> Celery:
    app = Celery("circuitdiff", broker=settings.require_redis_url(), include=["worker.tasks"])
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,
        result_backend=None,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_default_queue=QUEUE,
        task_routes={TASK_NAME: {"queue": QUEUE}},
        worker_prefetch_multiplier=1,
        worker_pool="solo",
        worker_concurrency=1,
        worker_hijack_root_logger=False,
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


def send_job(app: Celery, job_id: str) -> None:
    app.send_task(TASK_NAME, args=[job_id], queue=QUEUE)


def __getattr__(name: str):
    # `celery -A worker.celery_app` looks up `app`; built on first use so that importing this module
    # (the API does, to send messages) neither needs REDIS_URL nor connects anywhere.
    if name == "app":
        global app
        app = make_celery(get_settings())
        return app
    raise AttributeError(name)
