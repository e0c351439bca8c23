"""Rendering a console page: the templates, the policy every page is served under, the CSRF cookie.

The policy lets a page load its own stylesheet and script from this server, call this server's API,
and frame this server's reports; nothing inline runs and nothing is fetched from another host.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from ..auth import CSRF_COOKIE, LOCAL_OWNER, SESSION_SECONDS, csrf_token, new_csrf_nonce
from ..deps import get_secret, get_settings, owner_of_request
from ..problems import Problem

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
ASSETS = "/console-assets"
TEMPLATES = Jinja2Templates(directory=HERE / "templates")


def duration(seconds: float) -> str:
    """A time left as a person reads it: ``45 s``, ``12 min``, ``2 h 05 min`` (console.js says the same)."""
    s = max(0, int(seconds + 0.5))
    if s < 90:
        return f"{s} s"
    if s < 90 * 60:
        return f"{int(s / 60 + 0.5)} min"  # half up, as JavaScript rounds
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


TEMPLATES.env.filters["duration"] = duration
POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
          "frame-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")


def secure(request: Request) -> bool:
    return request.url.scheme == "https"


def csrf_nonce(request: Request) -> str:
    """The browser's CSRF nonce (cookie), or a new one that :func:`page` sets."""
    nonce = request.cookies.get(CSRF_COOKIE)
    if not nonce or len(nonce) != 32:
        nonce = getattr(request.state, "csrf_nonce", None) or new_csrf_nonce()
        request.state.csrf_nonce = nonce  # one per request, however many times a page asks
    return nonce


def page_context(request: Request) -> dict:
    """What every page's header shows: open console, or signed in (as which key), or not."""
    settings = get_settings(request)
    if not settings.api_keys:
        return {"open_console": True, "signed_in_as": LOCAL_OWNER}
    try:
        owner = owner_of_request(request, "GET")
    except Problem:
        owner = None
    return {"open_console": False, "signed_in_as": owner}


def page(request: Request, template: str, context: dict[str, Any], *, status: int = 200) -> HTMLResponse:
    secret = get_secret(request)
    nonce = csrf_nonce(request)
    ctx = {**page_context(request), "csrf": csrf_token(nonce, secret), "assets": ASSETS, **context}
    response = TEMPLATES.TemplateResponse(request, template, ctx, status_code=status,
                                          headers={"Content-Security-Policy": POLICY, "Cache-Control": "no-store"})
    if request.cookies.get(CSRF_COOKIE) != nonce:
        response.set_cookie(CSRF_COOKIE, nonce, max_age=SESSION_SECONDS, httponly=True, samesite="lax",
                            secure=secure(request), path="/")
    return response
