"""Prometheus text exposition (format 0.0.4), written directly: jobs by status, queue length,
live workers, engine runs and the job duration histogram, all read from Redis so that every API
replica reports the same numbers."""

from __future__ import annotations

from circuitdiff.client.wire import STATUSES
from jobs.store import DURATION_BUCKETS, JobStore

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def render(store: JobStore, stale_seconds: float) -> str:
    counts = store.counts()
    d = store.durations()
    lines = [
        "# HELP circuitdiff_jobs Comparison jobs by status.",
        "# TYPE circuitdiff_jobs gauge",
        *(f'circuitdiff_jobs{{status="{s}"}} {counts[s]}' for s in STATUSES),
        "# HELP circuitdiff_queue_length Jobs waiting for a worker.",
        "# TYPE circuitdiff_queue_length gauge",
        f"circuitdiff_queue_length {store.queue_length()}",
        "# HELP circuitdiff_workers_alive Workers that sent a heartbeat recently.",
        "# TYPE circuitdiff_workers_alive gauge",
        f"circuitdiff_workers_alive {len(store.workers_alive(stale_seconds))}",
        "# HELP circuitdiff_engine_runs_total Times a worker started the engine on a job.",
        "# TYPE circuitdiff_engine_runs_total counter",
        f"circuitdiff_engine_runs_total {store.engine_runs()}",
        "# HELP circuitdiff_job_duration_seconds Wall time of finished job attempts.",
        "# TYPE circuitdiff_job_duration_seconds histogram",
        *(f'circuitdiff_job_duration_seconds_bucket{{le="{b}"}} {int(d.get(f"le_{b}", 0))}' for b in DURATION_BUCKETS),
        f'circuitdiff_job_duration_seconds_bucket{{le="+Inf"}} {int(d.get("count", 0))}',
        f"circuitdiff_job_duration_seconds_sum {d.get('sum', 0.0)}",
        f"circuitdiff_job_duration_seconds_count {int(d.get('count', 0))}",
    ]
    return "\n".join(lines) + "\n"
