"""The comparison spec: what a user asks circuitdiff to compare. Importable without torch.

One pydantic model is shared by the library, the CLI and the HTTP API. ``resolve()`` expands the
preset into explicit values so that every result carries a spec that re-runs it exactly.

Presets (PAPER.md §Method, paper-notes §7):
- ``paper``: the authors' choices: zero ablation for IOI/QA, per-position mean ablation over the
  corrupted set for the sequence task, student→teacher argmax matching, eigenvector MLP
  similarity rescaled to the head-similarity distribution, thresholds 0.95/0.12 with the
  below-threshold pairs counted twice (needed to reproduce their printed scores), no CI.
- ``default``: the same formula with the bugs fixed: mean ablation for every task, no duplicated
  pairs, bootstrap confidence intervals. One BOS policy for every pass of a job in both presets.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SCHEMA_VERSION = 1

ZOO_MODELS: dict[str, str] = {
    "gpt-teacher": "GPT-2 architecture, 4 layers x 4 heads, trained on the bundled task corpus",
    "gpt-student": "2 layers x 4 heads, distilled from gpt-teacher (KD, T=2)",
    "bert-teacher": "BERT masked LM, 4 layers, trained on the bundled task corpus",
    "distilbert-student": "DistilBERT masked LM, 2 layers, distilled from bert-teacher",
    "gpt2-small-random": "GPT-2 small shapes (12x12, d_model 768, vocab 50257), seeded random weights; benchmarks only",
    "distilgpt2-random": "DistilGPT2 shapes (6x12, d_model 768, vocab 50257), seeded random weights; benchmarks only",
}

TASKS: dict[str, dict[str, Any]] = {
    "ioi": {
        "description": "Indirect object identification: '... John gave a drink to' -> Mary vs John",
        "options": {"templates": {"type": "enum", "values": ["mixed", "ABBA", "BABA"], "default": "mixed"}},
    },
    "sequence": {
        "description": "Numerical sequence continuation: '... Desk done in 4. Sun done in' -> 5 vs 4",
        "options": {
            "members": {"type": "enum", "values": ["numerals", "numwords", "months"], "default": "numerals"},
            "frame": {"type": "enum", "values": ["done", "lost", "names"], "default": "done"},
        },
    },
    "qa": {
        "description": "Factual questions: 'Q: What is the capital of Velm? A:' -> Tarro vs another capital",
        "options": {"facts": {"type": "enum", "values": ["zoo", "world"], "default": "zoo"}},
    },
    "custom": {
        "description": "A JSONL dataset of {prompt, answer, distractor, corrupted_prompt?, masked_prompt?}",
        "options": {},
    },
}

Ablation = Literal["zero", "mean", "resample"]
Preset = Literal["default", "paper"]
Matching = Literal["student_to_teacher", "teacher_to_student"]
MlpSimilarity = Literal["eigen", "cka"]
Scan = Literal["exact", "attribution", "naive"]
Bos = Literal["prepend", "none"]
Device = Literal["auto", "cpu", "cuda"]
Dtype = Literal["float32", "float16", "bfloat16"]

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")
_REVISION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,99}$")


def model_kind(model_id: str) -> Literal["zoo", "hub", "local"]:
    """Classify a model id without touching disk or network: ``zoo:NAME``, a path, or a hub id."""
    if model_id.startswith("zoo:"):
        return "zoo"
    if model_id.startswith(("/", "./", "../", "~")) or model_id in (".", ".."):
        return "local"
    return "hub"


class ModelRef(BaseModel):
    """A model: ``zoo:NAME``, a hub id (``gpt2``, ``org/name``) with optional revision, or a
    local checkpoint directory (absolute or ``./``-relative path)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=500, examples=["zoo:gpt-teacher"])
    revision: str | None = Field(default=None, max_length=100)

    @field_validator("id")
    @classmethod
    def _check_id(cls, v: str) -> str:
        v = v.strip()
        kind = model_kind(v)
        if kind == "zoo":
            name = v[4:]
            if name not in ZOO_MODELS:
                raise ValueError(
                    f"unknown zoo model {name!r}; available: {', '.join('zoo:' + k for k in ZOO_MODELS)}"
                )
        elif kind == "hub":
            if not _HUB_ID.match(v) or ".." in v:
                raise ValueError(
                    "not a valid model id: use zoo:NAME, a hub id like 'gpt2' or 'org/name', "
                    "or a local directory starting with '/' or './'"
                )
        elif "\x00" in v:
            raise ValueError("local path contains a NUL byte")
        return v

    @field_validator("revision")
    @classmethod
    def _check_revision(cls, v: str | None) -> str | None:
        if v is not None and not _REVISION.match(v):
            raise ValueError("revision must be a branch, tag or commit hash")
        return v

    @model_validator(mode="after")
    def _revision_only_for_hub(self) -> "ModelRef":
        if self.revision is not None and model_kind(self.id) != "hub":
            raise ValueError("revision applies to hub models only")
        return self

    @property
    def kind(self) -> str:
        return model_kind(self.id)


