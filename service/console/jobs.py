"""Console pages for comparisons: the jobs list (``/``), a job's page, the New comparison form, cancel.

The list and the job page render :func:`~service.api.v1.comparisons.status_body`, the API's own body,
and ``console.js`` keeps them current by polling the same JSON API (``GET /v1/comparisons/{id}``),
so the progress bar moves without a reload. The form builds a spec from its fields and goes through
the API's own submit function: a bad field comes back as the API's field error, with its fix, next
to the field, and the form keeps what was typed.
"""

from __future__ import annotations

import json
import re
from typing import Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import RedirectResponse

from circuitdiff.catalogue import TASKS
from circuitdiff.client.wire import STATUSES
from circuitdiff.result import upgrade
from circuitdiff.spec import ComparisonSpec
from circuitdiff.vocabulary import DEFAULT_ESTIMATOR, ESTIMATED_SCANS, SCREEN_TOP, Estimator, Metric, Preset, ScanMethod, choices

from .. import datasets as dataset_store
from ..api.v1 import comparisons, models
from ..deps import ProducerDep, SettingsDep, StoreDep, owned_job
from ..problems import Problem, validated
from .command import compare_command
from .render import page
from .session import ConsoleOwner, form

router = APIRouter(include_in_schema=False)
PAGE_SIZE = 25
FORM_FIELDS = ("teacher", "student", "task", "dataset", "metric", "preset", "n_prompts", "seed", "scan", "estimator",
               "screen_top", "circuits", "circuit_threshold")
DEFAULT_FORM = {"teacher": "zoo:gpt-teacher", "student": "zoo:gpt-student", "task": "ioi", "dataset": "",
                "metric": "logit_diff", "preset": "default", "n_prompts": "100", "seed": "0", "scan": "exact", "estimator": "",
                "screen_top": "", "circuits": "", "circuit_threshold": ""}


@router.get("/")
def jobs_page(request: Request, owner: ConsoleOwner, store: StoreDep,
              status: str | None = Query(None, pattern=f"^({'|'.join(STATUSES)})$"),
              cursor: str | None = Query(None, max_length=64, pattern="^[0-9a-z]+$")):
    listing = comparisons.list_jobs(owner, store, status=status, limit=PAGE_SIZE, cursor=cursor)
    jobs = [j.model_dump(mode="json") for j in listing.items]
    return page(request, "jobs.html", {"title": "Jobs", "nav": "jobs", "jobs": jobs, "status": status,
                                       "statuses": STATUSES, "next_cursor": listing.next_cursor})


def form_options(settings, owner: str) -> dict[str, Any]:
    catalogue = models.list_models(settings)  # what GET /v1/models offers: the zoo and local checkpoints
    return {
        "models": [(m.id, m.description) for m in catalogue.items if m.available],
        "roots": catalogue.roots,
        "tasks": [(name, t.description) for name, t in TASKS.items()],
        "metrics": choices(Metric), "presets": choices(Preset), "scans": choices(ScanMethod),
        "estimators": choices(Estimator), "estimated_scans": sorted(ESTIMATED_SCANS), "default_estimator": DEFAULT_ESTIMATOR,
        "screen_top_default": SCREEN_TOP,
        "datasets": [m["id"] for m in dataset_store.list_meta(settings.datasets_dir, owner)],
    }


def _new_page(request: Request, settings, owner: str, values: dict, problem: Problem | None = None):
    errors: dict[str, list[dict]] = {}
    general: list[dict] = []
    if problem is not None:
        for item in problem.errors or [{"field": "", "message": problem.detail, "fix": "", "code": problem.code}]:
            head = item["field"].split(".")[0].split("[")[0]
            target = "circuits" if head == "circuits" else head
            (errors.setdefault(target, []) if target in FORM_FIELDS else general).append(item)
    return page(request, "new.html", {"title": "New comparison", "nav": "new", "values": values, "errors": errors,
                                      "general": general, "problem": problem, **form_options(settings, owner)},
                status=problem.status if problem else 200)


@router.get("/jobs/new")
def new_form(request: Request, owner: ConsoleOwner, settings: SettingsDep):
    return _new_page(request, settings, owner, dict(DEFAULT_FORM))


