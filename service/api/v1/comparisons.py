"""/v1/comparisons: submit, inspect, cancel and list comparison jobs, and fetch what they wrote."""

from __future__ import annotations

import asyncio
import time

import redis

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse

from circuitdiff.client.wire import STATUSES, TERMINAL
from circuitdiff.result import ComparisonResult
from circuitdiff.spec import ComparisonSpec
from jobs.queue import send_job
from jobs.settings import Settings
from jobs.store import JobRecord, JobStore

from ...headers import file_policy, page_policy
from ...deps import OwnedJobDep, OwnerDep, ProducerDep, SettingsDep, StoreDep, owned_job
from ...problems import Problem, ProblemDetail
from ...schemas import Artifact, ArtifactList, JobList, JobStatus, ts
from ...submission import choose_pool, prepare, too_many_queued

router = APIRouter(prefix="/v1/comparisons", tags=["comparisons"])
PROBLEM = {"model": ProblemDetail, "content": {"application/problem+json": {}}}
RETRY_AFTER = {"queued": "5", "running": "2"}


def status_body(job: JobRecord, store: JobStore) -> JobStatus:
    jid = job.id
    base = f"/v1/comparisons/{jid}"
    spec = ComparisonSpec.model_validate(job.spec).resolve().model_dump(mode="json")
    return JobStatus(
        id=jid,
        status=job.status,
        progress=job.progress or None,
        queue_position=store.queue_position(jid) if job.status == "queued" else None,
        attempts=job.attempts,
        cancel_requested=job.cancel_requested,
        created_at=ts(job.created_at),
        started_at=ts(job.started_at),
        attempt_started_at=ts(job.attempt_started_at),
        finished_at=ts(job.finished_at),
        error=job.error or None,
        warnings=job.warnings,
        model_cache_hits=job.model_cache_hits,
        content_key=job.content_key,
        fingerprints=job.fingerprints,
        spec=spec,
        watch_id=job.watch_id,
        checkpoint=job.checkpoint,
        links={"self": base, "result": base + "/result", "artifacts": base + "/artifacts", "report": base + "/report"},
    )


def _status_headers(response: Response, status: str) -> None:
    if status in RETRY_AFTER:
        response.headers["Retry-After"] = RETRY_AFTER[status]


@router.post(
    "",
    status_code=202,
    response_model=JobStatus,
    responses={200: {"model": JobStatus, "description": "an identical comparison exists: that job"},
               400: PROBLEM, 401: PROBLEM, 413: PROBLEM, 415: PROBLEM, 422: PROBLEM,
               429: {**PROBLEM, "description": "too_many_queued: the key's queued limit, with Retry-After"},
               503: PROBLEM},
    summary="Submit a comparison",
)
def submit(
    spec: ComparisonSpec,
    response: Response,
    owner: OwnerDep,
    settings: SettingsDep,
    store: StoreDep,
    producer: ProducerDep,
    idempotency_key: str | None = Header(None, max_length=200, pattern=r"^[\x21-\x7e]+$"),
):
    """Validates everything checkable without weights, then queues the job. An identical comparison
    (same content key) already queued, running or done returns that job with 200 instead. Workers take
    queued jobs in turns between keys (``queue_position`` is the place under that rule); a key with
    ``CIRCUITDIFF_MAX_QUEUED_PER_KEY`` jobs queued gets 429 ``too_many_queued``. A job one of whose
    models needs several GPUs goes to a worker over several (``CIRCUITDIFF_GPUS=0-3``), or is refused
    (422 ``needs_several_gpus``) when none is running."""
    prepared = prepare(spec, settings, owner)
    pool = choose_pool(prepared.spec, settings, store)
    outcome = store.create(
        owner=owner,
        spec=prepared.spec.model_dump(mode="json"),
        content_key=prepared.content_key,
        fingerprints=prepared.fingerprints,
        idempotency_key=idempotency_key,
        body_hash=prepared.content_key,
        queued_limit=settings.max_queued_per_key,
        pool=pool,
    )
    if outcome.kind == "limit":
        raise too_many_queued(outcome.queued, settings, store)
    if outcome.kind == "idem" and outcome.idem_body_hash != prepared.content_key:
        raise Problem.field("idempotency_key_reused", "Idempotency-Key",
                            "this key was already used for a different comparison")
    if outcome.kind == "new":
        try:
            send_job(producer, outcome.job_id, pool=pool)
        except Exception as e:  # broker unreachable: leave nothing behind, let the client retry
            try:
                store.discard(outcome.job_id, owner, prepared.content_key, idempotency_key)
            except Exception:  # noqa: BLE001 - Redis gone too: the record stays marked unsent, and a
                pass  # worker's sweep queues it (worker/liveness.py); a resubmission returns it
            raise Problem("queue_unavailable", f"could not queue the job ({type(e).__name__})",
                          headers={"Retry-After": "5"}) from e
        try:
            store.mark_sent(outcome.job_id)
        except redis.exceptions.RedisError:
            pass  # still marked unsent: the sweep sends a second message, which the claim skips
    else:
        response.status_code = 200
    job = store.get(outcome.job_id)
    response.headers["Location"] = f"/v1/comparisons/{outcome.job_id}"
    _status_headers(response, job.status)
    return status_body(job, store)


