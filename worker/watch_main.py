"""``python -m worker.watch_main watcher|beat``: become the watch worker or Celery beat, with the
command lines :mod:`jobs.commands` gives (the docker-compose services run this; ``make run`` and
the tests start the same argv directly)."""

from __future__ import annotations

import os
import sys

from jobs.commands import beat_argv, watcher_argv
from jobs.settings import get_settings


def argv_for(role: str) -> list[str]:
    if role == "watcher":
        return watcher_argv("watcher")
    if role == "beat":
        return beat_argv(get_settings().data_dir / "celerybeat-schedule")
    raise SystemExit(f"usage: python -m worker.watch_main watcher|beat (not {role!r})")


def main(argv: list[str]) -> None:
    args = argv_for(argv[0] if argv else "")
    os.execv(args[0], args)  # same pid: the container's signals reach Celery itself


if __name__ == "__main__":
    main(sys.argv[1:])
