"""The worker's Celery app: ``celery -A worker.celery_app worker`` (see ``jobs.commands``).

Every setting comes from :func:`jobs.queue.make_celery`, the one place the API's producer is
configured too; the worker adds only its tasks.
"""

from __future__ import annotations

from jobs.queue import make_celery
from jobs.settings import get_settings

app = make_celery(get_settings(), include=["worker.tasks"])
