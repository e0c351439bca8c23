"""Watches: compare every new checkpoint of a distillation run against its teacher (issue 16).

A watch names a teacher, a checkpoint source, a comparison template, a schedule, a baseline and
alert rules (the request body, :mod:`watches.request`). This module holds the Redis store, whose
records are :class:`WatchRecord`; the worker checks watches (worker/watching.py), the API serves them (service/api/v1/watches.py).

Redis layout (one hash per watch, like jobs):

- ``cd:watch:<id>``: id, owner, name, spec (JSON, webhook secret removed), secret, status
  (``active | paused | deleted``), created_at, last_checked_at, last_error, next_check_at,
  resolved (JSON: the real directory, the dataset and its digest, fixed at creation).
- ``cd:watches:due``: zset id -> next check time; only active watches are in it.
- ``cd:watches:<owner>``: lexicographic zset of the owner's watch ids (pages like jobs).
- ``cd:watch:<id>:jobs``: (checkpoint, fingerprint) -> job id. Set by the job-create script itself
  (jobs.store_scripts.CREATE), which is what makes a pair get exactly one job however many beat
  processes, ``check`` calls or restarted checks race for it.
- ``cd:watch:<id>:history``: the same pair -> history entry (JSON); ``:pending`` the pairs whose job
  has not been judged yet; ``:events`` which webhook events were emitted (once each).
- ``cd:watch:<id>:seen``: checkpoint name -> what the last check saw of a not-yet-compared one
  (settling).
- ``cd:watch:<id>:fingerprints``: checkpoint name -> weight-file stamp and sha256, so a large
  checkpoint is hashed once, not at every check.
- ``cd:watches:pending``: the watches that have entries to judge (each beat tick visits them).
- ``cd:watch:<id>:deliveries``: webhook delivery attempts, newest first (bounded).
- ``cd:delivery:<id>`` (event body) and ``cd:webhooks:outbox``: an event is recorded (once per
  entry and event) in the same script that puts it in the outbox, so a check that dies before
  sending it leaves it there for the next tick: events are delivered at least once, and a
  receiver dedups by the ``X-Circuitdiff-Delivery`` header.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any, Literal

import redis
from pydantic import BaseModel, ConfigDict

from jobs.store import decode_hash

from .request import WatchSpec

P = "cd:"
DUE = P + "watches:due"
WITH_PENDING = P + "watches:pending"  # set of watch ids with entries still to judge
OUTBOX = P + "webhooks:outbox"  # zset delivery id -> emit time, until its first send succeeded
MAX_DELIVERIES = 200
WatchStatus = Literal["active", "paused", "deleted"]


class WatchRecord(BaseModel):
    """One watch as ``cd:watch:<id>`` holds it, decoded. ``spec`` is the public form of the
    :class:`~watches.request.WatchSpec` (checkpoint source as it applies, the webhook without its
    secret), which the API answers with; the secret is kept apart.

    Read with :meth:`from_redis`: a field an older record lacks (or holds empty) takes its default.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str
    owner: str
    name: str
    spec: dict[str, Any]
    secret: str = ""  # the webhook's HMAC key; "" without a webhook
    status: WatchStatus
    created_at: float
    last_checked_at: float | None = None
    last_error: str = ""
    next_check_at: float | None = None
    resolved: dict[str, Any] = {}  # fixed at creation: the real directory, the dataset and its digest

    @classmethod
    def from_redis(cls, raw: dict[str, str]) -> "WatchRecord":
        return cls.model_validate(decode_hash(raw, ("spec", "resolved")))


def watch_key(wid: str) -> str:
    return f"{P}watch:{wid}"


def owner_key(owner: str) -> str:
    return f"{P}watches:{owner}"


def entry_key(checkpoint: str, fingerprint: str) -> str:
    return f"{checkpoint}@{fingerprint}"


def new_watch_id() -> str:
    return f"w{time.time_ns() // 1_000_000:012x}{secrets.token_hex(5)}"


# KEYS: events hash, delivery hash, outbox.  ARGV: event field, delivery id, watch id, event, body, now.
_EMIT = """
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('HSET', KEYS[2], 'watch_id', ARGV[3], 'event', ARGV[4], 'body', ARGV[5])
redis.call('ZADD', KEYS[3], ARGV[6], ARGV[2])
return 1
"""

