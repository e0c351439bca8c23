"""Job records in Redis: ours, not Celery's result backend (docs/design.md §Decisions).

One hash per job (``cd:job:<id>``) holds status, progress, attempts, timestamps, sanitized error,
owner and the result pointer; :meth:`JobStore.get` returns it as a :class:`JobRecord`. Every status change is one Lua script (:mod:`jobs.store_scripts`), so
a transition, the per-status counters and the queue index move together even with the API and
several workers writing at once. Job ids sort by creation time, which makes the per-owner index a lexicographic
sorted set that pages newest-first with the last id as the cursor.

Used by the API (create, read, cancel, list) and the worker (claim, progress, finish).
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

import redis
from pydantic import BaseModel, ConfigDict

from circuitdiff.client.wire import STATUSES, Status

from . import errors, store_scripts, turns

P = "cd:"
QUEUED = P + "queued"  # zset job id -> enqueue time: queue positions
RUNNING = P + "running"  # zset job id -> start time: what the orphan sweep looks at
UNSENT = P + "unsent"  # zset job id -> creation time: records whose message is not known to be sent
STATUS_INDEX_READY = P + "status_index:v1"  # set once every record is in its owner's status index
COUNTS = P + "counts"  # hash status -> number of jobs in it
WORKERS = P + "workers"  # zset worker name -> last heartbeat
WORKER_INFO = P + "worker_info"  # hash worker name -> JSON WorkerInfo, written with each heartbeat
CACHE_COUNTS = P + "cache_counts"  # hash "<cache>|<outcome>" -> n (cache: activations, models)
DURATIONS = P + "durations"  # hash histogram of finished job durations
ENGINE_RUNS = P + "engine_runs"  # how many times a worker called the engine
DURATION_BUCKETS = (1, 5, 15, 60, 300, 900, 3600, 4 * 3600)
STAGE_DURATIONS = P + "stage_durations"  # hash "<stage>|le_<b>", "<stage>|count", "<stage>|sum"
STAGE_BUCKETS = (0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600)
IDEMPOTENCY_TTL = 24 * 3600
_JSON_FIELDS = ("spec", "progress", "error", "artifacts", "fingerprints", "warnings")


class JobRecord(BaseModel):
    """One job as its hash holds it, decoded: what the API answers about and the worker runs.

    Read with :meth:`from_redis`, which loads every record written so far: a field an older record
    lacks (or holds empty, or JSON null) takes its default. Fields are only ever written one by one,
    by the Lua scripts, never as a whole record.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str
    owner: str | None = None  # the hash of the API key that made it (``local`` on an open API)
    status: Status
    spec: dict[str, Any]  # the resolved spec, as ComparisonSpec dumps it
    content_key: str
    fingerprints: dict[str, str] = {}
    created_at: float
    started_at: float | None = None  # the first attempt's start
    attempt_started_at: float | None = None  # the current attempt's start
    finished_at: float | None = None
    attempts: int = 0
    rev: int = 0  # bumped by every change: what a long poll waits on
    progress: dict[str, Any] = {}  # {stage, done, total}; {} before the first report
    cancel_requested: bool = False
    worker: str | None = None  # who holds it while running
    error: dict[str, Any] | None = None  # jobs.errors: {code, detail, field, fix, ...}
    warnings: list[str] = []
    artifacts: list[dict[str, Any]] = []  # the manifest: {name, size, sha256, media_type}
    model_cache_hits: int | None = None
    result: str | None = None  # results/<id>/result.json, relative to the data dir
    watch_id: str | None = None  # the watch that created it
    pool: str = turns.DEFAULT_POOL  # whose turn order and queue it waits in (jobs.turns)
    checkpoint: str | None = None  # the watched checkpoint it compares

    @classmethod
    def from_redis(cls, raw: dict[str, str]) -> "JobRecord":
        fields = decode_hash(raw, _JSON_FIELDS)
        fields["cancel_requested"] = raw.get("cancel_requested") == "1"
        return cls.model_validate(fields)


