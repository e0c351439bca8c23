"""The body of ``POST /v1/watches``: a teacher, a checkpoint source (a directory under a model root,
or a hub repo's revisions), a comparison template, a schedule, a baseline and alert rules.

Validated by the API (service/api/v1/watches.py); the stored form, with the webhook secret kept
apart, is the watch record's ``spec`` (:mod:`watches.store`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.json_schema import SkipJsonSchema

from circuitdiff.spec import ModelRef, hub_id_problem, spec_error

from .webhooks import url_problem



class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # "8", true and 1.0 are not 8, 1 and 1 (#24)


def _no_default(schema: dict) -> None:
    schema.pop("default", None)  # absent, not null: the schema's oneOf is about which one is given


class CheckpointSource(_Strict):
    """Either a directory (``directory``, ``pattern``, ``settle_seconds``) or a hub repo (``hub``,
    ``revisions``): exactly one of ``directory`` and ``hub`` (the schema's ``oneOf`` says so too)."""

    model_config = ConfigDict(json_schema_extra={"oneOf": [
        {"required": ["directory"], "not": {"required": ["hub"]}},
        {"required": ["hub"], "not": {"required": ["directory"]}},
    ]})

    directory: str | SkipJsonSchema[None] = Field(None, min_length=1, json_schema_extra=_no_default, max_length=1000, examples=["runs/42"],
                                  description="under an allowed model root, like a local model path")
    pattern: str = Field("step-*", min_length=1, max_length=200, description="glob matched against subdirectory names")
    settle_seconds: float = Field(30, ge=0, le=86400, description="a checkpoint is compared once unchanged this long")
    hub: str | SkipJsonSchema[None] = Field(None, min_length=3, json_schema_extra=_no_default, max_length=200, examples=["org/name"],
                            description="instead of a directory: a hub model repo, polled with huggingface_hub")
    revisions: Literal["branches", "tags", "commits"] = Field("branches", description="with hub: what a checkpoint is")

    @field_validator("directory", "hub", mode="before")
    @classmethod
    def _not_null(cls, v: Any) -> Any:
        if v is None:
            raise ValueError("leave the field out rather than send null")
        return v

    @field_validator("directory")
    @classmethod
    def _no_nul(cls, v: str | None) -> str | None:
        if v is not None and "\0" in v:
            raise ValueError("a path cannot contain a NUL character")
        return v

    @field_validator("pattern")
    @classmethod
    def _one_level(cls, v: str) -> str:
        if "/" in v or "\0" in v or v in (".", ".."):
            raise ValueError("give a glob for one directory level, like 'step-*'")
        return v

    @field_validator("hub")
    @classmethod
    def _hub_id(cls, v: str | None) -> str | None:
        problem = v is not None and hub_id_problem(v, namespace_required=True)
        if problem:
            raise ValueError(f"{problem}: give a hub repo id like 'org/name'")
        return v

    @model_validator(mode="after")
    def _one_source(self) -> "CheckpointSource":
        if (self.directory is None) == (self.hub is None):
            raise spec_error("invalid_checkpoint_source", "give either a directory or a hub repo, not both or neither",
                             'use {"directory": "runs/42", "pattern": "step-*"} or {"hub": "org/name"}',
                             field="directory")
        return self

    def public(self) -> dict[str, Any]:
        """The fields that apply to this kind of source."""
        if self.hub is not None:
            return {"hub": self.hub, "revisions": self.revisions}
        return {"directory": self.directory, "pattern": self.pattern, "settle_seconds": self.settle_seconds}


class Webhook(_Strict):
    url: str = Field(max_length=2000, examples=["https://hooks.example/cd"])
    secret: str = Field(min_length=8, max_length=256, description="HMAC-SHA256 key; never returned by the API")

    @field_validator("url")
    @classmethod
    def _well_formed(cls, v: str) -> str:
        problem = url_problem(v)
        if problem:
            raise ValueError(f"{problem}: give an http(s) URL with a host and a port from 1 to 65535")
        return v


class Alerts(_Strict):
    alignment_drop: float | None = Field(None, ge=0, description="alert when baseline score - this score >= it")
    logit_diff_drop_pct: float | None = Field(
        None, ge=0, description="alert when the student's clean logit difference fell by this % of the baseline's")
    stops_performing: bool = Field(True, description="alert when the student no longer performs the task")
    webhook: Webhook | None = None


class WatchSpec(_Strict):
    """``POST /v1/watches``. ``comparison`` takes every ComparisonSpec field except teacher/student."""

    name: str = Field(min_length=1, max_length=200, examples=["distil-run-42"])
    teacher: ModelRef
    checkpoints: CheckpointSource
    comparison: dict[str, Any] = Field(default_factory=dict, examples=[{"task": "ioi", "n_prompts": 100}])
    interval_seconds: int = Field(300, ge=10, le=30 * 86400)
    baseline: str = Field("first", min_length=1, max_length=200,
                          description='"first", "previous", or a checkpoint name')
    alerts: Alerts = Field(default_factory=Alerts)

    @field_validator("teacher", mode="before")
    @classmethod
    def _str_to_ref(cls, v: Any) -> Any:
        return {"id": v} if isinstance(v, str) else v
