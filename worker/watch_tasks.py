"""The watch worker's tasks, thin doors to :mod:`worker.watching`."""

from __future__ import annotations

from jobs.queue import WATCH_CHECK, WATCH_TICK, WEBHOOK_DELIVER

from . import watching
from .watch_app import app


@app.task(name=WATCH_TICK)
def watch_tick() -> None:
    watching.tick(app)


@app.task(name=WATCH_CHECK)
def watch_check(watch_id: str) -> None:
    watching.check(app, watch_id)


@app.task(name=WEBHOOK_DELIVER)
def deliver_webhook(delivery_id: str, attempt: int = 1) -> None:
    watching.deliver(app, delivery_id, attempt)
