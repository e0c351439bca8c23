"""The FastAPI app: ``create_app(settings)`` builds it; the lifespan opens Redis and the Celery producer.

The service never imports torch, nor the worker: it validates specs with the torch-free
``circuitdiff.spec`` and hands work to the GPU worker through Redis by task name (``jobs.queue``).
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

import redis
from fastapi import FastAPI, Request

import circuitdiff

from jobs.queue import make_celery
from jobs.settings import Settings, get_settings
from jobs.store import JobStore

from . import console, docs, headers, problems
from .api import system
from .api.v1 import routers
from .auth import session_secret
from .bodylimit import BodyLimit
from .headers import SecurityHeaders
from .methods import Methods
from .problems import FieldError, Problem, ProblemDetail, problem_response

log = logging.getLogger("circuitdiff.service")

DESCRIPTION = """Compare the internals of a teacher language model with a student distilled from it
(Distilled Circuits, arXiv 2505.10822). Submit a comparison, poll it, fetch the result JSON, the HTML
report and the plots. Every error is RFC 9457 `application/problem+json` with a stable `code`."""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        for d in (settings.data_dir, settings.results_dir, settings.datasets_dir):
            d.mkdir(parents=True, exist_ok=True)
        app.state.session_secret = session_secret(settings.data_dir)
        app.state.store = JobStore.from_url(settings.require_redis_url(), settings.strides)
        app.state.producer = make_celery(settings)
        yield
        app.state.store.r.close()

    app = FastAPI(
        title="circuitdiff",
        version=circuitdiff.__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served by service.docs from local files, not a CDN
        redoc_url=None,
    )
    app.state.settings = settings
    problems.install(app)
    docs.install(app)

    @app.exception_handler(redis.exceptions.ConnectionError)
    @app.exception_handler(redis.exceptions.TimeoutError)
    async def _redis_down(request: Request, exc: Exception):
        log.warning("redis unavailable on %s: %s", request.url.path, exc)
        p = Problem("redis_unavailable", "the job store is unreachable; try again shortly",
                    headers={"Retry-After": "5"})
        return problem_response(p, request)

    app.include_router(system.router)
    for r in routers:
        app.include_router(r)
    console.install(app)
    app.add_middleware(BodyLimit, max_body=settings.max_body_bytes, max_upload=settings.max_upload_bytes)
    app.add_middleware(Methods, router=app.router)
    app.add_middleware(SecurityHeaders, policies={"/docs": headers.DOCS, "/redoc": headers.DOCS})
    _problem_json_in_openapi(app)
    return app


def _problem_json_in_openapi(app: FastAPI) -> None:
    """Document what the handlers really send: every 4xx/5xx (FastAPI's default 422 included) is
    problem+json, and the 413/401 the middleware and auth can answer anywhere under /v1."""
    from fastapi.openapi.utils import get_openapi

    def openapi():
        if app.openapi_schema:
            return app.openapi_schema
        doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        ref = {"$ref": "#/components/schemas/ProblemDetail"}
        schemas = doc.setdefault("components", {}).setdefault("schemas", {})
        schemas.setdefault("ProblemDetail", ProblemDetail.model_json_schema(ref_template="#/components/schemas/{model}"))
        schemas.setdefault("FieldError", FieldError.model_json_schema())
        for k in ("HTTPValidationError", "ValidationError"):
            schemas.pop(k, None)
        for path, ops in doc["paths"].items():
            for op in ops.values():
                responses = op.setdefault("responses", {})
                if path.startswith("/v1/"):
                    responses.setdefault("401", {"description": "missing or unknown API key"})
                if op.get("requestBody"):
                    responses.setdefault("413", {"description": "request body over the configured limit"})
                    if "application/json" in op["requestBody"].get("content", {}):
                        responses.setdefault("400", {"description": "the body is not valid JSON (invalid_json)"})
                for code, resp in responses.items():
                    if code[0] in "45":
                        resp["content"] = {"application/problem+json": {"schema": ref}}
                        if resp.get("description") == "Validation Error":
                            resp["description"] = "invalid request: problem+json naming each bad field"
        docs.declare_auth_and_examples(doc)
        app.openapi_schema = doc
        return doc

    app.openapi = openapi