class ComparisonSpec(BaseModel):
    """One comparison job. Fields left ``None`` are filled by the preset in :meth:`resolve`."""

    model_config = ConfigDict(extra="forbid")

    teacher: ModelRef
    student: ModelRef
    task: str = Field(examples=["ioi"])
    task_options: dict[str, Any] = Field(default_factory=dict)
    dataset: str | None = Field(
        default=None, description="custom task: dataset id (from POST /v1/datasets) or a local JSONL path"
    )
    preset: Preset = "default"
    ablation: Ablation | None = None
    matching: Matching | None = None
    mlp_similarity: MlpSimilarity | None = None
    head_threshold: float | None = Field(default=None, ge=0, le=1)
    mlp_threshold: float | None = Field(default=None, ge=0, le=1)
    duplicate_unmatched: bool | None = Field(
        default=None, description="count below-threshold pairs twice (the authors' quirk; paper preset)"
    )
    n_prompts: int = Field(default=100, ge=1, le=5000)
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    bos: Bos | None = None
    device: Device = "auto"
    dtype: Dtype = "float32"
    scan: Scan = "exact"
    attribution_check: int | None = Field(
        default=None, ge=1, le=10_000,
        description="scan=attribution: exact-scan this many sampled components and report the agreement",
    )
    bootstrap: int | None = Field(default=None, ge=0, le=100_000, description="bootstrap resamples for CIs; 0 = none")

    @field_validator("teacher", "student", mode="before")
    @classmethod
    def _str_to_ref(cls, v: Any) -> Any:
        return {"id": v} if isinstance(v, str) else v

    @field_validator("task")
    @classmethod
    def _check_task(cls, v: str) -> str:
        if v not in TASKS:
            raise ValueError(f"unknown task {v!r}; available: {', '.join(TASKS)}")
        return v

    @model_validator(mode="after")
    def _check_options(self) -> "ComparisonSpec":
        allowed = TASKS[self.task]["options"]
        for key, value in self.task_options.items():
            if key not in allowed:
                known = ", ".join(allowed) or "none"
                raise ValueError(f"task_options.{key}: unknown option for task {self.task!r} (options: {known})")
            opt = allowed[key]
            if opt["type"] == "enum" and value not in opt["values"]:
                raise ValueError(f"task_options.{key}: must be one of {opt['values']}, got {value!r}")
        if self.task == "custom" and not self.dataset:
            raise ValueError("dataset: the custom task needs a dataset (upload one with POST /v1/datasets)")
        if self.task != "custom" and self.dataset:
            raise ValueError("dataset: only the custom task takes a dataset")
        return self

    def resolve(self) -> "ComparisonSpec":
        """Expand the preset: every field explicit, task options filled with their defaults."""
        paper = self.preset == "paper"
        opts = {k: o["default"] for k, o in TASKS[self.task]["options"].items()}
        opts.update(self.task_options)
        ablation = self.ablation or (
            ("mean" if self.task == "sequence" else "zero") if paper else "mean"
        )
        return self.model_copy(
            update={
                "task_options": opts,
                "ablation": ablation,
                "matching": self.matching or "student_to_teacher",
                "mlp_similarity": self.mlp_similarity or "eigen",
                "head_threshold": 0.95 if self.head_threshold is None else self.head_threshold,
                "mlp_threshold": 0.12 if self.mlp_threshold is None else self.mlp_threshold,
                "duplicate_unmatched": paper if self.duplicate_unmatched is None else self.duplicate_unmatched,
                "bos": self.bos or "prepend",
                "bootstrap": (0 if paper else 1000) if self.bootstrap is None else self.bootstrap,
            }
        )

    def canonical_json(self) -> str:
        """Stable serialisation of the resolved spec (sorted keys, no whitespace) for content keys."""
        data = self.resolve().model_dump(mode="json")
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    def spec_digest(self) -> str:
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()
