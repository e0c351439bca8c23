"""The web console: server-rendered pages for a team, served by the API process.

Each page is a view of the API the client uses: the same owner rule (``service.auth.request_owner``),
the same bodies (``status_body``, ``watch_body``) and the same route functions, called directly, so a
page shows and refuses exactly what the API would. Everything a page loads (its stylesheet and one
small script that polls the JSON API) is served from :data:`ASSETS`; no CDN, no front-end build.

Modules: ``render`` (templates, the pages' policy, the CSRF cookie), ``session`` (sign-in and
sign-out, the page dependency), ``jobs``, ``datasets``, ``watches`` (one router each) and
``command`` (a resolved spec as a ``circuitdiff compare`` command line).
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from . import datasets, jobs, session, watches
from .render import ASSETS, STATIC_DIR


def install(app: FastAPI) -> None:
    app.mount(ASSETS, StaticFiles(directory=STATIC_DIR), name="console-assets")
    session.install(app)
    for module in (session, jobs, datasets, watches):
        app.include_router(module.router)

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon():  # browsers ask for it on every page, the API's JSON ones included
        return FileResponse(STATIC_DIR / "favicon.svg", media_type="image/svg+xml",
                            headers={"Cache-Control": "public, max-age=86400"})
