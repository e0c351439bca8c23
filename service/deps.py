"""FastAPI dependencies: the store, the settings, the Celery producer, the caller's job."""

from __future__ import annotations

from fastapi import Depends, Path, Request

from .auth import current_owner
from .problems import Problem
from .settings import Settings
from .store import JobStore


def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


def get_store(request: Request) -> JobStore:
    return request.app.state.store


def get_celery(request: Request):
    return request.app.state.celery


def owned_job(
    job_id: str = Path(max_length=64),
    owner: str = Depends(current_owner),
    store: JobStore = Depends(get_store),
) -> dict:
    """The job record if the caller owns it; another key's job answers 404 just like a missing one."""
    job = store.get(job_id) if job_id.isalnum() else None
    if job is None or job.get("owner") != owner:
        raise Problem.field(404, "job_not_found", "job_id", f"no comparison {job_id!r}", "list yours with GET /v1/comparisons")
    return job
