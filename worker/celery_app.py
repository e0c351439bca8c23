"""The worker's Celery app: ``celery -A worker.celery_app worker`` (see ``jobs.commands``).

Every setting comes from :func:`jobs.queue.make_celery`, the one place the API's producer is
configured too; the worker adds only its tasks.

Celery's own "Task ... succeeded in ..." line is silenced: the task returns normally whatever the
job's outcome (a failed or cancelled comparison is recorded, not raised), so that line said
"succeeded" for jobs that were not; :func:`worker.tasks.run_job` logs each job's real outcome
once, with its id and duration.
"""

from __future__ import annotations

import logging

from jobs.queue import make_celery
from jobs.settings import get_settings

app = make_celery(get_settings(), include=["worker.tasks"])
logging.getLogger("celery.app.trace").setLevel(logging.WARNING)  # errors of the task itself still show