@router.get("", response_model=JobList, responses={401: PROBLEM, 422: PROBLEM}, summary="List your comparisons")
def list_jobs(
    owner: OwnerDep,
    store: StoreDep,
    status: str | None = Query(None, pattern=f"^({'|'.join(STATUSES)})$"),
    limit: int = Query(20, ge=1, le=100),
    cursor: str | None = Query(None, max_length=64, pattern="^[0-9a-z]+$"),
):
    """Newest first. ``next_cursor`` pages on to older jobs; it is given only when another job (with
    ``status``, when filtered) exists after this page, so following it never yields an empty page."""
    jobs: list[JobRecord] = []
    before = cursor
    while len(jobs) <= limit:  # one past the page: is there a next one?
        want = limit + 1 - len(jobs)
        ids = store.list_ids(owner, before=before, limit=want, status=status)
        for jid in ids:
            before = jid
            job = store.get(jid)
            # the index and the record move in one script; a job may still have moved on since
            if job and (status is None or job.status == status):
                jobs.append(job)
        if len(ids) < want:
            break
    page = jobs[:limit]
    more = len(jobs) > limit
    return JobList(items=[status_body(j, store) for j in page], next_cursor=page[-1].id if more else None)


@router.get("/{job_id}", response_model=JobStatus, responses={401: PROBLEM, 404: PROBLEM}, summary="Job status")
async def get_job(
    response: Response,
    job_id: str,
    owner: OwnerDep,
    store: StoreDep,
    settings: SettingsDep,
    wait: float = Query(0, ge=0, description="long-poll: wait up to this many seconds for a change"),
):
    job = await run_in_threadpool(owned_job, job_id, owner, store)
    wait = min(wait, settings.max_wait_seconds)
    if wait > 0 and job.status not in TERMINAL:
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            if await run_in_threadpool(store.rev, job_id) != job.rev:
                break
        job = await run_in_threadpool(store.get, job_id)
    _status_headers(response, job.status)
    return await run_in_threadpool(status_body, job, store)


@router.delete(
    "/{job_id}",
    response_model=JobStatus,
    status_code=202,
    responses={200: {"model": JobStatus, "description": "cancelled (it was queued)"}, 404: PROBLEM, 409: PROBLEM},
    summary="Cancel a comparison",
)
def cancel(response: Response, job: OwnedJobDep, store: StoreDep):
    """A queued job never starts (200, cancelled). A running job stops at the next component boundary
    (202, ``cancel_requested``; poll until ``cancelled``); its partial files are removed."""
    outcome = store.cancel(job.id)  # "cancelled" (now or before), "requested", or the final status
    if outcome in ("succeeded", "failed"):
        raise Problem("job_finished", f"the comparison already {outcome}; nothing to cancel",
                      extra={"job_status": outcome})
    if outcome == "cancelled":
        response.status_code = 200
    fresh = store.get(job.id)
    _status_headers(response, fresh.status)
    return status_body(fresh, store)


def _require_succeeded(job: JobRecord) -> None:
    if job.status != "succeeded":
        code = {"failed": "job_failed", "cancelled": "job_cancelled"}.get(job.status, "job_not_finished")
        raise Problem(
            code, f"the comparison is {job.status}; its result exists once it has succeeded",
            extra={"job_status": job.status, "error": job.error or None},
            headers={"Retry-After": RETRY_AFTER[job.status]} if job.status in RETRY_AFTER else None,
        )


def _file_response(request: Request, settings: Settings, job: JobRecord, entry: dict) -> Response:
    etag = f'"{entry["sha256"]}"'
    if _etag_matches(request.headers.get("if-none-match", ""), etag):
        return Response(status_code=304, headers={"ETag": etag, "Vary": "Authorization, Cookie"})
    path = settings.results_dir / job.id / entry["name"]
    if not path.is_file():
        raise Problem("artifact_gone", f"{entry['name']} is no longer on disk")
    extra = {}
    if entry["media_type"] == "text/html":  # a report: its own inline script may run, nothing else
        extra["Content-Security-Policy"] = file_policy(str(path), entry["sha256"])
    return FileResponse(
        path,
        media_type=entry["media_type"],
        # Vary: a browser's cache keeps one signed-in key's file from the next key signed in there
        headers={"ETag": etag, "Cache-Control": "private, max-age=3600", "Vary": "Authorization, Cookie", **extra},
    )


def _etag_matches(if_none_match: str, etag: str) -> bool:
    """RFC 9110 §13.1.2: ``*`` matches any file; ``If-None-Match`` compares weakly, so ``W/"x"``
    matches ``"x"``."""
    tags = [t.strip() for t in if_none_match.split(",") if t.strip()]
    return "*" in tags or etag in (t.removeprefix("W/") for t in tags)


