"""The one Celery task, kept thin: record -> engine -> files -> record.

1. claim the job in its record (attempt counter, skip if cancelled/finished/held by a live worker);
2. run the engine with a throttled progress writer and a cancel flag read from the record;
3. write result.json, the report and its plots into a temp directory, then rename it to
   ``results/<job>/`` in one step;
4. record the result pointer last, so a client that sees ``succeeded`` always finds the files.
"""

from __future__ import annotations

import logging
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

import redis

from celery.exceptions import Reject

from circuitdiff.errors import Cancelled, CircuitdiffError
from circuitdiff.spec import ComparisonSpec
from jobs import errors
from jobs.queue import SCAN_HALF, TASK_NAME, send_job
from jobs.settings import get_settings
from jobs.store import JobStore, WorkerInfo, model_name

from . import artifacts, runner
from .celery_app import app
from . import liveness
from .liveness import WORKER_NAME, job_store

log = logging.getLogger("circuitdiff.worker")


REDIS_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
REDIS_PATIENCE = 120.0  # seconds a job waits out a Redis outage before this attempt gives up


def patiently(fn, *args, **kw):
    """Call a job-store method, riding out a Redis blip: retried with backoff for up to
    REDIS_PATIENCE s, one warning per blip and no traceback. A blip therefore neither fails the job
    nor costs it an attempt; only an outage longer than that ends the attempt."""
    deadline = time.monotonic() + REDIS_PATIENCE
    delay, warned = 0.2, False
    while True:
        try:
            value = fn(*args, **kw)
        except REDIS_ERRORS as e:
            if time.monotonic() > deadline:
                raise
            if not warned:
                log.warning("Redis unreachable (%s); retrying for up to %.0fs", e, REDIS_PATIENCE)
                warned = True
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
            continue
        if warned:
            log.info("Redis reachable again")
        return value


class ResultsNotWritable(Exception):
    """The worker could not write where jobs write (``results/``): the deployment's fault, not the
    engine's, so the job's error says which directory and what to change."""

    def __init__(self, results_dir: Path, e: OSError):
        self.detail = (f"the results directory {results_dir} is not writable by the worker "
                       f"({e.strerror or type(e).__name__}: {e.filename or results_dir})")
        super().__init__(self.detail)


@contextmanager
def results_io(results_dir: Path):
    """File operations under ``results_dir``: an OSError there is :class:`ResultsNotWritable`."""
    try:
        yield
    except OSError as e:
        raise ResultsNotWritable(results_dir, e) from e


class LostJob(Exception):
    """This worker no longer holds the job: its result must not overwrite the holder's."""


class ThrottledProgress:
    """The engine's ``progress`` callback: writes ``{stage, done, total, eta_seconds}`` at most every
    ``interval`` s, and each finished stage's duration (by the stage's family, the part before ``:``)
    into the stage histogram /metrics reads.

    ``eta_seconds``: the seconds the current stage still needs at the rate measured in it so far in
    this job (items done since the stage began over the time since); None until it has one (no item
    done yet)."""

    def __init__(self, store: JobStore, job_id: str, interval: float):
        self.store, self.job_id, self.interval = store, job_id, interval
        self.last = 0.0
        self.latest: tuple[str, int, int] | None = None
        self.stage: str | None = None
        self.stage_t0 = 0.0
        self.stage_done0 = 0

    def eta(self, done: int, total: int, now: float) -> float | None:
        progressed, elapsed = done - self.stage_done0, now - self.stage_t0
        if progressed <= 0 or elapsed <= 0:
            return None
        return round(max(0, total - done) * elapsed / progressed, 1)

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        if stage != self.stage:
            self.close(now)
            self.stage, self.stage_t0, self.stage_done0 = stage, now, done
        self.latest = (stage, done, total)
        if now - self.last >= self.interval:
            self.last = now
            patiently(self.store.set_progress, self.job_id, stage, done, total, eta_seconds=self.eta(done, total, now))

    def close(self, now: float | None = None) -> None:
        """The current stage ended (another began, or the job finished): its duration is observed."""
        if self.stage is not None:
            seconds = (time.monotonic() if now is None else now) - self.stage_t0
            try:
                patiently(self.store.observe_stage, self.stage.split(":", 1)[0], seconds)
            except REDIS_ERRORS:
                pass  # a metric, not the job
            self.stage = None


