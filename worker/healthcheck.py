"""``python -m worker.healthcheck``: exit 0 if a worker on this host sent a heartbeat recently.

The container healthcheck: it reads the same heartbeat `/ready` does, so "healthy" means the worker
process is alive and reaching Redis, even while a long job keeps its main thread busy.
"""

from __future__ import annotations

import socket
import sys

from jobs.settings import get_settings
from jobs.store import JobStore


def main() -> int:
    settings = get_settings()
    store = JobStore.from_url(settings.require_redis_url())
    host = socket.gethostname() + ":"
    alive = [w for w in store.workers_alive(settings.worker_stale_seconds) if w.startswith(host)]
    print("ok" if alive else f"no recent heartbeat from a worker on {host[:-1]}")
    return 0 if alive else 1


if __name__ == "__main__":
    sys.exit(main())
