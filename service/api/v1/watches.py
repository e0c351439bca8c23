"""/v1/watches: compare every new checkpoint of a distillation run against its teacher.

The API only records watches and answers about them; Celery beat and the watch worker do the
checking (worker/watching.py). The jobs a watch creates are ordinary comparisons of its owner.
"""

from __future__ import annotations

import fnmatch
from datetime import datetime
from pathlib import Path as FsPath
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from circuitdiff.client.wire import TERMINAL, Status
from circuitdiff.vocabulary import Verdict
from circuitdiff.report.trend import render_trend
from circuitdiff.spec import ComparisonSpec
from jobs.queue import send_watch_check
from watches.checkpoints import natural_key
from watches.request import Alerts, WatchSpec
from watches.store import WatchRecord, WatchStatus, WatchStore
from watches.webhooks import TargetRefused, check_target

from ...headers import page_policy
from ...deps import OwnerDep, ProducerDep, SettingsDep, StoreDep
from ...modelroots import resolve_under_roots
from ...problems import Problem, ProblemDetail, validation_problem
from ...schemas import ts
from ...submission import prepare

router = APIRouter(prefix="/v1/watches", tags=["watches"])
PROBLEM = {"model": ProblemDetail, "content": {"application/problem+json": {}}}
SPEC_ONLY = ("teacher", "student")


class WebhookOut(BaseModel):
    url: str
    has_secret: bool = Field(description="the secret itself is never returned")


class AlertsOut(BaseModel):
    alignment_drop: float | None
    logit_diff_drop_pct: float | None
    stops_performing: bool
    webhook: WebhookOut | None


class WatchCounts(BaseModel):
    checkpoints: int = Field(description="history entries: (checkpoint, fingerprint) pairs given a job")
    pending: int = Field(description="entries whose job has not finished or not been judged yet")
    succeeded: int
    failed: int
    regressions: int
    settling: int = Field(description="checkpoints seen by the last check but still being written")


class WatchLinks(BaseModel):
    self: str
    history: str
    report: str
    deliveries: str
    check: str


class Watch(BaseModel):
    id: str
    name: str
    status: WatchStatus
    teacher: dict[str, Any]
    checkpoints: dict[str, Any]
    comparison: dict[str, Any]
    interval_seconds: int
    baseline: str
    alerts: AlertsOut
    created_at: datetime
    last_checked_at: datetime | None
    last_error: str | None
    next_check_at: datetime | None
    counts: WatchCounts
    links: WatchLinks


class WatchList(BaseModel):
    items: list[Watch]
    next_cursor: str | None = None


