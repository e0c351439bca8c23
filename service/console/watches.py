"""Console pages for watches: the key's list, a create form, and a watch's page (trend report,
history linking each checkpoint's job and report, webhook deliveries, pause/resume, check now).

Every action is the watches API's own route function, so the console answers as the API does.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse

from watches.request import WatchSpec

from ..api.v1 import watches as api
from ..deps import ProducerDep, SettingsDep, StoreDep
from ..problems import Problem, validated
from .jobs import form_options, number
from .render import page
from .session import ConsoleOwner, form

router = APIRouter(include_in_schema=False)
FIELDS = ("name", "teacher", "directory", "pattern", "settle_seconds", "hub", "revisions", "task", "n_prompts",
          "metric", "preset", "interval_seconds", "baseline", "alignment_drop", "logit_diff_drop_pct",
          "stops_performing", "webhook_url", "webhook_secret")
DEFAULTS = {"name": "", "teacher": "zoo:gpt-teacher", "directory": "", "pattern": "step-*", "settle_seconds": "30",
            "hub": "", "revisions": "branches", "task": "ioi", "n_prompts": "100", "metric": "logit_diff",
            "preset": "default", "interval_seconds": "300", "baseline": "first", "alignment_drop": "0.1",
            "logit_diff_drop_pct": "", "stops_performing": "on", "webhook_url": "", "webhook_secret": ""}


def body_from_form(v: dict[str, str]) -> dict[str, Any]:
    """The ``POST /v1/watches`` body the form's fields spell; what is left empty is left out, so the
    API's defaults apply and its errors name the field."""
    def given(name: str) -> bool:
        return bool(v.get(name, "").strip())

    checkpoints: dict[str, Any] = {}
    if given("directory"):
        checkpoints.update(directory=v["directory"].strip(), pattern=v.get("pattern", "").strip() or "step-*")
        if given("settle_seconds"):
            checkpoints["settle_seconds"] = number(v["settle_seconds"])
    if given("hub"):
        checkpoints.update(hub=v["hub"].strip(), revisions=v.get("revisions") or "branches")
    comparison: dict[str, Any] = {"task": v.get("task", "")}
    for name in ("metric", "preset"):
        if given(name):
            comparison[name] = v[name].strip()
    if given("n_prompts"):
        comparison["n_prompts"] = number(v["n_prompts"])
    alerts: dict[str, Any] = {"stops_performing": bool(v.get("stops_performing"))}
    for name in ("alignment_drop", "logit_diff_drop_pct"):
        if given(name):
            alerts[name] = number(v[name])
    if given("webhook_url") or given("webhook_secret"):
        alerts["webhook"] = {"url": v.get("webhook_url", "").strip(), "secret": v.get("webhook_secret", "")}
    body: dict[str, Any] = {"name": v.get("name", "").strip(), "teacher": v.get("teacher", "").strip(),
                            "checkpoints": checkpoints, "comparison": comparison, "alerts": alerts}
    if given("interval_seconds"):
        body["interval_seconds"] = number(v["interval_seconds"])
    if given("baseline"):
        body["baseline"] = v["baseline"].strip()
    return body


def form_field(path: str) -> str:
    """The form input an error's field path is about: ``checkpoints.directory`` -> ``directory``,
    ``alerts.webhook.url`` -> ``webhook_url``, ``teacher.id`` -> ``teacher``."""
    parts = path.split(".")
    if parts[0] in ("checkpoints", "comparison", "alerts") and len(parts) > 1:
        parts = parts[1:]
    elif parts[0] == "checkpoints":
        return "directory"
    if parts[0] == "webhook":
        return "webhook_" + (parts[1] if len(parts) > 1 else "url")
    return parts[0]


@router.get("/watches")
def watches_page(request: Request, owner: ConsoleOwner, store: StoreDep):
    ws = api.get_watch_store(store)
    listing = api.list_watches(owner, ws, limit=100, cursor=None)
    return page(request, "watches.html", {"title": "Watches", "nav": "watches",
                                          "watches": [w.model_dump(mode="json") for w in listing.items]})


def _new_page(request: Request, settings, owner: str, values: dict, problem: Problem | None = None):
    errors: dict[str, list[dict]] = {}
    general: list[dict] = []
    for item in (problem.errors or [{"field": "", "message": problem.detail, "fix": "", "code": problem.code}]) \
            if problem else []:
        target = form_field(item["field"])
        (errors.setdefault(target, []) if target in FIELDS else general).append(item)
    return page(request, "watch_new.html", {
        "title": "New watch", "nav": "watches", "values": values, "errors": errors, "general": general,
        "problem": problem, **form_options(settings, owner)}, status=problem.status if problem else 200)


@router.get("/watches/new")
def new_watch_form(request: Request, owner: ConsoleOwner, settings: SettingsDep):
    return _new_page(request, settings, owner, dict(DEFAULTS))


@router.post("/watches/new")
async def create(request: Request, owner: ConsoleOwner, settings: SettingsDep, store: StoreDep, producer: ProducerDep):
    fields = await form(request)
    values = {k: fields.get(k, "") for k in FIELDS}
    try:
        spec = validated(WatchSpec, body_from_form(values))  # the API's own mapping: field, message, fix, code
        w = api.create_watch(spec, Response(), owner, settings, api.get_watch_store(store), producer)
    except Problem as p:
        return _new_page(request, settings, owner, values, p)
    return RedirectResponse(f"/watches/{w.id}", status_code=303)


@router.get("/watches/{watch_id}")
def watch_page(request: Request, watch_id: str, owner: ConsoleOwner, store: StoreDep):
    ws = api.get_watch_store(store)
    w = api.owned_watch(watch_id, owner, ws)
    return page(request, "watch.html", {
        "title": f"Watch {w.name}", "nav": "watches", "watch": api.watch_body(w, ws).model_dump(mode="json"),
        "history": [h.model_dump(mode="json") for h in api.get_history(ws, w).items],
        "deliveries": [d.model_dump(mode="json") for d in api.get_deliveries(ws, w).items]})


@router.post("/watches/{watch_id}/{action}")
async def act(request: Request, watch_id: str, action: str, owner: ConsoleOwner, settings: SettingsDep,
              store: StoreDep, producer: ProducerDep):
    await form(request)
    ws = api.get_watch_store(store)
    w = api.owned_watch(watch_id, owner, ws)
    if action == "check":
        api.check_now(ws, producer, w)
    elif action in ("pause", "resume"):
        api.patch_watch(api.WatchPatch(paused=action == "pause"), ws, settings, w)
    else:
        raise Problem.field("not_found", "action", f"no action {action!r}", "use pause, resume or check", status=404)
    return RedirectResponse(f"/watches/{w.id}", status_code=303)
