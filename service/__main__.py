"""``python -m service``: the API alone under uvicorn, bound as the settings say.

Settings refuse a non-loopback bind address without API keys, so an open API is never exposed.
"""

from __future__ import annotations

import uvicorn

from jobs.settings import get_settings

from .http_server import ProblemH11Protocol
from .main import create_app


def main() -> None:
    settings = get_settings()
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info",
                proxy_headers=False, http=ProblemH11Protocol)  # its own 400s are problem+json too


if __name__ == "__main__":
    main()