def _entry(job: JobRecord, name: str) -> dict:
    for e in job.artifacts:
        if e["name"] == name:
            return e
    raise Problem.field("artifact_not_found", "name", f"the comparison wrote no file {name!r}")


# What a job writes (worker/artifacts.py): result.json, its tables as CSV, report.html, plots as SVG and PNG; any other
# file is served as octet-stream. The artifact list gives each file's media type.
BINARY = {"schema": {"type": "string", "format": "binary"}}
FILE = {"content": {"application/json": {}, "text/html": BINARY, "image/svg+xml": BINARY, "image/png": BINARY,
                    "text/csv": BINARY, "application/octet-stream": BINARY},
        "description": "the file, with ETag (sha256), Content-Length and its media type; HEAD gives the headers only"}


RESULT = {"model": ComparisonResult, "description": "result.json (circuitdiff.result.ComparisonResult), with ETag "
          "(sha256) and Content-Length"}


@router.get("/{job_id}/result", responses={200: RESULT, 404: PROBLEM, 409: PROBLEM}, summary="The result JSON")
def get_result(request: Request, job: OwnedJobDep, settings: SettingsDep):
    """``result.json`` (the current result schema, ``schema_version``); 409 problem+json with the
    status while not succeeded."""
    _require_succeeded(job)
    return _file_response(request, settings, job, _entry(job, "result.json"))


@router.get("/{job_id}/report", responses={200: {"content": {"text/html": {}}}, 404: PROBLEM, 409: PROBLEM},
            summary="The HTML report")
def get_report(request: Request, job: OwnedJobDep, settings: SettingsDep):
    _require_succeeded(job)
    return _file_response(request, settings, job, _entry(job, "report.html"))


@router.get("/{job_id}/artifacts", response_model=ArtifactList, responses={404: PROBLEM, 409: PROBLEM},
            summary="Files the job wrote")
def list_artifacts(job: OwnedJobDep):
    _require_succeeded(job)
    base = f"/v1/comparisons/{job.id}/artifacts/"
    return ArtifactList(items=[Artifact(**e, href=base + e["name"]) for e in job.artifacts])


@router.get("/{job_id}/artifacts/{name:path}", responses={200: FILE, 304: {"description": "ETag matched"},
            404: PROBLEM, 409: PROBLEM}, summary="One file the job wrote")
def get_artifact(name: str, request: Request, job: OwnedJobDep, settings: SettingsDep):
    _require_succeeded(job)
    return _file_response(request, settings, job, _entry(job, name))



# ------------------------------------------------------------------ A/B (#27): circuitdiff.analysis.diff
def _diff(job: JobRecord, other_id: str, owner: str, store: JobStore, settings: Settings) -> dict:
    """Both jobs the caller's and succeeded (404 / 409 naming ``other_id`` for the second), then B − A."""
    from circuitdiff.analysis.diff import diff_results
    from circuitdiff.report.load import load_result

    try:
        other = owned_job(other_id, owner, store)
    except Problem as p:
        raise Problem.field("job_not_found", "other_id", f"no comparison {other_id!r}") from p
    results = []
    for j in (job, other):
        _require_succeeded(j)
        results.append(load_result(settings.data_dir / j.result).model_dump(mode="json"))
    return diff_results(*results)


DIFF = {"description": "B − A (B: `other_id`): `teacher` (`same`, and a `note` saying it in words), `same_prompts`, "
        "`score` (`a`, `b`, `difference`, `ci95`, `method`), `verdict` (`a`, `b`, `changed`, `direction`, `chance`), "
        "`influence` (per role, each component's share in A and B), `matches` (partners that changed), "
        "`circuits` (Jaccard per role); see circuitdiff.analysis.diff"}


@router.get("/{job_id}/diff/{other_id}", responses={200: DIFF, 404: PROBLEM, 409: PROBLEM},
            summary="Two of your results side by side (A/B)")
def get_diff(job: OwnedJobDep, owner: OwnerDep, store: StoreDep, settings: SettingsDep,
             other_id: str = PathParam(max_length=64)) -> dict:
    return _diff(job, other_id, owner, store, settings)


@router.get("/{job_id}/diff/{other_id}/report", response_class=HTMLResponse,
            responses={200: {"content": {"text/html": {}}}, 404: PROBLEM, 409: PROBLEM},
            summary="The A/B page (self-contained HTML)")
def get_diff_report(job: OwnedJobDep, owner: OwnerDep, store: StoreDep, settings: SettingsDep,
                    other_id: str = PathParam(max_length=64)):
    from circuitdiff.report.diff_page import render_diff

    html = render_diff(_diff(job, other_id, owner, store, settings), f"job {job.id}", f"job {other_id}")
    return HTMLResponse(html, headers={"Content-Security-Policy": page_policy(html.encode())})
