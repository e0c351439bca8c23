"""A Python client for the circuitdiff service: typed methods over HTTP, no torch.

    from circuitdiff.client import Client

    with Client("http://127.0.0.1:8000", api_key="...") as cd:
        job = cd.submit({"teacher": "zoo:gpt-teacher", "student": "zoo:gpt-student", "task": "ioi"})
        job = cd.wait(job.id)               # long-polls; raises JobFailed / JobCancelled
        result = cd.result(job.id)          # circuitdiff.result.ComparisonResult, as the engine wrote it
        cd.download(job.id, "report.html", "report.html")
        ab = cd.diff(job.id, other_job_id)  # B − A: score with its interval, verdicts, shares, partners

Bodies are the service's own models (:mod:`circuitdiff.client.wire`, :class:`~circuitdiff.result.ComparisonResult`).
Every problem+json answer becomes an :class:`ApiError` carrying ``status``, ``code``, ``detail``,
``errors`` (one item per bad field) and ``fix``; a job that ends failed or cancelled while waited on
raises :class:`JobFailed` / :class:`JobCancelled` with the job's own error. All HTTP goes through
one private helper, :meth:`Client._request` (files through :meth:`Client._stream`, which raises the
same errors), so a new resource is a few lines.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx

from ..result import ComparisonResult
from .watch import WatchMethods
from .wire import Artifact, ArtifactList, DatasetInfo, DatasetItems, DatasetList, JobList, JobStatus

Job = JobStatus  # what the service answers about a comparison job


class ApiError(Exception):
    """A problem+json answer (RFC 9457): ``code`` is stable, ``errors`` names each bad field."""

    def __init__(self, status: int, code: str, detail: str, *, errors: list[dict] | None = None,
                 body: dict | None = None):
        super().__init__(f"{status} {code}: {detail}")
        self.status, self.code, self.detail = status, code, detail
        self.errors = errors or []
        self.body = body or {}

    @property
    def fix(self) -> str | None:
        """What to do about it: the first field's fix (the one a person acts on first)."""
        return next((e.get("fix") for e in self.errors if e.get("fix")), None)

    @classmethod
    def from_response(cls, r: httpx.Response) -> "ApiError":
        try:
            body = r.json()
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        return cls(r.status_code, body.get("code", "http_error"), body.get("detail") or r.reason_phrase,
                   errors=body.get("errors"), body=body)


class JobEnded(Exception):
    """A waited-on job ended without a result. ``job`` is its final record."""

    def __init__(self, job: Job, message: str):
        super().__init__(message)
        self.job = job


class JobFailed(JobEnded):
    """The job failed: ``code``, ``detail``, ``field`` and ``fix`` are the job's sanitized error."""

    def __init__(self, job: Job):
        e = job.error
        self.code = e.code if e else "failed"
        self.detail = e.detail if e else "the comparison failed"
        self.field = e.field if e else None
        self.fix = e.fix if e else None
        self.errors = [{"field": self.field, "message": self.detail, "fix": self.fix, "code": self.code}] if e else []
        super().__init__(job, f"comparison {job.id} failed: {self.code}: {self.detail}")


class JobCancelled(JobEnded):
    def __init__(self, job: Job):
        self.code = "job_cancelled"
        super().__init__(job, f"comparison {job.id} was cancelled")


class WaitTimeout(TimeoutError):
    def __init__(self, job: Job):
        super().__init__(f"comparison {job.id} is still {job.status} after the wait")
        self.job = job


