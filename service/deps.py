"""FastAPI dependencies, as ``Annotated`` aliases a handler names in its signature.

The app's lifespan opens the job store and the Celery producer and keeps them, with the settings,
on ``app.state``; only this module reads ``app.state``. Handlers write ``store: StoreDep``,
``settings: SettingsDep``, ``owner: OwnerDep``, ``producer: ProducerDep`` or ``job: OwnedJobDep`` (a
:class:`~jobs.store.JobRecord`). The console signs its session cookies with ``SecretDep``.
"""

from __future__ import annotations

from typing import Annotated

from celery import Celery
from fastapi import Depends, Path, Request

from jobs.settings import Settings
from jobs.store import JobRecord, JobStore

from .auth import SESSION_COOKIE, is_revoked, request_owner
from .problems import Problem


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_store(request: Request) -> JobStore:
    return request.app.state.store


def get_producer(request: Request) -> Celery:
    return request.app.state.producer


def get_secret(request: Request) -> bytes:
    return request.app.state.session_secret


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[JobStore, Depends(get_store)]
ProducerDep = Annotated[Celery, Depends(get_producer)]
SecretDep = Annotated[bytes, Depends(get_secret)]


def owner_of_request(request: Request, method: str | None = None) -> str:
    """:func:`service.auth.request_owner` for ``request`` (as if it were ``method``): the API's and the
    console's one rule."""
    store = get_store(request)
    return request_owner(request.headers.get("authorization", ""), request.cookies.get(SESSION_COOKIE),
                         method or request.method, get_settings(request).api_keys, get_secret(request),
                         lambda cookie: is_revoked(store.r, cookie))


def current_owner(request: Request) -> str:
    """The caller's owner id (the hash of its API key, or of the key a console session was signed in
    with, for reading; ``local`` on an open API); 401 otherwise."""
    return owner_of_request(request)


OwnerDep = Annotated[str, Depends(current_owner)]


def owned_job(job_id: Annotated[str, Path(max_length=64)], owner: OwnerDep, store: StoreDep) -> JobRecord:
    """The job record if the caller owns it; another key's job answers 404 just like a missing one."""
    job = store.get(job_id) if job_id.isalnum() else None
    if job is None or job.owner != owner:
        raise Problem.field("job_not_found", "job_id", f"no comparison {job_id!r}")
    return job


OwnedJobDep = Annotated[JobRecord, Depends(owned_job)]
