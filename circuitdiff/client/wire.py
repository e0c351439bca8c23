"""The HTTP API's job, artifact and dataset bodies: one definition for the service, which answers
with them, and the client (:mod:`circuitdiff.client.http`), which reads them. Pydantic only
(torch-free, no httpx); the result body is :class:`circuitdiff.result.ComparisonResult`.

The job statuses are defined here, once: :data:`Status`, :data:`STATUSES` (every one, in lifecycle
order) and :data:`TERMINAL` (a job in one never changes again). The job store (``jobs.store``), the
API's routes and problems, the Prometheus exposition and the client all read them from here.

The service's own bodies (health, catalogue) stay in ``service/schemas.py``, which re-exports these.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, get_args

from pydantic import BaseModel, Field

Status = Literal["queued", "running", "succeeded", "failed", "cancelled"]
STATUSES: tuple[Status, ...] = get_args(Status)
TERMINAL: tuple[Status, ...] = ("succeeded", "failed", "cancelled")


class Progress(BaseModel):
    stage: str = Field(examples=["influence:teacher"])
    done: int
    total: int
    eta_seconds: float | None = Field(
        None, description="seconds the current stage still needs at the rate measured in it so far in this job; "
                          "null until known (no item of the stage done yet); 0 once the job is done")


class JobError(BaseModel):
    code: str = Field(examples=["model_load_failed"])
    detail: str
    field: str | None = None
    fix: str | None = None
    needed_bytes: int | None = Field(None, description="insufficient_memory: bytes the job needs (weights + scan)")
    available_bytes: int | None = Field(None, description="insufficient_memory: bytes free on the worker's devices")


class Links(BaseModel):
    self: str
    result: str
    artifacts: str
    report: str


class JobStatus(BaseModel):
    id: str
    status: Status
    progress: Progress | None = None
    queue_position: int | None = Field(None, description="1 = next to start; only while queued")
    attempts: int = Field(description="deliveries to a worker so far (a killed worker's job is retried)")
    cancel_requested: bool
    created_at: datetime
    started_at: datetime | None = Field(None, description="when the first attempt started")
    attempt_started_at: datetime | None = Field(
        None, description="when the current (latest) attempt started; differs from started_at after a retry"
    )
    finished_at: datetime | None = None
    error: JobError | None = None
    warnings: list[str] = Field(default_factory=list)
    model_cache_hits: int | None = Field(
        None, description="models this job found already loaded in the worker's memory (0-2); set when it succeeded"
    )
    content_key: str = Field(description="sha256 of spec + model fingerprints + dataset digest + engine version")
    fingerprints: dict[str, str]
    spec: dict[str, Any] = Field(description="the resolved spec (preset expanded)")
    watch_id: str | None = Field(None, description="the watch that created this job (GET /v1/watches/{id})")
    checkpoint: str | None = Field(None, description="the watched checkpoint this job compares")
    links: Links


class JobList(BaseModel):
    items: list[JobStatus]
    next_cursor: str | None = Field(None, description="pass as ?cursor= for the next (older) page")


class Artifact(BaseModel):
    name: str = Field(examples=["result.json"])
    size: int
    sha256: str
    media_type: str
    href: str


class ArtifactList(BaseModel):
    items: list[Artifact]


class RejectedLine(BaseModel):
    line: int = Field(description="1-based line number in the upload")
    field: str
    reason: str


class DatasetInfo(BaseModel):
    id: str = Field(examples=["ds_0123456789abcdef01234567"])
    sha256: str
    n_items: int
    n_rejected: int
    rejected: list[RejectedLine]
    bytes: int
    created_at: datetime
    kind: Literal["answers", "text"] = Field(
        "answers", description="answers: prompts with answer and distractor (every metric); text: plain texts "
        "(metrics kl and loss only)")


class DatasetList(BaseModel):
    items: list[DatasetInfo] = Field(description="the caller's datasets, newest upload first")


class DatasetItems(BaseModel):
    items: list[dict[str, Any]] = Field(description="items in upload order, each as stored (keys sorted)",
                                        examples=[[{"answer": " Mary", "distractor": " John",
                                                    "prompt": "When Mary and John went to the store, John gave a drink to"}]])
    offset: int
    total: int = Field(description="items in the dataset")
    next_offset: int | None = Field(description="pass as `offset` for the next page; null on the last")