class Client(WatchMethods):
    """``Client(base_url, api_key=None, timeout=30.0)``; use as a context manager or call :meth:`close`."""

    POLL_SECONDS = 30  # per long poll; the server caps it (CIRCUITDIFF_MAX_WAIT_SECONDS)

    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 30.0,
                 transport: httpx.BaseTransport | None = None):
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout,
                                  transport=transport)

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # ------------------------------------------------------------------ comparisons
    def submit(self, spec: dict | Any, idempotency_key: str | None = None) -> Job:
        """Queue a comparison (a spec dict or a :class:`circuitdiff.spec.ComparisonSpec`). An identical
        comparison already queued, running or done comes back as that job."""
        body = spec.model_dump(mode="json", exclude_none=True) if hasattr(spec, "model_dump") else spec
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return Job.model_validate(self._request("POST", "/v1/comparisons", json=body, headers=headers).json())

    def get(self, job_id: str, *, wait: float = 0) -> Job:
        """The job record; ``wait`` > 0 long-polls up to that many seconds for a change."""
        params = {"wait": wait} if wait else None
        timeout = self._http.timeout.read + wait if wait and self._http.timeout.read else None
        return Job.model_validate(self._request("GET", f"/v1/comparisons/{job_id}", params=params,
                                                timeout=timeout).json())

    def wait(self, job_id: str, timeout: float | None = None, *, on_update=None) -> Job:
        """Long-poll until the job finishes and return it. Raises :class:`JobFailed` or
        :class:`JobCancelled` (with the job's problem), or :class:`WaitTimeout` after ``timeout`` s.
        ``on_update(job)`` is called with every record seen (progress display)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        job = self.get(job_id)
        while True:
            if on_update:
                on_update(job)
            if job.status == "succeeded":
                return job
            if job.status == "failed":
                raise JobFailed(job)
            if job.status == "cancelled":
                raise JobCancelled(job)
            left = self.POLL_SECONDS if deadline is None else min(self.POLL_SECONDS, deadline - time.monotonic())
            if left <= 0:
                raise WaitTimeout(job)
            job = self.get(job_id, wait=max(left, 0.1))

    def result(self, job_id: str) -> ComparisonResult:
        return ComparisonResult.model_validate(self._request("GET", f"/v1/comparisons/{job_id}/result").json())

    def report(self, job_id: str) -> bytes:
        """The self-contained HTML report."""
        return self._request("GET", f"/v1/comparisons/{job_id}/report").content

    def diff(self, job_a: str, job_b: str) -> dict[str, Any]:
        """Two of your succeeded comparisons side by side, B − A (circuitdiff.analysis.diff): whether
        the teacher is the same, score difference with its interval, verdicts, influence shares,
        partners that changed, circuits' overlap."""
        return self._request("GET", f"/v1/comparisons/{job_a}/diff/{job_b}").json()

    def diff_report(self, job_a: str, job_b: str) -> bytes:
        """The A/B page (self-contained HTML)."""
        return self._request("GET", f"/v1/comparisons/{job_a}/diff/{job_b}/report").content

    def artifacts(self, job_id: str) -> list[Artifact]:
        return ArtifactList.model_validate(self._request("GET", f"/v1/comparisons/{job_id}/artifacts").json()).items

    def download(self, job_id: str, name: str, path: str | Path) -> Path:
        """Stream one file the job wrote to ``path`` (written to a temp name, then renamed)."""
        return self._stream(f"/v1/comparisons/{job_id}/artifacts/{name}", path)

    def _stream(self, url: str, path: str | Path) -> Path:
        path = Path(path)
        tmp = path.with_name(f".{path.name}.part")
        with self._http.stream("GET", url) as r:
            if r.is_error:
                r.read()
                raise ApiError.from_response(r)
            with open(tmp, "wb") as fh:
                for chunk in r.iter_bytes():
                    fh.write(chunk)
        tmp.replace(path)
        return path

    def cancel(self, job_id: str) -> Job:
        """A queued job is cancelled at once; a running one gets ``cancel_requested`` (``wait`` for it)."""
        return Job.model_validate(self._request("DELETE", f"/v1/comparisons/{job_id}").json())

    def list(self, status: str | None = None, *, page_size: int = 50) -> Iterator[Job]:
        """Your jobs, newest first, following ``next_cursor`` page by page."""
        params: dict[str, Any] = {"limit": page_size}
        if status:
            params["status"] = status
        while True:
            page = JobList.model_validate(self._request("GET", "/v1/comparisons", params=params).json())
            yield from page.items
            if not page.next_cursor:
                return
            params["cursor"] = page.next_cursor

    # ------------------------------------------------------------------ datasets
    def upload_dataset(self, path_or_items: str | Path | Iterable[dict]) -> DatasetInfo:
        """Upload a custom task dataset: a JSONL file, or items (dicts with prompt, answer, distractor, ...)."""
        if isinstance(path_or_items, (str, Path)):
            body = Path(path_or_items).read_bytes()
        else:
            body = "".join(json.dumps(item) + "\n" for item in path_or_items).encode()
        r = self._request("POST", "/v1/datasets", content=body, headers={"Content-Type": "application/x-ndjson"})
        return DatasetInfo.model_validate(r.json())

    def dataset(self, dataset_id: str) -> DatasetInfo:
        return DatasetInfo.model_validate(self._request("GET", f"/v1/datasets/{dataset_id}").json())

    def datasets(self) -> list[DatasetInfo]:
        """Your datasets, newest upload first (another key's are not listed)."""
        return DatasetList.model_validate(self._request("GET", "/v1/datasets").json()).items

    def dataset_items(self, dataset_id: str, *, page_size: int = 500) -> Iterator[dict[str, Any]]:
        """The dataset's valid items as stored (keys sorted), in upload order, following
        ``next_offset`` page by page."""
        offset: int | None = 0
        while offset is not None:
            page = DatasetItems.model_validate(self._request(
                "GET", f"/v1/datasets/{dataset_id}/items", params={"offset": offset, "limit": page_size}).json())
            yield from page.items
            offset = page.next_offset

    def download_dataset(self, dataset_id: str, path: str | Path) -> Path:
        """The stored JSONL to ``path``: uploading it again gives the same id."""
        return self._stream(f"/v1/datasets/{dataset_id}/download", path)

    # ------------------------------------------------------------------ the one door to HTTP
    def _request(self, method: str, path: str, **kw) -> httpx.Response:
        if kw.get("timeout") is None:
            kw.pop("timeout", None)
        r = self._http.request(method, path, **kw)
        if r.is_error:
            raise ApiError.from_response(r)
        return r