def decode_hash(raw: dict[str, str], json_fields: tuple[str, ...]) -> dict[str, Any]:
    """A record's Redis hash as the fields of its model (job and watch records): an empty field is an
    absent one, and so is a JSON field holding null, so the model's default applies; numbers stay
    strings for pydantic to convert."""
    fields: dict[str, Any] = {k: v for k, v in raw.items() if v != ""}
    for k in json_fields:
        if k in fields and (value := json.loads(fields.pop(k))) is not None:
            fields[k] = value
    return fields


def job_key(job_id: str) -> str:
    return f"{P}job:{job_id}"


def owner_key(owner: str) -> str:
    return f"{P}jobs:{owner}"


def status_key(owner: str, status: str) -> str:
    """The owner's jobs in one status (kept by the scripts: jobs.store_scripts.REINDEX)."""
    return f"{P}jobs:{owner}:s:{status}"


def new_job_id() -> str:
    # 12 hex digits of milliseconds keep ids in creation order until the year 10889.
    return f"j{time.time_ns() // 1_000_000:012x}{secrets.token_hex(5)}"


@dataclass(frozen=True)
class CreateOutcome:
    kind: str  # "new" | "dup" (same content key) | "idem" (same Idempotency-Key) | "linked" (watch pair had one)
    #            | "limit" (the owner has ``queued_limit`` jobs queued already; no job, ``queued`` says how many)
    job_id: str
    idem_body_hash: str | None = None
    queued: int | None = None


def model_name(model_id: str, revision: str | None = None) -> str:
    """How a worker names a model it holds loaded (WorkerInfo.models) and a spec's model is matched to it."""
    return f"{model_id}@{revision}" if revision else model_id


class WorkerInfo(BaseModel):
    """What a worker publishes with its heartbeat (worker/liveness.py): where it takes jobs from, what
    it holds loaded, what it is running. The API routes by it (warm models) and /metrics reports it."""

    model_config = ConfigDict(extra="ignore")

    name: str
    pool: str = turns.DEFAULT_POOL
    devices: str | None = None  # CUDA_VISIBLE_DEVICES as the worker saw it; None: not set (CPU or every GPU)
    queue: str | None = None  # the worker's own queue (warm-model routing sends there)
    job: str | None = None  # the job it is running; None: idle
    models: list[str] = []  # model ids (``id`` or ``id@revision``) loaded in its LRU, most recent last
    device_memory: dict[str, int] = {}  # device -> bytes allocated by torch (GPU workers)
    device_capacity: dict[str, int] = {}  # device -> bytes a job may plan on (total, capped by the memory budget)