class WatchPatch(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    paused: bool | None = Field(None, description="true: stop checking; false: resume (checked at once)")
    alerts: Alerts | None = Field(None, description="replaces the alert rules (a webhook needs its secret again)")
    interval_seconds: int | None = Field(None, ge=10, le=30 * 86400)


class HistoryItem(BaseModel):
    checkpoint: str
    fingerprint: str = Field(description="sha256 of the weights (directories) or hub:repo@commit")
    job_id: str | None = Field(description="null when the checkpoint was refused before any job (see error)")
    status: Status
    alignment: float | None
    verdict: Verdict | None = Field(None, description="the comparison's verdict (result alignment.verdict)")
    alignment_ci95: list[float] | None
    chance_high: float | None = Field(None, description="the top of the chance null's 95% interval: a score at or "
                                                        "below it is no evidence of kept structure")
    student_logit_diff: float | None
    student_performs_task: bool | None
    regression: bool | None = Field(description="null until judged; never true for a failed job")
    reasons: list[dict[str, Any]] = Field(
        description="each fired rule: `rule`, `message` (a sentence with rounded numbers) and the raw numbers as fields")
    baseline: str | None = Field(None, description="the checkpoint this one was judged against")
    error: dict[str, Any] | None = Field(
        None, description="why it failed: the job's error, or `checkpoint_refused` with `detail` and `fix` "
                          "(e.g. pickled weights found) when no job could be made")
    created_at: datetime


class History(BaseModel):
    items: list[HistoryItem]


class Delivery(BaseModel):
    id: str
    event: str
    attempt: int
    at: datetime
    url: str
    status_code: int | None
    ok: bool
    error: str | None
    next_attempt_at: datetime | None


class DeliveryList(BaseModel):
    items: list[Delivery]


def get_watch_store(store: StoreDep) -> WatchStore:
    return WatchStore(store.r)  # the job store's connection pool; the scripts register lazily


WatchStoreDep = Annotated[WatchStore, Depends(get_watch_store)]


def owned_watch(watch_id: Annotated[str, Path(max_length=64)], owner: OwnerDep, ws: WatchStoreDep) -> WatchRecord:
    """The watch if the caller owns it; another key's watch answers 404 just like a missing one."""
    w = ws.get(watch_id) if watch_id.isalnum() else None
    if w is None or w.owner != owner:
        raise Problem.field("watch_not_found", "watch_id", f"no watch {watch_id!r}")
    return w


OwnedWatchDep = Annotated[WatchRecord, Depends(owned_watch)]


def _ordered(history: dict[str, dict]) -> list[dict]:
    return [e for _, e in sorted(history.items(), key=lambda kv: (
        kv[1].get("order") or 0, natural_key(kv[1]["checkpoint"]), kv[1]["created_at"]))]


def watch_body(w: WatchRecord, ws: WatchStore) -> Watch:
    spec, wid = w.spec, w.id
    hist = ws.history(wid).values()
    hook = spec["alerts"].get("webhook")
    base = f"/v1/watches/{wid}"
    return Watch(
        id=wid, name=w.name, status=w.status, teacher=spec["teacher"], checkpoints=spec["checkpoints"],
        comparison=spec["comparison"], interval_seconds=spec["interval_seconds"], baseline=spec["baseline"],
        alerts=AlertsOut(**{**spec["alerts"], "webhook": WebhookOut(url=hook["url"], has_secret=bool(w.secret))
                            if hook else None}),
        created_at=ts(w.created_at), last_checked_at=ts(w.last_checked_at), last_error=w.last_error or None,
        next_check_at=ts(w.next_check_at) if w.status == "active" else None,
        counts=WatchCounts(
            checkpoints=len(hist), pending=sum(not e.get("judged") for e in hist),
            succeeded=sum(e["status"] == "succeeded" for e in hist),
            failed=sum(e["status"] in ("failed", "cancelled") for e in hist),
            regressions=sum(bool(e.get("regression")) for e in hist),
            settling=sum(s["state"] == "settling" for s in ws.seen(wid).values()),
        ),
        links=WatchLinks(self=base, history=base + "/history", report=base + "/report",
                         deliveries=base + "/deliveries", check=base + "/check"),
    )


def _check_baseline(spec: WatchSpec, directory: FsPath) -> None:
    """A named baseline must be a checkpoint the directory holds now: a name that matches nothing
    would leave every checkpoint unjudged. (A hub source is not listed by the API: its entries wait,
    unjudged, until the named revision has been compared; README, watches.)"""
    name = spec.baseline
    if name in ("first", "previous"):
        return
    if not fnmatch.fnmatchcase(name, spec.checkpoints.pattern):
        raise Problem.field("unknown_baseline", "baseline",
                            f"{name!r} does not match the checkpoint pattern {spec.checkpoints.pattern!r}",
                            'use "first", "previous", or the name of a checkpoint the pattern matches')
    if not (directory / name).is_dir():
        have = sorted((p.name for p in directory.iterdir() if p.is_dir()
                       and fnmatch.fnmatchcase(p.name, spec.checkpoints.pattern)), key=natural_key)
        listing = f" (it holds {', '.join(have[:8])}{', …' if len(have) > 8 else ''})" if have else " (it holds none yet)"
        raise Problem.field("unknown_baseline", "baseline",
                            f"no checkpoint {name!r} in the watched directory{listing}",
                            'use "first" or "previous", or create the watch once that checkpoint exists')


def _check_webhook(alerts: Alerts, allow_private: bool) -> None:
    if alerts.webhook is None:
        return
    try:
        check_target(alerts.webhook.url, allow_private=allow_private)
    except TargetRefused as e:
        raise Problem.field("webhook_target_refused", "alerts.webhook.url", str(e))


@router.post("", status_code=201, response_model=Watch, responses={401: PROBLEM, 413: PROBLEM, 422: PROBLEM},
             summary="Create a watch")
def create_watch(spec: WatchSpec, response: Response, owner: OwnerDep, settings: SettingsDep, ws: WatchStoreDep,
                 producer: ProducerDep):
    """Checks at once, then every ``interval_seconds``. The directory resolves under the allowed model
    roots like a local model path; the comparison template is validated as a full comparison."""
    bad = [k for k in SPEC_ONLY if k in spec.comparison]
    if bad:
        raise Problem.field("unknown_field", f"comparison.{bad[0]}", "the watch sets teacher and student itself",
                            "name the teacher at the top level and remove it from comparison")
    try:  # the template as a comparison of the teacher with itself: every field checked as in POST /v1/comparisons
        template = ComparisonSpec.model_validate({**spec.comparison, "teacher": spec.teacher.model_dump(),
                                                  "student": spec.teacher.model_dump()})
    except ValidationError as e:
        errors = [{**err, "loc": ("comparison", *err["loc"])} for err in e.errors()]
        raise validation_problem(errors, strip_body=False) from None
    resolved: dict[str, Any] = {}
    if spec.checkpoints.directory is not None:
        real = resolve_under_roots(spec.checkpoints.directory, settings.model_roots, "checkpoints.directory",
                                   want_dir=True)
        resolved["directory"] = str(real)
        _check_baseline(spec, real)
    prepared = prepare(template, settings, owner)
    resolved["dataset"] = prepared.spec.dataset
    resolved["dataset_digest"] = prepared.dataset_digest
    _check_webhook(spec.alerts, settings.webhook_allow_private)
    wid = ws.create(owner, spec, resolved)
    try:
        send_watch_check(producer, wid)
    except Exception:  # noqa: BLE001 - the watch is due now anyway: the next beat tick checks it
        pass
    response.headers["Location"] = f"/v1/watches/{wid}"
    return watch_body(ws.get(wid), ws)


@router.get("", response_model=WatchList, responses={401: PROBLEM, 422: PROBLEM}, summary="List your watches")
def list_watches(owner: OwnerDep, ws: WatchStoreDep, limit: int = Query(20, ge=1, le=100),
                 cursor: str | None = Query(None, max_length=64, pattern="^[0-9a-z]+$")):
    """Newest first; ``next_cursor`` pages on to older watches (deleted ones included, marked)."""
    ids = ws.list_ids(owner, before=cursor, limit=limit + 1)
    items = [watch_body(w, ws) for wid in ids[:limit] if (w := ws.get(wid))]
    return WatchList(items=items, next_cursor=ids[limit - 1] if len(ids) > limit else None)


@router.get("/{watch_id}", response_model=Watch, responses={401: PROBLEM, 404: PROBLEM}, summary="A watch")
def get_watch(ws: WatchStoreDep, w: OwnedWatchDep):
    return watch_body(w, ws)


@router.patch("/{watch_id}", response_model=Watch, responses={401: PROBLEM, 404: PROBLEM, 409: PROBLEM, 422: PROBLEM},
              summary="Pause, resume, change alerts or interval")
def patch_watch(patch: WatchPatch, ws: WatchStoreDep, settings: SettingsDep, w: OwnedWatchDep):
    if w.status == "deleted":
        raise Problem("watch_deleted", "the watch was deleted; create a new one")
    spec = dict(w.spec)
    secret = None
    if patch.alerts is not None:
        _check_webhook(patch.alerts, settings.webhook_allow_private)
        alerts = patch.alerts.model_dump(mode="json")
        secret = alerts["webhook"].pop("secret") if alerts.get("webhook") else ""
        spec["alerts"] = alerts
    if patch.interval_seconds is not None:
        spec["interval_seconds"] = patch.interval_seconds
    status = None if patch.paused is None else ("paused" if patch.paused else "active")
    ws.update(w.id, spec=spec, secret=secret, status=status,
              interval=patch.interval_seconds if w.status == "active" and status is None else None)
    return watch_body(ws.get(w.id), ws)


@router.delete("/{watch_id}", response_model=Watch, responses={401: PROBLEM, 404: PROBLEM}, summary="Stop a watch")
def delete_watch(ws: WatchStoreDep, store: StoreDep, w: OwnedWatchDep):
    """No more checks, and the watch's queued and running jobs are cancelled (a running one stops at
    its next component boundary); finished jobs, the history and the report stay readable."""
    ws.update(w.id, status="deleted")
    for job_id in ws.job_ids(w.id):
        job = store.get(job_id)
        if job is not None and job.watch_id == w.id and job.status not in TERMINAL:
            store.cancel(job_id)
    return watch_body(ws.get(w.id), ws)


@router.post("/{watch_id}/check", status_code=202, response_model=Watch,
             responses={401: PROBLEM, 404: PROBLEM, 409: PROBLEM}, summary="Check now")
def check_now(ws: WatchStoreDep, producer: ProducerDep, w: OwnedWatchDep):
    """Looks for new checkpoints without waiting for the interval (a paused watch is checked too
    only when resumed)."""
    if w.status != "active":
        code = {"paused": "watch_paused", "deleted": "watch_deleted"}[w.status]
        raise Problem(code, f"the watch is {w.status}", extra={"watch_status": w.status})
    ws.request_check(w.id)
    try:
        send_watch_check(producer, w.id)
    except Exception:  # noqa: BLE001 - due now: the next beat tick checks it
        pass
    return watch_body(w, ws)


@router.get("/{watch_id}/history", response_model=History, responses={401: PROBLEM, 404: PROBLEM},
            summary="Every compared checkpoint, in checkpoint order")
def get_history(ws: WatchStoreDep, w: OwnedWatchDep):
    entries = _ordered(ws.history(w.id))
    return History(items=[HistoryItem(**{**e, "created_at": ts(e["created_at"])}) for e in entries])


@router.get("/{watch_id}/deliveries", response_model=DeliveryList, responses={401: PROBLEM, 404: PROBLEM},
            summary="Webhook delivery attempts, newest first")
def get_deliveries(ws: WatchStoreDep, w: OwnedWatchDep):
    items = ws.deliveries(w.id)
    return DeliveryList(items=[Delivery(**{**d, "at": ts(d["at"]), "next_attempt_at": ts(d.get("next_attempt_at"))})
                               for d in items])


@router.get("/{watch_id}/report", response_class=HTMLResponse,
            responses={200: {"content": {"text/html": {}}}, 401: PROBLEM, 404: PROBLEM},
            summary="The trend report (self-contained HTML)")
def get_report(request: Request, ws: WatchStoreDep, settings: SettingsDep, w: OwnedWatchDep):
    """Each point and row links to its checkpoint's job and report: under the public base URL when
    one is set, else under the address this request came to (so a saved copy still links back)."""
    entries = _ordered(ws.history(w.id))
    base = settings.public_base_url or str(request.base_url).rstrip("/")
    html = render_trend(w.model_dump(), entries, base_url=base)
    return HTMLResponse(html, headers={"Content-Security-Policy": page_policy(html.encode())})
