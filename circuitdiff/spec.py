"""The comparison spec: what a user asks circuitdiff to compare. Importable without torch.

One pydantic model is shared by the library, the CLI and the HTTP API. ``resolve()`` expands the
preset into explicit values so that every result carries a spec that re-runs it exactly. A spec is
resolved once: by the API at submission with the models' layout where it can be known before
loading (``resolve_known``; zoo models, local checkpoints), else by the engine's load stage; the job
record, its status and the result then show the same spec.

Presets (docs/method.md §Method, docs/authors-code.md §7):
- ``paper``: per task, what the authors' notebook for it did (circuitdiff.catalogue.PaperProtocol):
  IOI (``IOI_alignment_metric.ipynb``) zero ablation, raw eigenvector MLP similarity, no thresholds,
  no duplicated pairs; sequence (``seq_alignment_metric.ipynb``, per-position mean ablation over the
  corrupted set) and QA (``qa_alignment_metric.ipynb``, zero ablation) eigenvector MLP similarity
  rescaled to the head-similarity distribution, thresholds 0.95/0.12, below-threshold head pairs
  counted twice (needed to reproduce their printed scores); student→teacher argmax matching;
  intervals from the authors' 10,000 bootstrap resamples (their robustness analysis).
- ``default``: the same alignment formula with measures that mean what they say: mean ablation for
  every task, linear CKA for MLPs (1 for identical layers, no per-run rescaling), no duplicated
  pairs, 1,000 bootstrap resamples. One BOS policy for every pass of a job in both presets.
- the ``paper`` preset on a pair of Llama-layout models runs the authors' Llama notebook's
  ``token_mean`` ablation (:func:`preset_ablation`); until the pair's layout is known the ablation
  is ``None`` (pending).

Both presets calibrate the score against chance (``chance_draws`` permutations, circuitdiff.analysis.chance).

``bootstrap`` governs every confidence interval of a result (alignment and robustness).

Validation errors carry a stable code as their pydantic error ``type`` and a ``fix`` in their
``ctx`` (:func:`spec_error`); the service and the CLI read those, never the message text.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from .architectures import LLAMA_MODEL_TYPES
from .catalogue import (
    HUB_SHAPES, LLAMA_PAPER_ABLATION, LLAMA_PAPER_PROTOCOL, TASKS, ZOO, config_model_type, zoo_model_type,
)
from .errors import MetricError
from .metrics import check_metric
from .vocabulary import (
    ROLES, CIRCUIT_THRESHOLD, MAX_PROMPTS, PAPER_HEAD_THRESHOLD, PAPER_MLP_THRESHOLD, Ablation, Bos, Device, Dtype, Matching,
    SCREEN_TOP, DEFAULT_ESTIMATOR, ESTIMATED_SCANS, Estimator, Metric, MlpSimilarity, ModelKind, Preset, ScanMethod,
)

MAX_CONTROLS = 4  # each control is a second comparison with the teacher
_HUB_PART = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9._-]*[A-Za-z0-9_])?$")


def hub_id_problem(v: str, *, namespace_required: bool = False) -> str | None:
    """Why ``v`` cannot be a hub repository id, by the hub's own rules (``huggingface_hub``'s
    ``validate_repo_id``: ``name`` or ``namespace/name``, at most 96 characters, letters, digits and
    ``-_.``, no ``--`` or ``..``, no ``-``/``.`` at either end of a part), plus one of ours: an id
    without a namespace is one of the hub's early canonical names (``gpt2``, ``bert-base-uncased``),
    which all begin with a letter, so ``0`` is refused rather than looked up. None: it can be one."""
    parts = v.split("/")
    if len(v) > 96:
        return "a hub id has at most 96 characters"
    if len(parts) > 2 or (namespace_required and len(parts) != 2):
        return "a hub id is 'org/name'" + ("" if namespace_required else " (or a canonical name like 'gpt2')")
    if "--" in v or ".." in v:
        return "a hub id cannot contain '--' or '..'"
    if not all(_HUB_PART.match(p) for p in parts):
        return "a hub id uses letters, digits, '-', '_' and '.', and starts and ends each part with a letter, digit or '_'"
    if len(parts) == 1 and not v[0].isalpha():
        return "a hub id without an organisation is a canonical name, which starts with a letter (like 'gpt2')"
    return None
_REVISION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,99}$")
MODEL_ID_FIX = "use zoo:NAME, a hub id like 'gpt2' or 'org/name', or a local checkpoint directory"


def spec_error(code: str, message: str, fix: str, field: str | None = None) -> PydanticCustomError:
    """A validation error with a stable ``code`` (the error's ``type``), a ``fix`` and, for errors raised
    by a model-level validator, the dotted ``field`` it concerns (relative to the model), all in the
    error's ``ctx``. Callers map ``type`` to their code: rewording ``message`` never changes it."""
    ctx = {"message": message, "fix": fix}
    if field is not None:
        ctx["field"] = field
    return PydanticCustomError(code, "{message}", ctx)


def model_kind(model_id: str) -> ModelKind:
    """Classify a model id without touching disk or network: ``zoo:NAME``, a path, or a hub id."""
    if model_id.startswith("zoo:"):
        return "zoo"
    if model_id.startswith(("/", "./", "../", "~")) or model_id in (".", ".."):
        return "local"
    return "hub"


def model_type_of(ref: "ModelRef") -> str | None:
    """The ``model_type`` of a model, known without loading it: a zoo model, a local checkpoint's
    ``config.json``, or a hub model of catalogue.HUB_SHAPES. None for any other hub model: the
    engine learns it when it loads the model."""
    if ref.kind == "zoo":
        return zoo_model_type(ref.id)
    if ref.kind == "hub":
        return HUB_SHAPES.get(ref.id, {}).get("model_type")
    return config_model_type(Path(ref.id).expanduser())


class ModelRef(BaseModel):
    """A model: ``zoo:NAME``, a hub id (``gpt2``, ``org/name``) with optional revision, or a
    local checkpoint directory (absolute or ``./``-relative path)."""

    model_config = ConfigDict(extra="forbid", strict=True)  # "8", true and 1.0 are not 8, 1 and 1 (#24)

    id: str = Field(min_length=1, max_length=500, examples=["zoo:gpt-teacher"])
    revision: str | None = Field(default=None, min_length=1, max_length=100, pattern=_REVISION.pattern,
                                 description="a branch, tag or commit of a hub model")

    @field_validator("id")
    @classmethod
    def _check_id(cls, v: str) -> str:
        v = v.strip()
        kind = model_kind(v)
        if kind == "zoo":
            name = v[4:]
            if name not in ZOO:
                available = ", ".join("zoo:" + k for k in ZOO)
                raise spec_error("unknown_model", f"unknown zoo model {name!r}; available: {available}",
                                 f"use one of: {available} (GET /v1/models)")
        elif kind == "hub":
            problem = hub_id_problem(v)
            if problem:
                raise spec_error("invalid_model", f"not a valid model id ({problem}): use zoo:NAME, a hub id like "
                                 "'gpt2' or 'org/name', or a local directory starting with '/' or './'", MODEL_ID_FIX)
        elif "\x00" in v:
            raise spec_error("invalid_model", "local path contains a NUL byte", MODEL_ID_FIX)
        return v

    @field_validator("revision")
    @classmethod
    def _check_revision(cls, v: str | None) -> str | None:
        if v is not None and not _REVISION.match(v):
            raise spec_error("invalid_model", "revision must be a branch, tag or commit hash",
                             "give a branch, tag or commit hash of the hub repository")
        return v

    @model_validator(mode="after")
    def _revision_only_for_hub(self) -> "ModelRef":
        if self.revision is not None and model_kind(self.id) != "hub":
            raise spec_error("invalid_model", "revision applies to hub models only",
                             "drop `revision`: only hub models have revisions", field="revision")
        return self

    @property
    def kind(self) -> ModelKind:
        return model_kind(self.id)


class CircuitsSpec(BaseModel):
    """Circuit discovery for both models and the circuit diff (docs/method.md §Method 7). Components outside
    a circuit are ablated as the spec's ``ablation`` says."""

    model_config = ConfigDict(extra="forbid", strict=True)  # "8", true and 1.0 are not 8, 1 and 1 (#24)

    threshold: float = Field(default=CIRCUIT_THRESHOLD, gt=0, lt=100,
                             description="T in points of the full model's logit difference (the authors': 20)")
    sweep: list[float] | None = Field(
        default=None, max_length=12, examples=[[10, 15, 20, 25, 30]],
        description="more thresholds to search, each compared with the circuit at `threshold` (Jaccard)")
    resamples: int = Field(default=20, ge=0, le=500,
                           description="bootstrap resamples of the prompts on which each model's circuit is found "
                           "again: each component's inclusion frequency, and discarded/new only where stable; 0 = off")
    null_draws: int = Field(default=200, ge=20, le=10_000,
                            description="circuits drawn per null control of the transfer")

    @field_validator("sweep")
    @classmethod
    def _check_sweep(cls, v: list[float] | None) -> list[float] | None:
        if v is None:
            return v
        if not v or any(not 0 < t < 100 for t in v):
            raise spec_error("invalid_circuits", "every sweep threshold must be between 0 and 100 (exclusive)",
                             "give thresholds in points, e.g. [10, 15, 20, 25, 30]")
        return sorted(set(float(t) for t in v))


class ComparisonSpec(BaseModel):
    """One comparison job. Fields left ``None`` are filled by the preset in :meth:`resolve`."""

    model_config = ConfigDict(extra="forbid", strict=True)  # "8", true and 1.0 are not 8, 1 and 1 (#24)

    teacher: ModelRef
    student: ModelRef
    task: str = Field(examples=["ioi"], json_schema_extra={"enum": list(TASKS)},
                      description="a built-in task (GET /v1/tasks)")
    task_options: dict[str, Any] = Field(default_factory=dict)
    dataset: str | None = Field(
        default=None, description="custom task: dataset id (from POST /v1/datasets) or a local JSONL path"
    )
    preset: Preset = "default"
    metric: Metric = Field(
        default="logit_diff",
        description="what influence is measured on (circuitdiff.metrics): logit_diff (the paper's), answer_prob, "
        "answer_logprob, kl (from the clean next-token distribution) or loss (next-token cross-entropy of the "
        "text; causal models). kl and loss need no answer, so they also run plain-text datasets",
    )
    ablation: Ablation | None = None
    matching: Matching | None = None
    mlp_similarity: MlpSimilarity | None = None
    head_threshold: float | None = Field(default=None, ge=0, le=1)
    mlp_threshold: float | None = Field(default=None, ge=0, le=1)
    duplicate_unmatched: bool | None = Field(
        default=None, description="count below-threshold head pairs twice (the authors' quirk; paper preset)"
    )
    n_prompts: int = Field(default=100, ge=1, le=MAX_PROMPTS)
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    bos: Bos | None = None
    device: Device = "auto"
    dtype: Dtype = Field(
        default="auto", description="weights' dtype; auto = float32 up to 1e9 parameters, bfloat16 above (per model, "
        "decided from its config before loading)")
    scan: ScanMethod = "exact"
    attribution_check: int | None = Field(
        default=None, ge=1, le=10_000,
        description="scan=attribution: exact-scan this many sampled components and report the agreement",
    )
    screen_top: int | None = Field(
        default=None, ge=1, le=10_000,
        description=f"scan=screened: exact influences for at least this many of the most influential components "
        f"(default {SCREEN_TOP}), and for every component whose estimate could join them within its measured error",
    )
    estimator: Estimator | None = Field(
        default=None,
        description=f"scan=attribution or screened: how influences are estimated — gradient (gradient x activation, "
        f"the default) or relp (RelP's relevance rules through norms, activations, attention and gated products; "
        f"smaller largest errors on trained models, docs/method.md §Attribution estimators)",
    )
    bootstrap: int | None = Field(
        default=None, ge=0, le=100_000,
        description="bootstrap resamples of every confidence interval (alignment, robustness) and of the match "
        "confidences (at most 1,000 of them); 0 = none",
    )
    chance_draws: int = Field(
        default=1000, ge=1000, le=100_000,
        description="permutations of the chance null the alignment score is calibrated against",
    )
    circuits: CircuitsSpec | None = Field(
        default=None, description="find both models' circuits and diff them through the matching; null = off",
        examples=[{"threshold": 20, "sweep": [10, 15, 20, 25, 30]}],
    )
    controls: list[ModelRef] = Field(
        default_factory=list, max_length=MAX_CONTROLS, examples=[[{"id": "zoo:gpt-control-scratch"}]],
        description="models of the student's size NOT distilled from this teacher (trained from scratch on the same "
        "data, or another family), each compared with the teacher under this spec and data; the verdict "
        "'kept_teacher_components' needs the student beyond every control (alignment.controls)",
    )

    @field_validator("teacher", "student", mode="before")
    @classmethod
    def _str_to_ref(cls, v: Any) -> Any:
        return {"id": v} if isinstance(v, str) else v

    @field_validator("controls", mode="before")
    @classmethod
    def _strs_to_refs(cls, v: Any) -> Any:
        return [{"id": x} if isinstance(x, str) else x for x in v] if isinstance(v, list) else v

    @field_validator("task")
    @classmethod
    def _check_task(cls, v: str) -> str:
        if v not in TASKS:
            raise spec_error("unknown_task", f"unknown task {v!r}; available: {', '.join(TASKS)}",
                             f"use one of: {', '.join(TASKS)} (GET /v1/tasks)")
        return v

    @model_validator(mode="after")
    def _check_options(self) -> "ComparisonSpec":
        task = TASKS[self.task]
        for key, value in self.task_options.items():
            field = f"task_options.{key}"
            if key not in task.options:
                known = ", ".join(task.options) or "none"
                raise spec_error("invalid_task_option", f"unknown option for task {self.task!r} (options: {known})",
                                 f"remove it; this task's options are: {known}", field=field)
            allowed = list(task.options[key].values)
            if value not in allowed:
                raise spec_error("invalid_task_option", f"must be one of {allowed}, got {value!r}",
                                 f"use one of {allowed} (GET /v1/tasks lists every option)", field=field)
        if task.needs_dataset and not self.dataset:
            raise spec_error("invalid_dataset", f"the {self.task} task needs a dataset",
                             "upload the JSONL with POST /v1/datasets and pass the returned id as `dataset`",
                             field="dataset")
        if self.screen_top is not None and self.scan != "screened":
            raise spec_error("invalid_scan_option", f"screen_top only applies to scan \"screened\" (scan is {self.scan!r})",
                             "remove `screen_top`, or use \"scan\": \"screened\"", field="screen_top")
        if self.estimator is not None and self.scan not in ESTIMATED_SCANS:
            raise spec_error("invalid_scan_option", f"estimator only applies to an estimating scan (scan is {self.scan!r})",
                             "remove `estimator`, or use \"scan\": \"attribution\" or \"screened\"", field="estimator")
        try:  # zoo models' families are known now; the dataset's kind and other models' families later
            check_metric(self.metric, families={r: ZOO[ref.id[4:]].family for r, ref in
                                                (("teacher", self.teacher), ("student", self.student))
                                                if ref.kind == "zoo"})
        except MetricError as e:
            raise spec_error(e.code, e.message, e.fix, field=e.field) from None
        if not task.needs_dataset and self.dataset:
            raise spec_error("invalid_dataset", "only the custom task takes a dataset",
                             "remove `dataset`, or use \"task\": \"custom\"", field="dataset")
        return self

    def resolve(self, model_types: Mapping[str, str | None] | None = None) -> "ComparisonSpec":
        """Expand the preset: every field explicit, task options filled with their defaults.

        ``model_types``: role -> the models' ``config.json`` ``model_type`` where known
        (:func:`circuitdiff.catalogue.model_type_of`). The ``paper`` preset's ablation depends on the
        pair's layout (:func:`preset_ablation`); while a type is unknown it stays ``None`` (pending),
        and the engine fills it once the models are loaded. Resolving a resolved spec changes nothing.
        """
        task = TASKS[self.task]
        if self.preset == "paper":
            p = task.paper
            preset = {"mlp_similarity": p.mlp_similarity,
                      "head_threshold": PAPER_HEAD_THRESHOLD if p.thresholds else 0.0,
                      "mlp_threshold": PAPER_MLP_THRESHOLD if p.thresholds else 0.0,
                      "duplicate_unmatched": p.duplicate_heads, "bootstrap": 10_000}
        else:
            preset = {"mlp_similarity": "cka", "head_threshold": PAPER_HEAD_THRESHOLD,
                      "mlp_threshold": PAPER_MLP_THRESHOLD, "duplicate_unmatched": False, "bootstrap": 1000}
        chosen = {k: getattr(self, k) for k in preset}
        return self.model_copy(
            update={
                **{k: preset[k] if v is None else v for k, v in chosen.items()},
                "ablation": self.ablation or preset_ablation(self.preset, self.task, model_types),
                "task_options": {**task.defaults(), **self.task_options},
                "matching": self.matching or "student_to_teacher",
                "bos": self.bos or "prepend",
                "screen_top": (self.screen_top or SCREEN_TOP) if self.scan == "screened" else None,
                "estimator": (self.estimator or DEFAULT_ESTIMATOR) if self.scan in ESTIMATED_SCANS else None,
            }
        )

    def resolve_known(self) -> "ComparisonSpec":
        """:meth:`resolve` with the model types that can be known without loading (:func:`model_type_of`)."""
        return self.resolve({r: model_type_of(getattr(self, r)) for r in ROLES})

    @property
    def resolved(self) -> bool:
        """Whether every preset-dependent field is explicit (the ablation may wait for the models' layout)."""
        return self.ablation is not None and self.matching is not None and self.bootstrap is not None

    def canonical_json(self) -> str:
        """Stable serialisation of the resolved spec (sorted keys, no whitespace) for content keys.
        Resolve with the models' types first where they are known: a pending ablation keys as null."""
        data = self.resolve().model_dump(mode="json")
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    def spec_digest(self) -> str:
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()


def _all_llama(model_types: Mapping[str, str | None] | None) -> bool | None:
    """Whether both models have the Llama layout; None while either type is unknown."""
    types = [None if model_types is None else model_types.get(r) for r in ROLES]
    if any(t is None for t in types):
        return None
    return all(t in LLAMA_MODEL_TYPES for t in types)


def preset_ablation(preset: str, task: str, model_types: Mapping[str, str | None] | None) -> Ablation | None:
    """The ablation a preset runs: ``default`` mean ablation everywhere; ``paper`` the task notebook's,
    or the authors' Llama notebook's (catalogue.LLAMA_PAPER_ABLATION) for a pair of Llama-layout
    models. None: the paper preset on a pair whose layout is not known yet."""
    if preset != "paper":
        return "mean"
    llama = _all_llama(model_types)
    if llama is None:
        return None
    return LLAMA_PAPER_ABLATION if llama else TASKS[task].paper.ablation


def ablation_protocol(spec: ComparisonSpec, model_types: Mapping[str, str | None]) -> str:
    """What the resolved spec's ablation follows, for ``scan.ablation_protocol``: the preset's protocol
    where the spec runs the preset's ablation, else the ablation the spec names. A function of the
    resolved spec and the pair only, so a result's spec re-runs with the same text."""
    bos = " over every real token, BOS included" if spec.ablation == "token_mean" else ""
    if spec.ablation != preset_ablation(spec.preset, spec.task, model_types):
        return f"{spec.ablation} ablation{bos} (asked in the spec)"
    if spec.preset != "paper":
        return f"{spec.ablation} ablation{bos} ({spec.preset} preset)"
    return LLAMA_PAPER_PROTOCOL if _all_llama(model_types) else TASKS[spec.task].paper.describe()
