"""Console pages for custom datasets: the key's list, upload (with each rejected line shown), a
dataset's items and its download link.

Uploads go through the API's own validation and storage (``service.datasets``), so a line the API
rejects is rejected here with the same line number, field and reason.
"""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse

from .. import datasets as store
from ..api.v1.datasets import owned_dataset
from ..deps import SettingsDep
from ..problems import Problem
from ..schemas import ts
from .render import page
from .session import ConsoleOwner, form

router = APIRouter(include_in_schema=False)
ITEMS_SHOWN = 100


def _list_page(request: Request, settings, owner: str, text: str = "", problem: Problem | None = None):
    return page(request, "datasets.html", {
        "title": "Datasets", "nav": "datasets",
        "datasets": [{**m, "created": f"{ts(m['created_at']):%Y-%m-%d %H:%M}"} for m in store.list_meta(settings.datasets_dir, owner)],
        "text": text, "problem": problem}, status=problem.status if problem else 200)


@router.get("/datasets")
def datasets_page(request: Request, owner: ConsoleOwner, settings: SettingsDep):
    return _list_page(request, settings, owner)


@router.post("/datasets")
async def upload(request: Request, owner: ConsoleOwner, settings: SettingsDep):
    fields = await form(request)
    text = fields.get("jsonl", "")
    data = text.encode()
    try:
        items, rejected, lines = store.valid_lines(data)
    except Problem as p:
        return _list_page(request, settings, owner, text, p)
    meta = store.store(settings.datasets_dir, owner, items, rejected, len(data), lines)
    return RedirectResponse(f"/datasets/{meta['id']}?uploaded=1", status_code=303)


@router.get("/datasets/{dataset_id}")
def dataset_page(request: Request, dataset_id: str, owner: ConsoleOwner, settings: SettingsDep,
                 offset: int = Query(0, ge=0), uploaded: bool = False):
    meta = owned_dataset(dataset_id, settings, owner)
    items = store.read_items(settings.datasets_dir, meta, offset, ITEMS_SHOWN)
    columns = sorted({k for item in items for k in item}, key=lambda k: (k not in ("prompt", "text"), k))
    return page(request, "dataset.html", {
        "title": f"Dataset {meta['id']}", "nav": "datasets", "meta": meta, "items": items, "columns": columns,
        "offset": offset, "next_offset": offset + len(items) if offset + len(items) < meta["n_items"] else None,
        "uploaded": uploaded})
