"""Console pages for watches: the key's list, a create form, and a watch's page (trend report,
history linking each checkpoint's job and report, webhook deliveries, pause/resume, check now).

Every action is the watches API's own route function, so the console answers as the API does.
"""

from __future__ import annotations

import json

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import ValidationError

from watches.request import WatchSpec

from ..api.v1 import watches as api
from ..deps import ProducerDep, SettingsDep, StoreDep
from ..problems import Problem, validation_problem
from .render import page
from .session import ConsoleOwner, form

router = APIRouter(include_in_schema=False)
EXAMPLE = {
    "name": "distil-run-42",
    "teacher": "zoo:gpt-teacher",
    "checkpoints": {"directory": "runs/42", "pattern": "step-*"},
    "comparison": {"task": "ioi", "n_prompts": 100},
    "interval_seconds": 300,
    "alerts": {"alignment_drop": 0.1, "stops_performing": True},
}


@router.get("/watches")
def watches_page(request: Request, owner: ConsoleOwner, store: StoreDep):
    ws = api.get_watch_store(store)
    listing = api.list_watches(owner, ws, limit=100, cursor=None)
    return page(request, "watches.html", {"title": "Watches", "nav": "watches",
                                          "watches": [w.model_dump(mode="json") for w in listing.items]})


def _new_page(request: Request, text: str, problem: Problem | None = None):
    return page(request, "watch_new.html", {"title": "New watch", "nav": "watches", "text": text, "problem": problem},
                status=problem.status if problem else 200)


@router.get("/watches/new")
def new_watch_form(request: Request, owner: ConsoleOwner):
    return _new_page(request, json.dumps(EXAMPLE, indent=2))


@router.post("/watches/new")
async def create(request: Request, owner: ConsoleOwner, settings: SettingsDep, store: StoreDep, producer: ProducerDep):
    fields = await form(request)
    text = fields.get("spec", "")
    try:
        try:
            spec = WatchSpec.model_validate_json(text)
        except ValidationError as e:
            raise validation_problem(list(e.errors()), strip_body=False) from None
        w = api.create_watch(spec, Response(), owner, settings, api.get_watch_store(store), producer)
    except Problem as p:
        return _new_page(request, text, p)
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
