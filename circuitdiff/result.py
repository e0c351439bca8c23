"""The comparison result file (``result.json``, ``schema_version: 1``). Importable without torch.

Results are data first: the service, the report and the scheduler all read this one structure.
Component ids follow DESIGN.md: ``L{layer}H{head}`` for a head, ``L{layer}MLP`` for an MLP.
Units: logit differences in logits; ``influence`` = |LD_ablated - LD_clean| (logit units);
``retained_pct`` = 100 * LD_ablated / LD_clean, null when LD_clean <= 0; drops in percentage
points of the clean logit difference.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .spec import SCHEMA_VERSION


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelInfo(_Model):
    id: str
    kind: Literal["zoo", "hub", "local"]
    revision: str | None = None
    sha256: str | None = Field(None, description="sha256 over the weight files (zoo, local, random)")
    architecture: str
    family: Literal["causal", "masked"]
    adapter: Literal["bridge", "hooks"]
    n_layers: int
    n_heads: int
    d_model: int
    n_params: int
    vocab_size: int


class RejectedPrompt(_Model):
    index: int
    prompt: str
    reason: str


class TaskInfo(_Model):
    name: str
    options: dict[str, Any]
    form: Literal["causal", "masked", "mixed"] = Field(description="causal: next-token; masked: [MASK] cloze")
    n_prompts: int
    n_rejected: int
    dataset_sha256: str
    rejected: list[RejectedPrompt]
    example_prompt: str
    token_alignment: Literal["shared_vocabulary", "word_offsets", "word_pooled", "word_end_row"] = Field(
        "shared_vocabulary",
        description="shared_vocabulary: token-level patterns (same tokenizer and form); word_pooled: tokens "
        "mapped to shared words by character offsets, attention pooled per word (sum over key tokens, mean "
        "over query tokens) plus the end-query row; word_end_row: only the word-aligned end-query row",
    )


class Performance(_Model):
    logit_diff: float
    logit_diff_std: float
    accuracy: float = Field(description="share of prompts whose top-1 prediction is the answer")
    performs_task: bool = Field(description="clean logit difference > 0")


class ComponentInfluence(_Model):
    logit_diff: float = Field(description="mean LD with this component ablated")
    delta: float = Field(description="LD_ablated - LD_clean (signed)")
    influence: float = Field(description="|delta|")
    retained_pct: float | None = Field(description="100 * LD_ablated / LD_clean; null when LD_clean <= 0")


class Matrix(_Model):
    rows: list[str] = Field(description="student component ids")
    cols: list[str] = Field(description="teacher component ids")
    values: list[list[float]]


class Similarity(_Model):
    heads: Matrix
    mlps: Matrix
    head_method: str
    mlp_method: str
    mlps_raw: Matrix | None = Field(None, description="MLP similarity before rescaling (eigen method)")


class Match(_Model):
    student: str
    teacher: str
    kind: Literal["head", "mlp"]
    similarity: float
    matched: bool = Field(description="similarity >= the threshold for this component type")
    student_influence: float
    teacher_influence: float
    duplicated: bool = Field(False, description="a below-threshold pair counted a second time (paper preset)")


class Alignment(_Model):
    score: float | None
    ci95: list[float] | None = Field(None, min_length=2, max_length=2)
    n_pairs: int
    mean_similarity: float
    direction: Literal["student_to_teacher", "teacher_to_student"]


class ModelRobustness(_Model):
    n_components: int
    mean_drop: float
    mean_drop_ci95: list[float] | None
    median_drop: float
    max_drop: float
    severity: float


class Robustness(_Model):
    teacher: ModelRobustness | None
    student: ModelRobustness | None
    compression_ratio: float
    delta_mean_drop: float | None
    delta_mean_drop_ci95: list[float] | None
    slope_mean: float | None = Field(description="delta mean drop / compression ratio (pp per unit C)")
    delta_severity: float | None
    slope_severity: float | None
    note: str | None = None


class AttentionView(_Model):
    """Mean attention pattern (over prompts) of a matched head pair, for side-by-side views."""

    student: str
    teacher: str
    similarity: float
    tokens: list[str]
    student_pattern: list[list[float]]
    teacher_pattern: list[list[float]]


class ScanInfo(_Model):
    method: Literal["exact", "attribution", "naive"]
    approximate: bool
    agreement: dict[str, Any] | None = None
    cache: dict[str, str] = Field(default_factory=dict, description="per model: hit | miss | disabled")


class ComparisonResult(_Model):
    schema_version: Literal[1] = SCHEMA_VERSION
    created_at: str
    spec: dict[str, Any] = Field(description="the fully resolved spec (preset expanded)")
    engine: dict[str, str]
    models: dict[Literal["teacher", "student"], ModelInfo]
    task: TaskInfo
    performance: dict[Literal["teacher", "student"], Performance]
    influence: dict[Literal["teacher", "student"], dict[str, ComponentInfluence]]
    similarity: Similarity
    matches: list[Match]
    alignment: Alignment
    robustness: Robustness
    attention: list[AttentionView] = Field(default_factory=list)
    scan: ScanInfo
    timings: dict[str, float]
    warnings: list[str] = Field(default_factory=list)


def result_json_schema() -> dict:
    return ComparisonResult.model_json_schema()