_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class WatchStore:
    def __init__(self, client: redis.Redis):
        self.r = client
        self._unlock = client.register_script(_UNLOCK)
        self._emit = client.register_script(_EMIT)

    # ------------------------------------------------------------------ records
    def create(self, owner: str, spec: WatchSpec, resolved: dict) -> str:
        wid = new_watch_id()
        now = time.time()
        public = spec.model_dump(mode="json")
        public["checkpoints"] = spec.checkpoints.public()
        secret = ""
        if public["alerts"].get("webhook"):
            secret = public["alerts"]["webhook"].pop("secret")
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(watch_key(wid), mapping={
            "id": wid, "owner": owner, "name": spec.name, "spec": json.dumps(public, sort_keys=True),
            "secret": secret, "status": "active", "created_at": repr(now), "last_checked_at": "",
            "last_error": "", "next_check_at": repr(now), "resolved": json.dumps(resolved, sort_keys=True),
        })
        pipe.zadd(owner_key(owner), {wid: 0})
        pipe.zadd(DUE, {wid: now})  # first check at once
        pipe.execute()
        return wid

    def get(self, wid: str) -> WatchRecord | None:
        raw = self.r.hgetall(watch_key(wid))
        return WatchRecord.from_redis(raw) if raw else None

    def list_ids(self, owner: str, *, before: str | None, limit: int) -> list[str]:
        hi = f"({before}" if before else "+"
        return self.r.zrevrangebylex(owner_key(owner), hi, "-", start=0, num=limit)

    def update(self, wid: str, *, spec: dict | None = None, secret: str | None = None,
               status: WatchStatus | None = None, interval: int | None = None) -> None:
        fields: dict[str, str] = {}
        if spec is not None:
            fields["spec"] = json.dumps(spec, sort_keys=True)
        if secret is not None:
            fields["secret"] = secret
        if status is not None:
            fields["status"] = status
        pipe = self.r.pipeline(transaction=True)
        if fields:
            pipe.hset(watch_key(wid), mapping=fields)
        if status in ("paused", "deleted"):
            pipe.zrem(DUE, wid)
        elif status == "active" or interval is not None:
            pipe.zadd(DUE, {wid: time.time() if status == "active" else time.time() + interval})
        pipe.execute()

    def request_check(self, wid: str) -> None:
        """Due now: the next tick checks it even if the check task sent with it were lost."""
        self.r.zadd(DUE, {wid: 0}, xx=True)

    # ------------------------------------------------------------------ scheduling
    def due(self, now: float) -> list[str]:
        return self.r.zrangebyscore(DUE, "-inf", now)

    def with_pending(self) -> list[str]:
        return list(self.r.smembers(WITH_PENDING))

    def settle_pending(self, wid: str) -> None:
        """Drop the watch from the judging round once nothing of it waits (called under its lock)."""
        if not self.r.scard(f"{watch_key(wid)}:pending"):
            self.r.srem(WITH_PENDING, wid)

    def schedule(self, wid: str, at: float) -> None:
        self.r.zadd(DUE, {wid: at}, xx=True)  # xx: a paused or deleted watch stays out

    def checked(self, wid: str, error: str = "") -> None:
        self.r.hset(watch_key(wid), mapping={"last_checked_at": repr(time.time()), "last_error": error})

    def set_next(self, wid: str, at: float) -> None:
        self.r.hset(watch_key(wid), "next_check_at", repr(at))

    def lock(self, wid: str, ttl: int = 300) -> str | None:
        """One check or judging pass per watch at a time (a token to unlock with), or None."""
        token = secrets.token_hex(8)
        return token if self.r.set(f"{watch_key(wid)}:lock", token, nx=True, ex=ttl) else None

    def unlock(self, wid: str, token: str) -> None:
        self._unlock(keys=[f"{watch_key(wid)}:lock"], args=[token])

    # ------------------------------------------------------------------ checkpoints and history
    def link_key(self, wid: str) -> str:
        return f"{watch_key(wid)}:jobs"

    def job_ids(self, wid: str) -> list[str]:
        """Every job the watch has made (the link hash, which holds a job even before its entry)."""
        return sorted(set(self.r.hvals(self.link_key(wid))))

    def has_entry(self, wid: str, key: str) -> bool:
        return bool(self.r.hexists(f"{watch_key(wid)}:history", key))

    def add_entry(self, wid: str, key: str, entry: dict) -> bool:
        """Record a new (checkpoint, fingerprint) pair once; it waits in ``pending`` to be judged."""
        pipe = self.r.pipeline(transaction=True)
        pipe.hsetnx(f"{watch_key(wid)}:history", key, json.dumps(entry, sort_keys=True))
        pipe.sadd(f"{watch_key(wid)}:pending", key)
        pipe.sadd(WITH_PENDING, wid)
        added, _, _ = pipe.execute()  # an existing, judged pair put back in pending is dropped by the next pass
        return bool(added)

    def save_entry(self, wid: str, key: str, entry: dict, *, judged: bool) -> None:
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(f"{watch_key(wid)}:history", key, json.dumps(entry, sort_keys=True))
        if judged:
            pipe.srem(f"{watch_key(wid)}:pending", key)
        pipe.execute()

    def history(self, wid: str) -> dict[str, dict]:
        return {k: json.loads(v) for k, v in self.r.hgetall(f"{watch_key(wid)}:history").items()}

    def pending(self, wid: str) -> set[str]:
        return self.r.smembers(f"{watch_key(wid)}:pending")

    def _read_json_hash(self, key: str) -> dict[str, dict]:
        return {k: json.loads(v) for k, v in self.r.hgetall(key).items()}

    def _replace_json_hash(self, key: str, values: dict[str, dict]) -> None:
        """The hash at ``key`` becomes exactly ``values`` (JSON each), in one transaction."""
        pipe = self.r.pipeline(transaction=True)
        pipe.delete(key)
        if values:
            pipe.hset(key, mapping={k: json.dumps(v) for k, v in values.items()})
        pipe.execute()

    def set_seen(self, wid: str, seen: dict[str, dict]) -> None:
        self._replace_json_hash(f"{watch_key(wid)}:seen", seen)

    def fingerprints(self, wid: str) -> dict[str, dict]:
        """Checkpoint name -> {stamp, fingerprint}: hashes kept across checks and restarts."""
        return self._read_json_hash(f"{watch_key(wid)}:fingerprints")

    def save_fingerprints(self, wid: str, known: dict[str, dict]) -> None:
        self._replace_json_hash(f"{watch_key(wid)}:fingerprints", known)

    def seen(self, wid: str) -> dict[str, dict]:
        return self._read_json_hash(f"{watch_key(wid)}:seen")

    # ------------------------------------------------------------------ events and deliveries
    def emit(self, wid: str, key: str, event: str, delivery_id: str, body: bytes) -> bool:
        """Record event ``event`` of entry ``key`` once, with its delivery, in the outbox; False if it
        was emitted before. The caller sends it, then :meth:`sent`; the tick re-sends what stays."""
        return bool(self._emit(keys=[f"{watch_key(wid)}:events", f"{P}delivery:{delivery_id}", OUTBOX],
                               args=[f"{key}|{event}", delivery_id, wid, event, body, repr(time.time())]))

    def sent(self, delivery_id: str) -> None:
        self.r.zrem(OUTBOX, delivery_id)

    def unsent(self, older_than: float) -> list[str]:
        return self.r.zrangebyscore(OUTBOX, "-inf", time.time() - older_than)

    def save_delivery_body(self, delivery_id: str, wid: str, event: str, body: bytes) -> None:
        self.r.hset(f"{P}delivery:{delivery_id}", mapping={"watch_id": wid, "event": event, "body": body})

    def delivery_body(self, delivery_id: str) -> dict | None:
        raw = self.r.hgetall(f"{P}delivery:{delivery_id}")
        return raw or None

    def record_delivery(self, wid: str, item: dict) -> None:
        pipe = self.r.pipeline(transaction=True)
        pipe.lpush(f"{watch_key(wid)}:deliveries", json.dumps(item, sort_keys=True))
        pipe.ltrim(f"{watch_key(wid)}:deliveries", 0, MAX_DELIVERIES - 1)
        pipe.execute()

    def deliveries(self, wid: str, limit: int = MAX_DELIVERIES) -> list[dict]:
        return [json.loads(x) for x in self.r.lrange(f"{watch_key(wid)}:deliveries", 0, limit - 1)]
