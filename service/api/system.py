"""Operational endpoints outside /v1: liveness, readiness, version, metrics."""

from __future__ import annotations

import hmac
import os
import uuid

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool

import circuitdiff
from circuitdiff.vocabulary import SCHEMA_VERSION
from jobs.settings import Settings, hash_key
from jobs.store import JobStore

from ..auth import owner_for
from ..deps import SettingsDep, StoreDep
from ..prometheus import CONTENT_TYPE, render
from ..problems import Problem, ProblemDetail
from ..schemas import Health, Ready, Version

router = APIRouter(tags=["system"])


@router.get("/health", response_model=Health, summary="The process is alive")
def health():
    return Health(status="ok")


def _checks(settings: Settings, store: JobStore) -> dict[str, tuple[bool, str]]:
    """Each check's outcome: (passed, what to show)."""
    checks: dict[str, tuple[bool, str]] = {}
    try:
        store.r.ping()
        checks["redis"] = (True, "ok")
    except Exception as e:  # noqa: BLE001 - any failure means "not ready", with the reason
        checks["redis"] = (False, f"unreachable: {type(e).__name__}: {e}")
    problems = []
    for d in (settings.data_dir, settings.results_dir, settings.datasets_dir, settings.cache_dir):
        try:  # where the API and the workers write: a read-only results/ fails every job
            d.mkdir(parents=True, exist_ok=True)
            probe = d / f".ready-{uuid.uuid4().hex}"
            probe.write_bytes(b"ok")
            os.unlink(probe)
        except OSError as e:
            problems.append(f"{d} not writable ({e.strerror or type(e).__name__})")
    checks["data_dir"] = (False, "; ".join(problems)) if problems else (True, "ok")
    if checks["redis"][0]:
        alive = store.workers_alive(settings.worker_stale_seconds)
        checks["worker"] = (True, f"ok ({len(alive)} alive)") if alive else (False, "no worker heartbeat")
    else:
        checks["worker"] = (False, "unknown (redis unreachable)")
    return checks


@router.get(
    "/ready",
    response_model=Ready,
    responses={503: {"model": ProblemDetail, "content": {"application/problem+json": {}}}},
    summary="Redis reachable, data dir writable, a worker alive",
)
async def ready(settings: SettingsDep, store: StoreDep):
    outcomes = await run_in_threadpool(_checks, settings, store)
    checks = {k: shown for k, (_, shown) in outcomes.items()}
    failing = {k: shown for k, (passed, shown) in outcomes.items() if not passed}
    if failing:
        detail = "; ".join(f"{k}: {v}" for k, v in failing.items())
        raise Problem("not_ready", detail, extra={"checks": checks}, headers={"Retry-After": "5"})
    return Ready(status="ready", checks=checks)


@router.get("/version", response_model=Version, summary="Service and engine versions")
def version():
    return Version(service=circuitdiff.__version__, engine_version=circuitdiff.ENGINE_VERSION, api="v1",
                   result_schema_version=SCHEMA_VERSION)


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {CONTENT_TYPE: {}}}, 401: {"model": ProblemDetail}},
            summary="Prometheus metrics (service-wide: with API keys set, an API key or the metrics token)")
def metrics(request: Request, settings: SettingsDep, store: StoreDep):
    """Counts over every key's jobs, so not open once keys are: ``Authorization: Bearer`` with an API
    key or ``CIRCUITDIFF_METRICS_TOKEN`` (a scraper's token, which opens nothing else)."""
    authorization = request.headers.get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    is_scraper = (settings.metrics_token is not None and scheme.lower() == "bearer"
                  and hmac.compare_digest(hash_key(token.strip()), settings.metrics_token))
    if not is_scraper:
        owner_for(authorization, settings.api_keys)  # 401 problem unless an API key (or an open API)
    return Response(render(store, settings.worker_stale_seconds), media_type=CONTENT_TYPE)
