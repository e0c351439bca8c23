"""HTTP methods every path answers beyond its routes: ``HEAD`` wherever ``GET`` is, and ``OPTIONS``.

Plain ASGI middleware. ``HEAD`` runs the ``GET`` handler and sends its status and headers (ETag,
Content-Length, Content-Type) without the body, so a client can check a file before downloading it.
``OPTIONS`` answers 204 with ``Allow`` listing every method of every route on the path (a job's
path has GET and DELETE on two routes; Starlette's own answer names one route's). The 405 handler
in :mod:`service.problems` uses the same :func:`allowed_methods`.
"""

from __future__ import annotations

from starlette.routing import Match, Mount, Router


def _routes(routes):
    """Every route, with FastAPI's included routers (``_IncludedRouter``) opened up."""
    for route in routes:
        if hasattr(route, "effective_candidates"):
            yield from _routes(route.effective_candidates())
        else:
            yield route


def allowed_methods(router: Router, scope: dict) -> set[str]:
    """Every method some route accepts on ``scope``'s path; empty when no route has the path."""
    methods: set[str] = set()
    for route in _routes(router.routes):
        if isinstance(route, Mount) or not getattr(route, "methods", None):
            continue
        match, _ = route.matches(scope)  # PARTIAL: the path matches, the method does not
        if match != Match.NONE:
            methods |= set(route.methods)
    if methods:
        methods |= {"OPTIONS"} | ({"HEAD"} if "GET" in methods else set())
    return methods


def allow_header(methods: set[str]) -> str:
    return ", ".join(sorted(methods))


class Methods:
    def __init__(self, app, *, router: Router):
        self.app, self.router = app, router

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in ("HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        methods = allowed_methods(self.router, scope)
        if scope["method"] == "OPTIONS":
            if not methods:
                return await self.app(scope, receive, send)  # 404/405 problem as for any other method
            await send({"type": "http.response.start", "status": 204,
                        "headers": [(b"allow", allow_header(methods).encode())]})
            return await send({"type": "http.response.body", "body": b""})
        if "GET" not in methods:
            return await self.app(scope, receive, send)

        async def headers_only(message):
            if message["type"] == "http.response.body":
                if not message.get("more_body"):
                    await send({"type": "http.response.body", "body": b""})
                return
            await send(message)

        return await self.app({**scope, "method": "GET"}, receive, headers_only)
