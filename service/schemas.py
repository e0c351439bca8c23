"""Response bodies of the API (the request body is :class:`circuitdiff.spec.ComparisonSpec`)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, Field

from circuitdiff.client.wire import (  # noqa: F401 - re-exported: the API's bodies, shared with the client
    Artifact, ArtifactList, DatasetInfo, DatasetItems, DatasetList, JobError, JobList, JobStatus, Links, Progress, RejectedLine, Status,
)


class ModelEntry(BaseModel):
    id: str = Field(examples=["zoo:gpt-teacher"])
    kind: Literal["zoo", "local"]
    description: str
    available: bool


class ModelList(BaseModel):
    items: list[ModelEntry]
    roots: list[str] = Field(description="allowed local model roots")


class TaskEntry(BaseModel):
    name: str
    description: str
    options: dict[str, Any]


class TaskList(BaseModel):
    items: list[TaskEntry]


class Health(BaseModel):
    status: Literal["ok"]


class Ready(BaseModel):
    status: Literal["ready"]
    checks: dict[str, str]


class Version(BaseModel):
    service: str
    engine_version: str
    api: str
    result_schema_version: int


def ts(x: float | None) -> datetime | None:
    return None if x is None else datetime.fromtimestamp(x, tz=timezone.utc)
