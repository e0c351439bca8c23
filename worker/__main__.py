"""``python -m worker [--gpus ID|A-B] [celery worker options]``: become the worker process
``jobs.commands`` describes.

The Dockerfile's worker command; ``make run`` and the tests start the same argv directly. ``--gpus``
names the worker after its devices and picks its queue (``gpu`` for one device, ``gpu.multi`` for a
range), as ``CIRCUITDIFF_GPUS`` does under ``make run``; in a container the devices it sees are the
ones compose reserved for it (``device_ids``), so it sets no ``CUDA_VISIBLE_DEVICES`` itself.
"""

from __future__ import annotations

import os
import sys

from jobs.commands import gpu_worker_argv, worker_argv
from jobs.settings import parse_gpus


def argv_for(argv: list[str]) -> list[str]:
    if argv[:1] == ["--gpus"] and len(argv) >= 2:
        groups = parse_gpus(argv[1])
        if len(groups) != 1:
            raise SystemExit(f"--gpus {argv[1]!r}: give one device or one range (one worker)")
        return gpu_worker_argv(groups[0], *argv[2:])
    return worker_argv("worker", *argv)


def main(argv: list[str]) -> None:
    args = argv_for(argv)
    os.execv(args[0], args)  # same pid: the container's signals reach Celery itself


if __name__ == "__main__":
    main(sys.argv[1:])
