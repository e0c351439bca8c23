"""Request body limit as plain ASGI middleware: 413 problem+json before the app reads a byte more.

A declared Content-Length over the limit is refused at once; a chunked body is buffered up to the
limit and refused as soon as it goes over, then replayed to the app.
"""

from __future__ import annotations

from .problems import Problem, problem_response

UPLOAD_PATHS = ("/v1/datasets", "/datasets")  # the API's upload and the console's upload form


class BodyLimit:
    def __init__(self, app, *, max_body: int, max_upload: int):
        self.app, self.max_body, self.max_upload = app, max_body, max_upload

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            return await self.app(scope, receive, send)
        limit = self.max_upload if scope["path"] in UPLOAD_PATHS else self.max_body
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None:
            if not declared.isdigit() or int(declared) > limit:
                return await self._reject(scope, receive, send, limit)
            return await self.app(scope, receive, send)
        chunks, size = [], 0
        while True:
            msg = await receive()
            if msg["type"] != "http.request":
                break
            size += len(msg.get("body", b""))
            if size > limit:
                return await self._reject(scope, receive, send, limit)
            chunks.append(msg.get("body", b""))
            if not msg.get("more_body"):
                break
        body = b"".join(chunks)
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)

    async def _reject(self, scope, receive, send, limit: int):
        p = Problem.field("body_too_large", "body", f"the request body is larger than {limit} bytes")
        await problem_response(p)(scope, receive, send)