class JobStore:
    """``strides``: owner -> stride in the turn order (``Settings.strides``; absent: weight 1)."""

    def __init__(self, client: redis.Redis, strides: dict[str, int] | None = None):
        self.r = client
        self.strides = dict(strides or {})
        self._create = client.register_script(store_scripts.CREATE)
        self._transition = client.register_script(store_scripts.TRANSITION)
        self._claim = client.register_script(store_scripts.CLAIM)
        self._cancel = client.register_script(store_scripts.CANCEL)
        self._backfill = client.register_script(store_scripts.BACKFILL)
        self._peek = client.register_script(store_scripts.PEEK)
        self._half_move = client.register_script(store_scripts.HALF_MOVE)

    @classmethod
    def from_url(cls, url: str, strides: dict[str, int] | None = None) -> "JobStore":
        # Short timeouts: /ready must answer 503 promptly when Redis is gone, and the pool
        # reconnects by itself when it is back.
        client = redis.Redis.from_url(
            url, decode_responses=True, socket_connect_timeout=2, socket_timeout=10, health_check_interval=5
        )
        return cls(client, strides)

    # ------------------------------------------------------------------ API side
    def create(
        self,
        *,
        owner: str,
        spec: dict,
        content_key: str,
        fingerprints: dict,
        idempotency_key: str | None = None,
        body_hash: str = "",
        link: tuple[str, str] | None = None,
        extra: dict[str, str] | None = None,
        pool: str = turns.DEFAULT_POOL,
        queued_limit: int = 0,
    ) -> CreateOutcome:
        """``link`` = (hash key, field): a watch's one-job-per-checkpoint link (watches.store), checked
        and set in the same script; ``extra`` = more record fields (``watch_id``, ``checkpoint``);
        ``pool``: the turn order it joins (jobs.turns); ``queued_limit`` (0: none): refuse ("limit")
        when the owner already has that many jobs queued, a watch's included."""
        job_id = new_job_id()
        now = time.time()
        fields = {
            "id": job_id,
            "owner": owner,
            "status": "queued",
            "spec": json.dumps(spec, sort_keys=True),
            "content_key": content_key,
            "fingerprints": json.dumps(fingerprints, sort_keys=True),
            "created_at": repr(now),
            "attempts": "0",
            "rev": "0",
            "progress": "{}",
            "cancel_requested": "0",
            **(extra or {}),
        }
        idem = f"{P}idem:{owner}:{idempotency_key}" if idempotency_key else ""
        flat = [x for kv in fields.items() for x in kv]
        kind, value = self._create(
            keys=[job_key(job_id), owner_key(owner), f"{P}dedup:{owner}:{content_key}", QUEUED, COUNTS, idem,
                  link[0] if link else "", UNSENT],
            args=[job_id, repr(now), body_hash + ":", IDEMPOTENCY_TTL, link[1] if link else "", pool,
                  queued_limit, ",".join(turns.POOLS), *flat],
        )
        if kind == "limit":
            return CreateOutcome("limit", "", queued=int(value))
        if kind == "idem":
            stored_hash, _, existing = value.partition(":")
            return CreateOutcome("idem", existing, stored_hash)
        return CreateOutcome(kind, value)

    def discard(self, job_id: str, owner: str, content_key: str, idempotency_key: str | None = None) -> None:
        """Undo a create whose message could not be sent: no record (nor key pointing at it) stays."""
        st, pool = self.r.hmget(job_key(job_id), "status", "pool")
        line = turns.wait_key(pool or turns.DEFAULT_POOL, owner)
        pipe = self.r.pipeline()
        pipe.delete(job_key(job_id))
        pipe.zrem(line, job_id)
        pipe.zrem(owner_key(owner), job_id)
        pipe.zrem(QUEUED, job_id)
        pipe.zrem(UNSENT, job_id)
        if st:
            pipe.hincrby(COUNTS, st, -1)
            pipe.zrem(status_key(owner, st), job_id)
        pipe.execute()
        if not self.r.exists(line):
            self.r.srem(turns.owners_key(pool or turns.DEFAULT_POOL), owner)
        dedup = f"{P}dedup:{owner}:{content_key}"
        if self.r.get(dedup) == job_id:
            self.r.delete(dedup)
        if idempotency_key:
            self.r.delete(f"{P}idem:{owner}:{idempotency_key}")

    def mark_sent(self, job_id: str) -> None:
        """The job's message is on the queue: the record no longer needs the unsent sweep."""
        self.r.zrem(UNSENT, job_id)

    def unsent(self, *, older_than: float) -> list[str]:
        """Jobs created over ``older_than`` s ago whose message is not known to be sent, still queued
        (others are dropped from the list here)."""
        out = []
        for jid in self.r.zrangebyscore(UNSENT, "-inf", time.time() - older_than, start=0, num=100):
            if self.r.hget(job_key(jid), "status") == "queued":
                out.append(jid)
            else:
                self.mark_sent(jid)
        return out

    def get(self, job_id: str) -> JobRecord | None:
        raw = self.r.hgetall(job_key(job_id))
        return JobRecord.from_redis(raw) if raw else None

    def rev(self, job_id: str) -> int | None:
        v = self.r.hget(job_key(job_id), "rev")
        return None if v is None else int(v)

    def lines(self, pool: str) -> list[turns.Line]:
        """Every owner's queue in ``pool``, as the turn rule sees it now."""
        owners = sorted(self.r.smembers(turns.owners_key(pool)))
        if not owners:
            return []
        pipe = self.r.pipeline(transaction=True)
        for o in owners:
            pipe.zcard(turns.wait_key(pool, o))
        pipe.hmget(turns.pass_key(pool), owners)
        *sizes, passes = pipe.execute()
        return [turns.Line(o, n, int(float(p or 0)), self.strides.get(o, turns.STRIDE_UNIT))
                for o, n, p in zip(owners, sizes, passes) if n]

    def oldest_queued(self, pool: str, *, older_than: float) -> str | None:
        """A job queued in ``pool`` for over ``older_than`` s (the oldest of the first line that has one)."""
        cutoff = time.time() - older_than
        for owner in sorted(self.r.smembers(turns.owners_key(pool))):
            old = self.r.zrangebyscore(turns.wait_key(pool, owner), "-inf", cutoff, start=0, num=1)
            if old:
                return old[0]
        return None

    def waiting_by_owner(self) -> dict[str, int]:
        """Queued jobs per owner, every pool together."""
        out: dict[str, int] = {}
        for pool in turns.POOLS:
            for line in self.lines(pool):
                out[line.owner] = out.get(line.owner, 0) + line.waiting
        return out

    def queue_position(self, job_id: str) -> int | None:
        """1 = the next job a free worker of its pool takes, under the turn rule (jobs.turns)."""
        owner, pool, status = self.r.hmget(job_key(job_id), "owner", "pool", "status")
        if status != "queued":
            return None
        pool = pool or turns.DEFAULT_POOL
        rank = self.r.zrank(turns.wait_key(pool, owner or ""), job_id)
        lines = self.lines(pool)
        if rank is None or not any(line.owner == owner for line in lines):
            rank = self.r.zrank(QUEUED, job_id)  # a record from before the turn order: its own message
            return None if rank is None else rank + 1
        return turns.position(lines, owner, rank + 1)

    def cancel(self, job_id: str) -> str:
        return self._cancel(keys=[job_key(job_id), COUNTS, QUEUED], args=[job_id, repr(time.time())])

    def list_ids(self, owner: str, *, before: str | None, limit: int, status: str | None = None) -> list[str]:
        """The owner's job ids, newest first, older than ``before``; with ``status``, from that status's
        index, so a filtered page reads only its own records whatever the history holds."""
        hi = f"({before}" if before else "+"
        if status is not None:
            self.ensure_status_index()  # one EXISTS once done
        key = owner_key(owner) if status is None else status_key(owner, status)
        return self.r.zrevrangebylex(key, hi, "-", start=0, num=limit)

    def ensure_status_index(self) -> int:
        """Index records written before the status indexes existed (once per Redis; run at API start).
        Safe beside live writers: each record is re-indexed by one script that reads its status."""
        if self.r.exists(STATUS_INDEX_READY):
            return 0
        n = 0
        for key in self.r.scan_iter(match=f"{P}job:*", count=500):
            n += self._backfill(keys=[key], args=[key[len(job_key("")):], *STATUSES])
        self.r.set(STATUS_INDEX_READY, "1")
        return n

    def counts(self) -> dict[str, int]:
        raw = self.r.hgetall(COUNTS)
        return {s: max(0, int(raw.get(s, 0))) for s in STATUSES}

    def queue_length(self) -> int:
        return self.r.zcard(QUEUED)

    def workers_alive(self, stale_seconds: float) -> list[str]:
        return self.r.zrangebyscore(WORKERS, time.time() - stale_seconds, "+inf")

    def durations(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.r.hgetall(DURATIONS).items()}

    def engine_runs(self) -> int:
        return int(self.r.get(ENGINE_RUNS) or 0)

    # ------------------------------------------------------------------ worker side
    def claim(self, job_id: str, worker: str, *, max_attempts: int, stale_seconds: float,
              pool: str = turns.DEFAULT_POOL) -> tuple[str, str, str]:
        """What to do with a delivered message naming ``job_id``: (kind, info, the job it concerns),
        kind "run" (info: the attempt), "skip" (its status), "busy" (the live holder), "failed" once a
        job has stopped its worker ``max_attempts`` times, or "missing". Unless it redelivers a running
        job, a message is a turn in ``pool``: the job run is the one whose turn it is (jobs.turns)."""
        kind, info, jid = self._claim(
            keys=[COUNTS, QUEUED, WORKERS, RUNNING],
            args=[job_id, worker, repr(time.time()), max_attempts, stale_seconds,
                  json.dumps(errors.worker_lost(max_attempts)), pool, json.dumps(self.strides or {}),
                  turns.STRIDE_UNIT],
        )
        return kind, info, jid

    def peek_turn(self, job_id: str, pool: str = turns.DEFAULT_POOL) -> str | None:
        """The job a message naming ``job_id`` would run in ``pool`` if claimed now (claim's choice,
        nothing claimed); None for a redelivery of a running job, or when nothing is queued."""
        return self._peek(keys=[], args=[job_id, pool]) or None

    def transition(
        self, job_id: str, allowed: tuple[str, ...], to: str, *, expect_worker: str = "", **fields: Any
    ) -> str:
        """Move the job to ``to`` if its status is in ``allowed`` (and, for a worker, if it still
        holds the job). Returns "ok", or the reason it did not move."""
        flat: list[str] = []
        for k, v in fields.items():
            flat += [k, json.dumps(v, sort_keys=True) if k in _JSON_FIELDS else str(v)]
        return self._transition(
            keys=[job_key(job_id), COUNTS, QUEUED, RUNNING], args=[job_id, ",".join(allowed), to, expect_worker, *flat]
        )

    def pool_of(self, job_id: str) -> str:
        return self.r.hget(job_key(job_id), "pool") or turns.DEFAULT_POOL

    # ------------------------------------------------------------------ split jobs (one model on another worker)
    def half_sent(self, job_id: str, attempt: str, role: str, ttl: float) -> None:
        key = f"{P}half:{job_id}"
        pipe = self.r.pipeline()
        pipe.delete(key)
        pipe.hset(key, mapping={"role": role, "attempt": attempt, "status": "sent", "worker": ""})
        pipe.expire(key, max(1, int(ttl)))
        pipe.execute()

    def half_move(self, job_id: str, attempt: str, allowed: tuple[str, ...], to: str, worker: str = "") -> str:
        """Move the job's half from a status in ``allowed`` to ``to`` ("ok", or why not: its status,
        "stale" for another attempt's half, "not_owner", "missing")."""
        return self._half_move(keys=[f"{P}half:{job_id}"], args=[",".join(allowed), to, attempt, worker])

    def half(self, job_id: str) -> dict[str, str]:
        return self.r.hgetall(f"{P}half:{job_id}")

    def holder(self, job_id: str) -> str | None:
        return self.r.hget(job_key(job_id), "worker")

    def set_progress(self, job_id: str, stage: str, done: int, total: int, *, eta_seconds: float | None = None) -> None:
        pipe = self.r.pipeline()
        pipe.hset(job_key(job_id), "progress", json.dumps({"stage": stage, "done": done, "total": total,
                                                           "eta_seconds": eta_seconds}))
        pipe.hincrby(job_key(job_id), "rev", 1)
        pipe.execute()

    def set_spec(self, job_id: str, spec: dict) -> None:
        """The spec as the engine resolved it (worker/tasks.py): what the status and re-runs show."""
        pipe = self.r.pipeline()
        pipe.hset(job_key(job_id), "spec", json.dumps(spec, sort_keys=True))
        pipe.hincrby(job_key(job_id), "rev", 1)
        pipe.execute()

    def cancel_requested(self, job_id: str) -> bool:
        return self.r.hget(job_key(job_id), "cancel_requested") == "1"

    def orphans(self, stale_seconds: float) -> list[tuple[str, int]]:
        """Running jobs whose worker stopped beating: (job id, attempts) to hand to a live worker."""
        alive = set(self.workers_alive(stale_seconds))
        out = []
        for jid in self.r.zrangebyscore(RUNNING, "-inf", time.time() - stale_seconds):
            worker, status, attempts = self.r.hmget(job_key(jid), "worker", "status", "attempts")
            if status == "running" and worker not in alive:
                out.append((jid, int(attempts or 0)))
        return out

    def mark_resent(self, job_id: str, attempts: int, ttl: float) -> bool:
        """True for the one sweeper that gets to re-send this attempt (SET NX)."""
        return bool(self.r.set(f"{P}resent:{job_id}:{attempts}", "1", nx=True, ex=max(1, int(ttl))))

    def heartbeat(self, worker: str) -> None:
        self.r.zadd(WORKERS, {worker: time.time()})

    def worker_gone(self, worker: str) -> None:
        self.r.zrem(WORKERS, worker)
        self.r.hdel(WORKER_INFO, worker)

    def publish_worker(self, info: WorkerInfo) -> None:
        self.r.hset(WORKER_INFO, info.name, info.model_dump_json())

    def worker_infos(self, stale_seconds: float) -> list[WorkerInfo]:
        """What every live worker last published (a worker gone silent is left out)."""
        alive = self.workers_alive(stale_seconds)
        raw = self.r.hmget(WORKER_INFO, alive) if alive else []
        return [WorkerInfo.model_validate_json(v) for v in raw if v]

    def count_cache(self, cache: str, outcome: str, n: int = 1) -> None:
        if n:
            self.r.hincrby(CACHE_COUNTS, f"{cache}|{outcome}", n)

    def cache_counts(self) -> dict[tuple[str, str], int]:
        """(cache, outcome) -> count: ``activations`` hit/miss/disabled per model scanned, ``models``
        hit/miss per model a job needed (the worker's loaded-model LRU)."""
        out = {}
        for k, v in self.r.hgetall(CACHE_COUNTS).items():
            cache, _, outcome = k.partition("|")
            out[(cache, outcome)] = int(v)
        return out

    def observe_duration(self, seconds: float) -> None:
        pipe = self.r.pipeline()
        for b in DURATION_BUCKETS:
            if seconds <= b:
                pipe.hincrby(DURATIONS, f"le_{b}", 1)
        pipe.hincrby(DURATIONS, "count", 1)
        pipe.hincrbyfloat(DURATIONS, "sum", seconds)
        pipe.execute()

    def observe_stage(self, stage: str, seconds: float) -> None:
        """One finished stage of a job (worker/tasks.py), by its family (``influence``, ``clean``...)."""
        pipe = self.r.pipeline()
        for b in STAGE_BUCKETS:
            if seconds <= b:
                pipe.hincrby(STAGE_DURATIONS, f"{stage}|le_{b}", 1)
        pipe.hincrby(STAGE_DURATIONS, f"{stage}|count", 1)
        pipe.hincrbyfloat(STAGE_DURATIONS, f"{stage}|sum", seconds)
        pipe.execute()

    def stage_durations(self) -> dict[str, dict[str, float]]:
        """stage -> {"le_<b>": n, "count": n, "sum": s}."""
        out: dict[str, dict[str, float]] = {}
        for k, v in self.r.hgetall(STAGE_DURATIONS).items():
            stage, _, field = k.rpartition("|")
            out.setdefault(stage, {})[field] = float(v)
        return out

    def count_engine_run(self) -> None:
        self.r.incr(ENGINE_RUNS)