def number(text: str) -> Any:
    """A typed number as JSON would carry it; anything else stays text, so the spec model says what is wrong."""
    t = text.strip()
    if re.fullmatch(r"[+-]?\d+", t):
        return int(t)
    try:
        return float(t)
    except ValueError:
        return t


def spec_from_form(values: dict[str, str]) -> dict[str, Any]:
    data: dict[str, Any] = {"teacher": values.get("teacher", "").strip(), "student": values.get("student", "").strip(),
                            "task": values.get("task", "")}
    for name in ("dataset", "metric", "preset", "scan", "estimator"):
        if values.get(name, "").strip():
            data[name] = values[name].strip()
    for name in ("n_prompts", "seed", "screen_top"):
        if values.get(name, "").strip():
            data[name] = number(values[name])
    if values.get("circuits"):
        data["circuits"] = {}
        if values.get("circuit_threshold", "").strip():
            data["circuits"]["threshold"] = number(values["circuit_threshold"])
    return data


@router.post("/jobs/new")
async def submit_form(request: Request, owner: ConsoleOwner, settings: SettingsDep, store: StoreDep,
                      producer: ProducerDep):
    fields = await form(request)
    values = {k: fields.get(k, "") for k in FORM_FIELDS}
    try:
        spec = validated(ComparisonSpec, spec_from_form(values))  # the API's own mapping: field, message, fix, code
        job = comparisons.submit(spec, Response(), owner, settings, store, producer, idempotency_key=None)
    except Problem as p:
        return _new_page(request, settings, owner, values, p)
    return RedirectResponse(f"/jobs/{job.id}", status_code=303)


def headline(result: dict) -> dict[str, Any]:
    """What the job page shows first: the verdict, the score against chance, both models' performance."""
    r = upgrade(result)
    a = r["alignment"]
    return {
        "verdict": a.get("verdict"), "verdict_reason": a.get("verdict_reason"), "score": a.get("score"),
        "ci95": a.get("ci95"), "chance": a.get("chance"), "above_chance": a.get("above_chance"),
        "metric": (r.get("metric") or {}).get("label", "logit difference"),
        "models": {side: {"id": r["models"][side]["id"], **r["performance"][side]} for side in ("teacher", "student")},
    }


def _job_context(job, store, settings) -> dict[str, Any]:
    body = comparisons.status_body(job, store).model_dump(mode="json")
    summary = None
    if job.status == "succeeded":
        path = settings.results_dir / job.id / "result.json"
        if path.is_file():
            summary = headline(json.loads(path.read_text()))
    return {"job": body, "summary": summary, "artifacts": job.artifacts if job.status == "succeeded" else []}


@router.get("/jobs/{job_id}")
def job_page(request: Request, job_id: str, owner: ConsoleOwner, store: StoreDep, settings: SettingsDep):
    job = owned_job(job_id, owner, store)
    ctx = _job_context(job, store, settings)
    spec = ctx["job"]["spec"]
    return page(request, "job.html", {"title": f"Job {job.id}", "nav": "jobs", **ctx,
                                      "spec_json": json.dumps(spec, indent=2), "spec_cli": compare_command(spec)})


@router.get("/jobs/{job_id}/summary")
def job_summary(request: Request, job_id: str, owner: ConsoleOwner, store: StoreDep, settings: SettingsDep):
    """The job page's result section alone: the page's script swaps it in when the job finishes."""
    job = owned_job(job_id, owner, store)
    return page(request, "job_summary.html", _job_context(job, store, settings))


@router.post("/jobs/{job_id}/cancel")
async def cancel_job(request: Request, job_id: str, owner: ConsoleOwner, store: StoreDep):
    fields = await form(request)
    job = owned_job(job_id, owner, store)
    try:
        comparisons.cancel(Response(), job, store)
    except Problem:
        pass  # it finished meanwhile: the page it goes back to says so
    return RedirectResponse(fields.get("back") if fields.get("back") in ("/", f"/jobs/{job.id}") else "/",
                            status_code=303)
