"""The `/metrics` exposition, written by ``prometheus_client`` from what Redis holds at scrape time,
so that every API replica reports the same numbers: jobs by status, queue length and jobs waiting
per key, live workers and what each holds (models loaded, device memory), engine runs, cache hits and
misses, and the durations of jobs and of each stage.

A key appears as the owner id of its jobs (``k`` + 16 hex digits of its hash, ``local`` on an open
API): enough to tell keys apart on a dashboard, nothing that opens anything.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from jobs.store import DURATION_BUCKETS, STAGE_BUCKETS, JobStore

CONTENT_TYPE = CONTENT_TYPE_LATEST


def _histogram(name: str, doc: str, buckets: tuple, rows: dict[str, dict[str, float]], label: str | None):
    fam = HistogramMetricFamily(name, doc, labels=[label] if label else None)
    for value, d in rows.items():
        counts = [(str(float(b)), d.get(f"le_{b}", 0)) for b in buckets] + [("+Inf", d.get("count", 0))]
        fam.add_metric([value] if label else [], counts, d.get("sum", 0.0))
    return fam


class JobsCollector:
    """Reads the job store on every scrape (a custom collector: the numbers live in Redis, not here)."""

    def __init__(self, store: JobStore, stale_seconds: float):
        self.store, self.stale_seconds = store, stale_seconds

    def collect(self):
        store = self.store
        jobs = GaugeMetricFamily("circuitdiff_jobs", "Comparison jobs by status.", labels=["status"])
        for status, n in store.counts().items():
            jobs.add_metric([status], n)
        yield jobs
        yield GaugeMetricFamily("circuitdiff_queue_length", "Jobs waiting for a worker.", value=store.queue_length())
        waiting = GaugeMetricFamily("circuitdiff_jobs_waiting", "Queued jobs per API key (its watches' included).",
                                    labels=["key"])
        for owner, n in sorted(store.waiting_by_owner().items()):
            waiting.add_metric([owner], n)
        yield waiting

        infos = store.worker_infos(self.stale_seconds)
        yield GaugeMetricFamily("circuitdiff_workers_alive", "Workers that sent a heartbeat recently.",
                                value=len(store.workers_alive(self.stale_seconds)))
        loaded = GaugeMetricFamily("circuitdiff_worker_models_loaded", "Models a worker holds loaded (its LRU).",
                                   labels=["worker", "pool"])
        busy = GaugeMetricFamily("circuitdiff_worker_busy", "1 while the worker runs a job.", labels=["worker"])
        memory = GaugeMetricFamily("circuitdiff_worker_device_memory_bytes",
                                   "Device memory torch has allocated, per worker and GPU (workers with a GPU).",
                                   labels=["worker", "device"])
        for w in infos:
            loaded.add_metric([w.name, w.pool], len(w.models))
            busy.add_metric([w.name], 1 if w.job else 0)
            for device, n in sorted(w.device_memory.items()):
                memory.add_metric([w.name, device], n)
        yield from (loaded, busy, memory)

        yield CounterMetricFamily("circuitdiff_engine_runs", "Times a worker started the engine on a job.",
                                  value=store.engine_runs())
        caches = CounterMetricFamily("circuitdiff_cache_lookups",
                                     "Cache lookups by outcome: activations (per model scanned: hit, miss, disabled), "
                                     "models (the worker's loaded-model LRU: hit, miss).", labels=["cache", "outcome"])
        counts = store.cache_counts()
        for cache, outcomes in (("activations", ("hit", "miss", "disabled")), ("models", ("hit", "miss"))):
            for outcome in outcomes:
                caches.add_metric([cache, outcome], counts.get((cache, outcome), 0))
        yield caches
        yield _histogram("circuitdiff_job_duration_seconds", "Wall time of finished job attempts.", DURATION_BUCKETS,
                         {"": store.durations()}, None)
        yield _histogram("circuitdiff_stage_duration_seconds", "Wall time of each stage of a job, by stage family.",
                         STAGE_BUCKETS, store.stage_durations(), "stage")


def render(store: JobStore, stale_seconds: float) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(JobsCollector(store, stale_seconds))
    return generate_latest(registry)

