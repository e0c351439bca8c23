"""``/docs`` (Swagger UI) and ``/redoc`` served with their assets from this process, never a CDN;
what the OpenAPI document says about authentication and example request bodies.

FastAPI's default pages load Swagger UI and ReDoc from a CDN, so they are blank offline and on an
air-gapped GPU host. The assets here are the files the ``fastapi-offline`` package ships (only its
static files are used, not its app factory), mounted at :data:`ASSETS`.
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = "/docs-assets"
ASSET_DIR = Path(fastapi_offline.__file__).parent / "static"

BEARER = {
    "type": "http", "scheme": "bearer",
    "description": "an API key from `CIRCUITDIFF_API_KEYS` (none configured: the API is open). In a browser, "
                   "the console's session cookie (sign in at /sign-in) authorises GET requests too.",
}
# One example per request body, as a client would send it (the comparison body is the zoo's smallest
# pair, so trying it from /docs runs in seconds).
REQUEST_EXAMPLES = {
    ("/v1/comparisons", "post"): {
        "teacher": "zoo:gpt-teacher", "student": "zoo:gpt-student", "task": "ioi", "n_prompts": 20,
        "preset": "default", "metric": "logit_diff", "scan": "exact"},
    ("/v1/watches", "post"): {
        "name": "distil-run-42", "teacher": "zoo:gpt-teacher",
        "checkpoints": {"directory": "runs/42", "pattern": "step-*"},
        "comparison": {"task": "ioi", "n_prompts": 100}, "interval_seconds": 300,
        "alerts": {"alignment_drop": 0.1, "stops_performing": True,
                   "webhook": {"url": "https://hooks.example/cd", "secret": "a-long-shared-secret"}}},
    ("/v1/watches/{watch_id}", "patch"): {"paused": True},
}


def declare_auth_and_examples(doc: dict) -> None:
    """The bearer scheme on every /v1 operation and /metrics (Swagger UI shows its Authorize button),
    and an example for every JSON request body."""
    doc.setdefault("components", {}).setdefault("securitySchemes", {})["bearer"] = BEARER
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            if path.startswith("/v1/") or path == "/metrics":
                op["security"] = [{"bearer": []}]
            body = op.get("requestBody", {}).get("content", {}).get("application/json")
            if body is not None and (path, method) in REQUEST_EXAMPLES:
                body["example"] = REQUEST_EXAMPLES[(path, method)]


def install(app: FastAPI) -> None:
    """Call with an app built with ``docs_url=None, redoc_url=None``."""
    app.mount(ASSETS, StaticFiles(directory=ASSET_DIR), name="docs-assets")
    redirect = app.swagger_ui_oauth2_redirect_url or "/docs/oauth2-redirect"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} - API docs", oauth2_redirect_url=redirect,
            swagger_js_url=f"{root}{ASSETS}/swagger-ui-bundle.js", swagger_css_url=f"{root}{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS}/favicon.png",
        )

    @app.get(redirect, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS}/redoc.standalone.js", redoc_favicon_url=f"{root}{ASSETS}/favicon.png",
            with_google_fonts=False,
        )
