"""Checking watches: new checkpoints become comparison jobs, finished jobs become judged history.

One pass over a watch (under its lock, so two beat processes or a ``check`` racing the schedule
never work on it at once; the job-create script's link makes the one-job-per-pair rule hold even
without the lock):

1. list the source (watches.checkpoints); a source that cannot be read records ``last_error`` and is
   tried again next interval;
2. each settled checkpoint whose (name, fingerprint) pair has no history entry yet becomes one
   ordinary comparison job (dedup and the activation cache as usual), owned by the watch's owner
   and carrying ``watch_id`` and ``checkpoint``; a settled directory that cannot be compared
   (pickled weights, a config alone, outside the model roots) becomes a ``failed`` entry with no
   job, its ``error`` saying why and how to fix it, and a ``checkpoint.failed`` event;
3. entries whose job finished are judged against the baseline in checkpoint order
   (watches.regressions), and their webhook events are queued, each exactly once.

A checkpoint still being written brings the next check forward to when it will have settled.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from functools import lru_cache
from pathlib import Path

import httpx
from celery import Celery

from circuitdiff.client.wire import TERMINAL
from circuitdiff.spec import ComparisonSpec, ModelRef
from jobs.content import content_key, model_fingerprint
from jobs.queue import WATCH_QUEUE, WEBHOOK_DELIVER, send_job
from jobs.settings import get_settings
from jobs.store import JobStore
from watches import regressions, webhooks
from watches.checkpoints import Checkpoint, natural_key, scan_directory, scan_hub
from watches.store import WatchRecord, WatchStore, entry_key

log = logging.getLogger("circuitdiff.watch")
WAIT = object()  # the baseline is not known yet: judge this entry on a later pass


@lru_cache
def stores() -> tuple[JobStore, WatchStore]:
    jobs = JobStore.from_url(get_settings().require_redis_url())
    return jobs, WatchStore(jobs.r)


def tick(app: Celery) -> None:
    _, ws = stores()
    for did in ws.unsent(older_than=OUTBOX_GRACE):  # events whose emitter died before sending them
        _send(app, ws, did)
    for wid in ws.due(time.time()):
        check(app, wid)
    for wid in ws.with_pending():
        token = ws.lock(wid)
        if token:
            try:
                judge_pending(app, wid)
            finally:
                ws.unlock(wid, token)


def check(app: Celery, wid: str) -> None:
    _, ws = stores()
    token = ws.lock(wid)
    if token is None:
        log.info("watch %s: another check holds it", wid)
        return
    try:
        w = ws.get(wid)
        if w is None or w.status != "active":
            return
        _check(app, ws, w)
        judge_pending(app, wid)
    finally:
        ws.unlock(wid, token)


def _scan(ws: WatchStore, w: WatchRecord) -> list[Checkpoint]:
    src, settings = w.spec["checkpoints"], get_settings()
    if src.get("hub"):
        return scan_hub(src["hub"], src["revisions"])
    directory = Path(w.resolved["directory"])
    if not directory.is_dir():
        raise FileNotFoundError(f"the checkpoint directory {directory} is gone")
    known = ws.fingerprints(w.id)
    found = scan_directory(directory, src["pattern"], src["settle_seconds"], settings.model_roots, known=known)
    present = {c.name for c in found}
    ws.save_fingerprints(w.id, {k: v for k, v in known.items() if k in present})
    return found


def _check(app: Celery, ws: WatchStore, w: WatchRecord) -> None:
    wid, now = w.id, time.time()
    next_at = now + w.spec["interval_seconds"]
    try:
        found = _scan(ws, w)
    except Exception as e:  # noqa: BLE001 - an unreadable source (hub down, directory gone) is recorded, not raised
        log.warning("watch %s: could not list checkpoints: %s", wid, e)
        ws.checked(wid, error=f"could not list checkpoints: {type(e).__name__}: {e}"[:1000])
        ws.schedule(wid, next_at)
        ws.set_next(wid, next_at)
        return
    seen: dict[str, dict] = {}
    errors = []
    for c in found:
        if c.state == "settling":
            seen[c.name] = {"state": c.state, "settles_at": c.settles_at}
            if c.settles_at is not None:
                next_at = min(next_at, c.settles_at + 0.5)
            continue
        key = entry_key(c.name, c.fingerprint)
        if ws.has_entry(wid, key):
            continue
        try:
            if c.state == "refused":
                _refused_entry(app, ws, w, c, key)
                continue
            _new_entry(app, ws, w, c, key)
        except Exception as e:  # noqa: BLE001 - one bad checkpoint must not stop the others
            log.exception("watch %s: checkpoint %s", wid, c.name)
            errors.append(f"{c.name}: {type(e).__name__}: {e}")
    ws.set_seen(wid, seen)
    ws.checked(wid, error="; ".join(errors)[:1000])
    ws.schedule(wid, next_at)
    ws.set_next(wid, next_at)


def _new_entry(app: Celery, ws: WatchStore, w: WatchRecord, c: Checkpoint, key: str) -> None:
    jobs, _ = stores()
    spec = w.spec
    teacher = ModelRef.model_validate(spec["teacher"])
    student = ModelRef(id=spec["checkpoints"]["hub"], revision=c.revision) if c.revision else ModelRef(id=c.path)
    cs = ComparisonSpec.model_validate({**spec["comparison"], "teacher": teacher.model_dump(),
                                        "student": student.model_dump(), "dataset": w.resolved.get("dataset")}
                                       ).resolve_known()  # as a submission resolves it (service/submission.py)
    fps = {"teacher": model_fingerprint(teacher), "student": c.fingerprint,
           **{f"controls.{i}": model_fingerprint(ref) for i, ref in enumerate(cs.controls)}}
    outcome = jobs.create(
        owner=w.owner, spec=cs.model_dump(mode="json"), content_key=content_key(cs, fps, w.resolved["dataset_digest"]),
        fingerprints=fps, link=(ws.link_key(w.id), key), extra={"watch_id": w.id, "checkpoint": c.name},
    )
    job = jobs.get(outcome.job_id)
    # "linked" without a history entry: an earlier check stopped between the two; its message may be lost
    if outcome.kind == "new" or (outcome.kind == "linked" and job and job.status == "queued"):
        send_job(app, outcome.job_id)
        jobs.mark_sent(outcome.job_id)
    ws.add_entry(w.id, key, {
        "checkpoint": c.name, "fingerprint": c.fingerprint, "job_id": outcome.job_id, "order": c.order,
        "status": job.status if job else "queued", "created_at": time.time(), "judged": False,
        "verdict": None, "alignment": None, "alignment_ci95": None, "student_logit_diff": None, "student_performs_task": None,
        "regression": None, "reasons": [],
    })
    log.info("watch %s: checkpoint %s -> job %s (%s)", w.id, c.name, outcome.job_id, outcome.kind)


def _refused_entry(app: Celery, ws: WatchStore, w: WatchRecord, c: Checkpoint, key: str) -> None:
    entry = {
        "checkpoint": c.name, "fingerprint": c.fingerprint, "job_id": None, "order": c.order, "status": "failed",
        "created_at": time.time(), "judged": True, "verdict": None, "alignment": None, "alignment_ci95": None,
        "student_logit_diff": None, "student_performs_task": None, "regression": None, "reasons": [],
        "error": {"code": "checkpoint_refused", "detail": f"{c.name}: {c.reason}", "fix": c.fix},
    }
    if ws.add_entry(w.id, key, entry):
        log.warning("watch %s: checkpoint %s refused: %s", w.id, c.name, c.reason)
    _emit(app, ws, w, key, entry, ["checkpoint.failed"])  # once per entry and event, even if re-run


def ordered(history: dict[str, dict]) -> list[tuple[str, dict]]:
    """Checkpoint order: revision date (hub commits), then natural name order, then first seen."""
    return sorted(history.items(), key=lambda kv: (kv[1].get("order") or 0, natural_key(kv[1]["checkpoint"]),
                                                   kv[1]["created_at"]))


def _baseline(rule: str, items: list[tuple[str, dict]], key: str):
    idx = next(i for i, (k, _) in enumerate(items) if k == key)
    earlier = [e for _, e in items[:idx]]
    me = items[idx][1]
    if rule in ("first", "previous"):
        if any(e["status"] not in TERMINAL for e in earlier):
            return WAIT
        done = [e for e in earlier if e["status"] == "succeeded"]
        if not done:
            return None  # this one is the first that succeeded: it is the baseline
        return done[0] if rule == "first" else done[-1]
    if me["checkpoint"] == rule:
        return None
    named = [e for _, e in items if e["checkpoint"] == rule]
    if not named or any(e["status"] not in TERMINAL for e in named):
        return WAIT  # the named baseline has not been compared yet: judged once it has (README, watches)
    done = [e for e in named if e["status"] == "succeeded"]
    return done[-1] if done else None


def judge_pending(app: Celery, wid: str) -> None:
    jobs, ws = stores()
    w = ws.get(wid)
    pending = ws.pending(wid)
    if w is None or not pending:
        ws.settle_pending(wid)
        return
    history = ws.history(wid)
    items = ordered(history)
    data_dir = get_settings().data_dir
    for key, e in items:
        if key not in pending:
            continue
        if e.get("judged"):
            ws.save_entry(wid, key, e, judged=True)
            continue
        job = jobs.get(e["job_id"]) if e.get("job_id") else None
        status = job.status if job else "failed"
        if status not in TERMINAL:
            if status != e["status"]:
                e["status"] = status
                ws.save_entry(wid, key, e, judged=False)
            continue
        e["status"] = status
        if status != "succeeded":
            e["error"] = (job.error if job else None) or {"code": "job_missing", "detail": "the job record is gone"}
            e["judged"] = True
            ws.save_entry(wid, key, e, judged=True)
            _emit(app, ws, w, key, e, ["checkpoint.failed"])
            continue
        if "detail" not in e:
            result = json.loads((data_dir / job.result).read_text())
            m = regressions.metrics(result)
            e["detail"] = {"influence": m.pop("influence"), "pairs": m.pop("pairs"),
                           "teacher_influence": m.pop("teacher_influence")}
            e.update(m)
        base = _baseline(w.spec["baseline"], items, key)
        if base is WAIT:
            ws.save_entry(wid, key, e, judged=False)
            continue
        e["baseline"] = base["checkpoint"] if base else None
        e["reasons"] = regressions.judge(e, base, w.spec["alerts"])
        e["regression"] = bool(e["reasons"])
        e["judged"] = True
        ws.save_entry(wid, key, e, judged=True)
        _emit(app, ws, w, key, e, ["checkpoint.compared"] + (["regression.detected"] if e["regression"] else []))
    ws.settle_pending(wid)


def _emit(app: Celery, ws: WatchStore, w: WatchRecord, key: str, entry: dict, events: list[str]) -> None:
    if not w.spec["alerts"].get("webhook"):
        return
    for event in events:
        did = "d" + secrets.token_hex(8)
        body = webhooks.event_body(event, w, entry, get_settings().public_base_url)
        if ws.emit(w.id, key, event, did, body):
            _send(app, ws, did)


def _send(app: Celery, ws: WatchStore, delivery_id: str) -> None:
    try:
        app.send_task(WEBHOOK_DELIVER, args=[delivery_id, 1], queue=WATCH_QUEUE)
    except Exception as e:  # noqa: BLE001 - stays in the outbox; the next tick sends it
        log.warning("delivery %s not queued (%s); the next tick retries", delivery_id, e)
        return
    ws.sent(delivery_id)


OUTBOX_GRACE = 30.0  # seconds an emitter has between recording an event and sending it


def deliver(app: Celery, delivery_id: str, attempt: int) -> None:
    _, ws = stores()
    settings = get_settings()
    d = ws.delivery_body(delivery_id)
    w = ws.get(d["watch_id"]) if d else None
    hook = w and w.status != "deleted" and w.spec["alerts"].get("webhook")
    if not hook:
        return
    body = d["body"].encode()
    item = {"id": delivery_id, "event": d["event"], "attempt": attempt, "at": time.time(), "url": hook["url"],
            "status_code": None, "ok": False, "error": None, "next_attempt_at": None}
    retry = True
    try:
        r = webhooks.post(hook["url"], body, allow_private=settings.webhook_allow_private,
                          timeout=settings.webhook_timeout_seconds,
                          headers={"Content-Type": "application/json", webhooks.SIGNATURE_HEADER: webhooks.sign(body, w.secret),
                                   "X-Circuitdiff-Event": d["event"], "X-Circuitdiff-Delivery": delivery_id,
                                   "User-Agent": "circuitdiff-webhook"})
        item["status_code"] = r.status_code
        item["ok"] = 200 <= r.status_code < 300
    except webhooks.TargetUnresolved as e:  # DNS may come back: retried
        item["error"] = f"unresolved: {e}"
    except webhooks.TargetRefused as e:
        item["error"], retry = f"refused: {e}", False
    except httpx.HTTPError as e:
        item["error"] = f"{type(e).__name__}: {e}"[:500]
    if not item["ok"] and retry and attempt < settings.webhook_max_attempts:
        delay = settings.webhook_backoff_seconds * 2 ** (attempt - 1)
        item["next_attempt_at"] = time.time() + delay
        app.send_task(WEBHOOK_DELIVER, args=[delivery_id, attempt + 1], queue=WATCH_QUEUE, countdown=delay)
    ws.record_delivery(w.id, item)