class CancelFlag:
    """The engine's ``cancelled`` callback: the record's cancel flag, read at most every 0.25 s."""

    def __init__(self, store: JobStore, job_id: str):
        self.store, self.job_id = store, job_id
        self.last, self.value = 0.0, False

    def __call__(self) -> bool:
        now = time.monotonic()
        if not self.value and now - self.last >= 0.25:
            self.last = now
            self.value = patiently(self.store.cancel_requested, self.job_id)
        return self.value


def _record_resolved(store: JobStore, job_id: str, submitted: ComparisonSpec, resolved: ComparisonSpec) -> None:
    """The engine resolved what the API could not (the paper preset on a hub model it had not seen):
    the record shows the spec the result will carry from now on."""
    if resolved != submitted:
        patiently(store.set_spec, job_id, resolved.model_dump(mode="json"))


def _count_caches(store: JobStore, result, model_hits: int, model_misses: int) -> None:
    """For /metrics: the activation cache's outcome per model scanned, the loaded-model LRU's per load."""
    try:
        for outcome in result.scan.cache.values():
            patiently(store.count_cache, "activations", outcome)
        patiently(store.count_cache, "models", "hit", model_hits)
        patiently(store.count_cache, "models", "miss", model_misses)
    except REDIS_ERRORS:
        pass  # a metric, not the job


HALF_ROLE = "student"  # the side a split job hands to the other worker (the teacher is more often warm here)
HALF_CLAIM_SECONDS = 10.0  # how long the dispatcher waits for the other worker to take the half


def split_off(store: JobStore, job_id: str, attempt: str, settings) -> WorkerInfo | None:
    """One comparison over two workers: with another worker of this pool idle, send it the student's
    side (its clean pass and influence scan, :func:`scan_half`) on its own queue, to run while this
    worker scans the teacher; the activation cache hands the scan over (:class:`HalfWaiter`)."""
    if not settings.split_jobs:
        return None
    idle = [w for w in store.worker_infos(settings.worker_stale_seconds)
            if w.name != WORKER_NAME and w.job is None and w.pool == liveness.pool() and w.queue]
    if not idle:
        return None
    w = idle[0]
    store.half_sent(job_id, attempt, HALF_ROLE, ttl=2 * settings.visibility_timeout + 3600)  # outlives a redelivery
    try:
        app.send_task(SCAN_HALF, args=[job_id, attempt, HALF_ROLE], queue=w.queue)
    except Exception as e:  # noqa: BLE001 - the broker refused: this worker scans both, the job goes on
        log.warning("job %s: could not send the %s's scan (%s); scanning both here", job_id, HALF_ROLE, e)
        store.half_move(job_id, attempt, ("sent",), "abandoned")
        return None
    log.info("job %s: the %s's scan goes to idle worker %s", job_id, HALF_ROLE, w.name)
    return w


class HalfWaiter:
    """The pipeline's ``before_scan``: before the split-off model's scan is looked up in the cache,
    wait while the other worker runs it; stop waiting (and scan here) when it is done, failed or
    cancelled, when its worker stops beating, or when no worker took it in HALF_CLAIM_SECONDS."""

    def __init__(self, store: JobStore, job_id: str, attempt: str, cancelled, settings):
        self.store, self.job_id, self.attempt, self.cancelled, self.settings = store, job_id, attempt, cancelled, settings

    def __call__(self, role: str) -> None:
        if role != HALF_ROLE:
            return
        t0 = time.monotonic()
        while not self.cancelled():
            half = patiently(self.store.half, self.job_id)
            status = half.get("status")
            if half.get("attempt") != self.attempt or status not in ("sent", "running"):
                log.info("job %s: the %s's scan on the other worker ended %s", self.job_id, role, status)
                return
            if status == "sent" and time.monotonic() - t0 > HALF_CLAIM_SECONDS:
                if patiently(self.store.half_move, self.job_id, self.attempt, ("sent",), "abandoned") == "ok":
                    log.info("job %s: no worker took the %s's scan; scanning it here", self.job_id, role)
                    return
            if status == "running" and half["worker"] not in patiently(
                    self.store.workers_alive, self.settings.worker_stale_seconds):
                log.warning("job %s: worker %s stopped beating during the %s's scan; scanning it here",
                            self.job_id, half["worker"], role)
                return
            time.sleep(0.25)


