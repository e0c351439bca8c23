"""``python -m worker [celery worker options]``: become the worker process ``jobs.commands`` describes.

The Dockerfile's worker command; ``make run`` and the tests start the same argv directly.
"""

from __future__ import annotations

import os
import sys

from jobs.commands import worker_argv


def main(argv: list[str]) -> None:
    args = worker_argv("worker", *argv)
    os.execv(args[0], args)  # same pid: the container's signals reach Celery itself


if __name__ == "__main__":
    main(sys.argv[1:])
