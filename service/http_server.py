"""What the HTTP server itself answers, before the app sees a request.

A request uvicorn cannot parse (a ``Content-Length`` of ``abc``, ``-1`` or ``10^20``, a CR inside a
header, a broken request line) never reaches FastAPI: uvicorn answers 400 itself and closes the
connection. :class:`ProblemH11Protocol` makes that answer problem+json like every other error
(code ``invalid_http``), with the same fields; everything else about the protocol is uvicorn's h11
implementation, which ``python -m service`` selects with ``http=``.
"""

from __future__ import annotations

import json

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from circuitdiff.errors import default_fix


def problem_400(message: str) -> bytes:
    return json.dumps({
        "type": "urn:circuitdiff:problem:invalid_http", "title": "Bad Request", "status": 400,
        "detail": f"the HTTP server could not parse the request ({message.rstrip('.')})",
        "code": "invalid_http", "errors": [{"field": "request", "message": message, "code": "invalid_http",
                                            "fix": default_fix("invalid_http")}],
    }).encode()


class ProblemH11Protocol(H11Protocol):
    def send_400_response(self, msg: str) -> None:
        body = problem_400(msg)
        headers = [(b"content-type", b"application/problem+json"), (b"content-length", str(len(body)).encode()),
                   (b"connection", b"close"), (b"x-content-type-options", b"nosniff")]
        for event in (h11.Response(status_code=400, headers=headers, reason=b"Bad Request"), h11.Data(data=body),
                      h11.EndOfMessage()):
            self.transport.write(self.conn.send(event))
        self.transport.close()
