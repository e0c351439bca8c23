"""Signing in to the console with an API key, signing out, and the dependency every page uses.

A page's owner is :func:`service.auth.request_owner`'s, the API's own rule: the session cookie (or a
bearer key) names the owner, and every page and link shows that owner's resources only. Without a
valid session a page redirects to the sign-in form and back. A form that changes something carries
the CSRF token of :mod:`.render`; :func:`form` checks it (and that the request comes from this
site) before a handler acts.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import parse_qsl, quote, urlsplit

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import RedirectResponse

from ..auth import CSRF_COOKIE, SESSION_COOKIE, SESSION_SECONDS, csrf_ok, owner_of_key, revoke, session_cookie
from ..deps import SecretDep, SettingsDep, StoreDep, get_secret, owner_of_request
from ..problems import Problem, problem_response
from .render import page, secure

router = APIRouter(include_in_schema=False)


class SignInRequired(Exception):
    def __init__(self, next_url: str):
        self.next_url = next_url


def console_owner(request: Request) -> str:
    """The page's owner by the API's rule (reading); no valid session: redirect to the sign-in form."""
    try:
        return owner_of_request(request, "GET")
    except Problem:
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise SignInRequired(path) from None


ConsoleOwner = Annotated[str, Depends(console_owner)]


async def form(request: Request) -> dict[str, str]:
    """The posted form (urlencoded), once its CSRF token and origin are checked; 403 problem otherwise."""
    origin = request.headers.get("origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.url.netloc:
        raise Problem("csrf_failed", f"the form was sent from {origin}, not from this console")
    body = await request.body()
    fields = dict(parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True))
    if not csrf_ok(request.cookies.get(CSRF_COOKIE), fields.get("csrf"), get_secret(request)):
        raise Problem("csrf_failed", "the form's CSRF token is missing or does not match this browser")
    return fields


def safe_next(url: str | None) -> str:
    """Only a path on this site: never ``//host`` or a scheme (an open redirect)."""
    if not url or not url.startswith("/") or url.startswith("//") or "\\" in url:
        return "/"
    return url


@router.get("/sign-in")
def sign_in_form(request: Request, settings: SettingsDep, next: str = "/"):
    return page(request, "sign_in.html", {"title": "Sign in", "next": safe_next(next), "error": None,
                                          "no_keys": not settings.api_keys})


@router.post("/sign-in")
async def sign_in(request: Request, settings: SettingsDep, secret: SecretDep):
    fields = await form(request)
    target = safe_next(fields.get("next"))
    if not settings.api_keys:
        return RedirectResponse(target, status_code=303)
    try:
        owner = owner_of_key(fields.get("key", "").strip(), settings.api_keys)
    except Problem as p:
        return page(request, "sign_in.html", {"title": "Sign in", "next": target, "error": p.errors[0],
                                              "no_keys": False}, status=401)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(SESSION_COOKIE, session_cookie(owner, secret), max_age=SESSION_SECONDS, httponly=True,
                        samesite="lax", secure=secure(request), path="/")
    return response


@router.post("/sign-out")
async def sign_out(request: Request, store: StoreDep):
    await form(request)
    if request.cookies.get(SESSION_COOKIE):
        revoke(store.r, request.cookies[SESSION_COOKIE])
    # the browser forgets what it cached while signed in (reports, artifacts); the next key starts clean
    response = RedirectResponse("/sign-in", status_code=303, headers={"Clear-Site-Data": '"cache"'})
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax", secure=secure(request))
    return response


PAGES = ("/jobs", "/datasets", "/watches", "/sign-")


def is_page(path: str) -> bool:
    return path == "/" or path.startswith(PAGES)


def install(app: FastAPI) -> None:
    @app.exception_handler(SignInRequired)
    async def _to_sign_in(request: Request, exc: SignInRequired):
        return RedirectResponse(f"/sign-in?next={quote(exc.next_url, safe='')}", status_code=303)

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem):
        """A console page answers a problem (another key's job: 404) as a page; the API as problem+json."""
        if not is_page(request.url.path):
            return problem_response(exc, request)
        return page(request, "error.html", {"title": exc.code.replace("_", " "), "problem": exc}, status=exc.status)