@app.task(name=SCAN_HALF)
def scan_half(job_id: str, attempt: str, role: str) -> None:
    """One model's side of a split comparison, into the activation cache. Taken once (sent -> running
    in the half's record): a redelivered message, or one the dispatcher gave up on, runs nothing."""
    settings = get_settings()
    store = job_store()
    moved = patiently(store.half_move, job_id, attempt, ("sent",), "running", WORKER_NAME)
    job = patiently(store.get, job_id)
    if moved != "ok" or job is None or job.status != "running":
        log.info("job %s: %s's scan not run here (%s)", job_id, role, moved if moved != "ok" else "job not running")
        if moved == "ok":
            patiently(store.half_move, job_id, attempt, ("running",), "abandoned", WORKER_NAME)
        return
    liveness.running(job_id)
    outcome = "failed"
    try:
        runner.scan_one(ComparisonSpec.model_validate(job.spec), role, cancelled=CancelFlag(store, job_id),
                        settings=settings.engine)
        outcome = "done"
    except Cancelled:
        outcome = "cancelled"
    except Exception:  # noqa: BLE001 - the dispatcher scans it itself; the traceback goes to the log
        log.exception("job %s: %s's scan failed here", job_id, role)
    finally:
        liveness.running(None)
        try:
            patiently(store.half_move, job_id, attempt, ("running",), outcome, WORKER_NAME)
        except REDIS_ERRORS:
            pass  # the dispatcher sees this worker's half as running; it waits only while we beat
    log.info("job %s: %s's scan %s", job_id, role, outcome)


def warm_elsewhere(store: JobStore, job_id: str, stale_seconds: float) -> WorkerInfo | None:
    """Another idle worker of this pool that holds the job's teacher or student loaded when this one
    holds neither (the one holding more of them): loading them here again costs minutes for a large
    model. None: run it here."""
    job = store.get(job_id)
    if job is None:
        return None
    wanted = {model_name(job.spec[r]["id"], job.spec[r].get("revision")) for r in ("teacher", "student")}
    if wanted & set(runner.models().loaded()):
        return None
    warm = [(len(wanted & set(w.models)), w) for w in store.worker_infos(stale_seconds)
            if w.name != WORKER_NAME and w.job is None and w.pool == liveness.pool() and w.queue]
    best = max(warm, key=lambda t: t[0], default=(0, None))
    return best[1] if best[0] else None


def forward_if_warm_elsewhere(store: JobStore, message_job_id: str, settings) -> bool:
    """Warm models first: the job this message would run goes to the idle worker holding its models,
    as a message on that worker's own queue (the turn travels with it; nothing is claimed here)."""
    target = patiently(store.peek_turn, message_job_id, liveness.pool())
    w = target and patiently(warm_elsewhere, store, target, settings.worker_stale_seconds)
    if not w:
        return False
    log.info("job %s: its models are loaded on idle worker %s; passed to %s", target, w.name, w.queue)
    app.send_task(TASK_NAME, args=[target], queue=w.queue)
    return True


@app.task(name=TASK_NAME)
def run_job(message_job_id: str) -> None:
    """A message is a turn in this worker's pool (jobs.turns): the claim says which job to run, the
    one named unless another key's job is due first, or the named one when it redelivers a running job.
    With ``warm_routing``, a job whose models another idle worker holds and this one does not is
    passed to that worker first (:func:`forward_if_warm_elsewhere`)."""
    settings = get_settings()
    store = job_store()
    pool = liveness.pool()  # whichever of its queues the message came on
    if settings.warm_routing and forward_if_warm_elsewhere(store, message_job_id, settings):
        return
    kind, info, job_id = patiently(
        store.claim, message_job_id, WORKER_NAME, max_attempts=settings.max_attempts,
        stale_seconds=settings.worker_stale_seconds, pool=pool,
    )
    if kind == "busy":
        # Redelivered while the worker holding it still beats (visibility timeout shorter than the
        # job). Acking this message outright would lose the job if that holder died later, so ask
        # again once its heartbeat has had time to go stale.
        log.info("job %s held by live worker %s; re-queued for %ss", job_id, info, settings.worker_stale_seconds)
        send_job(app, job_id, pool=patiently(store.pool_of, job_id), countdown=settings.worker_stale_seconds)
        return
    if kind != "run":
        log.info("message for job %s: nothing run (%s %s %s)", message_job_id, kind, info, job_id)
        return
    if job_id != message_job_id:
        log.info("message for job %s: job %s's turn came first", message_job_id, job_id)
    liveness.running(job_id)
    try:
        _run(job_id, info, settings, store)
    finally:
        liveness.running(None)


