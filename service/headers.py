"""Security headers on every response (plain ASGI middleware).

- ``X-Content-Type-Options: nosniff`` everywhere: a file is what its media type says.
- ``Content-Security-Policy`` on every HTML page that does not set its own: :data:`STRICT`, under
  which a page can load nothing and run nothing. Pages that need more set their own policy:
  reports (self-contained: :func:`page_policy` allows exactly their inline scripts, by hash, plus
  inline styles and ``data:`` images), the API docs (:data:`DOCS`: their scripts and styles come
  from this server) and the console's pages (``service.console.render.POLICY``: this server's
  stylesheet, script, API and framed reports, nothing inline).

The report's inline script is hashed from the file served, not from this version's template, so a
report rendered by an older version keeps working.
"""

from __future__ import annotations

import base64
import hashlib
import re
from functools import lru_cache
from pathlib import Path

STRICT = "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'self'"
DOCS = ("default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'self'")
NONE = "'none'"
_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.S)


def page_policy(html: bytes) -> str:
    """The policy of a self-contained page: its own inline scripts (by sha256), inline styles and
    ``data:`` images (the plots), nothing fetched from anywhere."""
    hashes = " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(m).digest()).decode()}'"
                      for m in _SCRIPT.findall(html))
    return (f"default-src 'none'; script-src {hashes or NONE}; style-src 'unsafe-inline'; "
            "img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'self'")


@lru_cache(maxsize=512)
def file_policy(path: str, sha256: str) -> str:
    """:func:`page_policy` of a stored page, read once per content (``sha256``: the artifact
    manifest's, so a rewritten file is read again)."""
    return page_policy(Path(path).read_bytes())


class SecurityHeaders:
    def __init__(self, app, *, policies: dict[str, str] | None = None):
        self.app = app
        self.policies = policies or {}  # path prefix -> policy, for pages that need their own

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                if b"x-content-type-options" not in names:
                    headers.append((b"x-content-type-options", b"nosniff"))
                ctype = next((v for k, v in headers if k.lower() == b"content-type"), b"")
                if ctype.startswith(b"text/html") and b"content-security-policy" not in names:
                    policy = next((p for prefix, p in self.policies.items() if path.startswith(prefix)), STRICT)
                    headers.append((b"content-security-policy", policy.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
