"""The watch methods of :class:`circuitdiff.client.Client` (issue 16), kept in their own module.

Every method goes through the client's one door to HTTP, ``self._request``, so a problem+json
answer raises the client's ``ApiError`` like any other call. Bodies are plain dicts as the API
documents them (``openapi/openapi.json``, tag ``watches``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


class WatchMethods:
    """Mixed into ``Client``: needs ``_request(method, path, **kw) -> httpx.Response``."""

    def create_watch(self, spec: dict[str, Any]) -> dict[str, Any]:
        """``POST /v1/watches``: the watch (201); checked at once, then every ``interval_seconds``."""
        return self._request("POST", "/v1/watches", json=spec).json()

    def watch(self, watch_id: str) -> dict[str, Any]:
        return self._request("GET", f"/v1/watches/{watch_id}").json()

    def watches(self, *, page_size: int = 50) -> Iterator[dict[str, Any]]:
        """Your watches, newest first, following ``next_cursor``."""
        params: dict[str, Any] = {"limit": page_size}
        while True:
            page = self._request("GET", "/v1/watches", params=params).json()
            yield from page["items"]
            if not page.get("next_cursor"):
                return
            params["cursor"] = page["next_cursor"]

    def update_watch(self, watch_id: str, **patch: Any) -> dict[str, Any]:
        """``paused=True|False``, ``alerts={...}``, ``interval_seconds=N``."""
        return self._request("PATCH", f"/v1/watches/{watch_id}", json=patch).json()

    def delete_watch(self, watch_id: str) -> dict[str, Any]:
        return self._request("DELETE", f"/v1/watches/{watch_id}").json()

    def check_watch(self, watch_id: str) -> dict[str, Any]:
        """Look for new checkpoints now (202)."""
        return self._request("POST", f"/v1/watches/{watch_id}/check").json()

    def watch_history(self, watch_id: str) -> list[dict[str, Any]]:
        """Every compared checkpoint in checkpoint order, with its numbers and verdict."""
        return self._request("GET", f"/v1/watches/{watch_id}/history").json()["items"]

    def watch_deliveries(self, watch_id: str) -> list[dict[str, Any]]:
        return self._request("GET", f"/v1/watches/{watch_id}/deliveries").json()["items"]

    def watch_report(self, watch_id: str) -> bytes:
        """The self-contained HTML trend report."""
        return self._request("GET", f"/v1/watches/{watch_id}/report").content