def _run(job_id: str, info: str, settings, store: JobStore) -> None:
    """Run the claimed job ``job_id`` (attempt ``info``) to its end: succeeded, failed or cancelled."""
    t0 = time.monotonic()
    tmp_dir = settings.results_dir / f".{job_id}.{info}.partial"
    progress = ThrottledProgress(store, job_id, settings.progress_interval)
    cancelled = CancelFlag(store, job_id)

    def finish(status: str, **fields) -> None:
        outcome = patiently(store.transition, job_id, ("running",), status, expect_worker=WORKER_NAME,
                            finished_at=repr(time.time()), **fields)
        if outcome != "ok":
            log.warning("job %s: could not record %s (%s)", job_id, status, outcome)
            return
        why = (fields.get("error") or {}).get("code")  # the one line per job with its real outcome
        log.info("job %s %s in %.1fs%s", job_id, status, time.monotonic() - t0, f" ({why})" if why else "")

    # Everything after the claim is inside this try: whatever fails, the job ends (failed, with a
    # clear error) instead of staying `running` under a worker that is alive and idle, which the
    # orphan sweep would never take back and which would answer every identical POST.
    try:
        log.info("job %s attempt %s", job_id, info)
        record = patiently(store.get, job_id)
        with results_io(settings.results_dir):
            for stale in settings.results_dir.glob(f".{job_id}.*.partial"):
                shutil.rmtree(stale, ignore_errors=True)  # left by earlier attempts, whose workers lost the job
            tmp_dir.mkdir(parents=True)
        spec = ComparisonSpec.model_validate(record.spec)
        patiently(store.count_engine_run)
        hits_before, misses_before = runner.models().hits, runner.models().misses
        split = patiently(split_off, store, job_id, info, settings)
        result = runner.run(spec, progress=progress, cancelled=cancelled, settings=settings.engine,
                            resolved=lambda s: _record_resolved(store, job_id, spec, s),
                            before_scan=HalfWaiter(store, job_id, info, cancelled, settings) if split else None)
        _count_caches(store, result, runner.models().hits - hits_before, runner.models().misses - misses_before)
        with results_io(settings.results_dir):
            warnings = artifacts.write(result, tmp_dir, job={"id": job_id, "watch_id": record.watch_id,
                                                             "checkpoint": record.checkpoint,
                                                             "base_url": settings.public_base_url})
        if patiently(store.cancel_requested, job_id):  # asked to stop after the last component boundary
            raise Cancelled("cancelled after the last component")
        if patiently(store.holder, job_id) != WORKER_NAME:
            raise LostJob("another worker took the job over (this one looked dead)")
        with results_io(settings.results_dir):
            manifest = artifacts.publish(tmp_dir, settings.results_dir / job_id)
        progress.close()
        last = progress.latest or ("done", 1, 1)
        finish(
            "succeeded",
            artifacts=manifest,
            warnings=warnings,
            model_cache_hits=runner.models().hits - hits_before,
            progress={"stage": "done", "done": last[2], "total": last[2], "eta_seconds": 0},
            result=f"results/{job_id}/result.json",  # the pointer goes in last, with the status
        )
    except LostJob as e:
        log.warning("job %s: %s; dropping this attempt's output", job_id, e)
    except REDIS_ERRORS as e:  # out for longer than REDIS_PATIENCE: not the job's fault, no traceback
        log.warning("job %s: Redis unreachable for over %.0fs (%s); this attempt stops and the job is "
                    "redelivered", job_id, REDIS_PATIENCE, e)
        raise Reject(str(e), requeue=True) from None
    except Cancelled:
        finish("cancelled")
    except ResultsNotWritable as e:
        log.error("job %s: %s", job_id, e.detail)
        finish("failed", error=errors.results_not_writable(e.detail))
    except CircuitdiffError as e:
        finish("failed", error=errors.engine_error(e))
    except Exception as e:  # noqa: BLE001 - users get a sanitized error, the log gets the traceback
        log.exception("job %s failed", job_id)
        finish("failed", error=errors.internal_error(e))
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)  # gone already when published; partial files otherwise
        try:
            patiently(store.observe_duration, time.monotonic() - t0)
        except REDIS_ERRORS:
            pass  # a metric, not the job
