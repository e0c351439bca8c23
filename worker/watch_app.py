"""The Celery app of the watch worker and of beat: ``celery -A worker.watch_app worker|beat``.

Beat sends one tick every ``watch_tick_seconds`` (the message expires if no watch worker took it
by the next one, so ticks never pile up); the watch worker runs the ticks, ``check`` requests and
webhook deliveries on queue ``watches``. All other settings come from :func:`jobs.queue.make_celery`.
"""

from __future__ import annotations

from jobs.queue import WATCH_QUEUE, WATCH_TICK, make_celery
from jobs.settings import get_settings

_settings = get_settings()
app = make_celery(_settings, include=["worker.watch_tasks"])
app.conf.beat_schedule = {
    "watch-tick": {
        "task": WATCH_TICK,
        "schedule": _settings.watch_tick_seconds,
        "options": {"queue": WATCH_QUEUE, "expires": max(1.0, _settings.watch_tick_seconds)},
    }
}
