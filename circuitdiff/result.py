"""The comparison result file (``result.json``). Importable without torch.

Results are data first: the service, the report and the scheduler all read this one structure.
Component ids follow docs/design.md: ``L{layer}H{head}`` for a head, ``L{layer}MLP`` for an MLP
(circuitdiff.vocabulary). Units are the job's metric's (``metric``, defined in circuitdiff.metrics;
the paper's logit difference is in logits): ``influence`` = |mean over prompts of m_ablated - mean
over prompts of m_clean| (the paper's: the difference of the means, not the mean of per-prompt
absolute differences); ``retained_pct``
the metric's ratio (100 * LD_ablated / LD_clean for the logit difference), null when the model does
not perform the task or the metric has none (kl, loss); drops in percentage points of the clean value.

Schema versions (``schema_version``; the report reads every one, circuitdiff.report.load):
1. the first release;
2. robustness carries every statistic the engine computes (``worst5_mean``, ``gini`` per model,
   ``slope_mean_ci95``), and every interval comes from the spec's ``bootstrap`` resamples.
3. the score is calibrated against chance (``alignment.chance``, ``alignment.above_chance``); the
   alignment names the protocol it follows; every match has a bootstrap ``confidence``; components
   in no pair are listed (``unpaired``); ``task.items`` lists every accepted item, so the numbers can
   be recomputed from the result alone.
4. both models' circuits and the circuit diff (``circuits``).
5. the job's metric (``spec.metric``; ``metric`` carries its definition, units and reduction):
   ``performance`` reports the clean metric (``metric``, ``value``, ``value_std``, ``value_ci95``;
   ``logit_diff`` only where the task has answers, ``accuracy`` and ``performs_task`` null for a
   plain-text dataset or a metric without one); each influence entry has ``value``; ``task`` says
   whether the dataset is answers or plain text and where texts were cut (``max_tokens``).
6. each model records its dtype and the memory plan made before loading (``models[role].dtype``,
   ``models[role].placement``); ``scan.microbatch_rows`` and ``scan.ablation_protocol``.
7. ``scan.precision`` (the dtype the scans ran in and its accuracy contract) and the screened scan:
   each influence entry says whether it is ``exact``; ``scan.agreement`` holds the screen's measured error.
8. the verdict (``alignment.verdict``, ``verdict_reason``) with the depth reference and the
   controls' scores it is read against (``alignment.depth_reference``, ``alignment.controls``);
   near-ties: each match's ``runner_up``, ``margin`` with ``margin_ci95`` and ``ambiguous``, and
   ``alignment.n_ambiguous``; ``ci_method`` and per-influence ``influence_ci95``; circuits'
   ``inclusion`` over resamples, ``discarded_unstable`` / ``new_unstable`` and ``faithfulness`` curves; ``robustness.delta_mean_drop`` is the point difference (the paper's
   bootstrap mean moves to ``delta_mean_drop_bootstrap_mean``).
9. with ``circuits.resamples``, a model's circuit (``components``, its counts, ``kept_pct``,
   ``removed_pct``, and the transfer and diff built on it) is the components found in at least
   ``min_inclusion`` of the resamples' circuits; the one search on all prompts stays as
   ``search_components``; ``scan.agreement[model].by_kind`` (heads and MLPs apart);
   a rejected custom-dataset item carries its ``line`` in the file (``task.rejected[].line``,
   1-based, numbered as an upload numbers its rejected lines).
10. ``scan.estimator``: the estimator an attribution or screened scan ran (``gradient`` or ``relp``;
    null for the exact and naive scans), also in each model's ``scan.agreement``.
11. a screened scan's ``scan.agreement[model]`` names its ``error_model`` (``perturbation``: each
    head's margin in proportion to how far its ablation moves the residual stream; ``uniform``: one
    margin for every head, the only model before 11) and ``error_per_scale`` (the measured error per
    unit of that scale); ``error_margin`` is the widest margin given to a head left estimated.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .metrics import metric_info
from .vocabulary import (
    SCHEMA_VERSION, ESTIMATED_SCANS, AdapterName, Estimator, ComponentKind, Family, Matching, Metric, ModelKind, Role, ScanMethod, TaskForm,
    TokenAlignment, Verdict,
)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelInfo(_Model):
    id: str
    kind: ModelKind
    revision: str | None = None
    sha256: str | None = Field(None, description="sha256 over the weight files (zoo, local, random)")
    architecture: str
    family: Family
    adapter: AdapterName
    n_layers: int
    n_heads: int
    d_model: int
    n_params: int
    vocab_size: int
    dtype: str | None = Field(None, description="the weights' dtype as loaded (spec dtype auto resolved); schema >= 6")
    placement: dict[str, Any] | None = Field(
        None, description="the memory plan made before loading: dtype, n_params, weight_bytes, available_bytes per "
        "device, devices the weights went to, layers_per_device; activation_bytes and needed_bytes (= weights + "
        "activations) for this job's prompts at their real token length (schema >= 6)")


class TaskItem(_Model):
    """One accepted item, as the engine ran it (re-run them with ``--task custom --dataset``): a prompt with
    its answer and distractor, or a plain text (``text``, ``corrupted_text``; schema >= 5)."""

    prompt: str | None = None
    answer: str | None = None
    distractor: str | None = None
    text: str | None = Field(None, description="a plain-text item: the text as run (after the cut to max_tokens)")
    corrupted_text: str | None = None
    corrupted_prompt: str | None = Field(None, description="null: none given (another prompt of the same "
                                         "token length stood in for mean/resample ablation)")
    masked_prompt: str | None = Field(None, description="the cloze form a masked LM read")
    corrupted_masked_prompt: str | None = None


class RejectedPrompt(_Model):
    index: int
    prompt: str
    reason: str
    line: int | None = Field(None, description="a custom dataset's item: its line in the file, 1-based, as an "
                                               "upload numbers its rejected lines (schema >= 9)")


class TaskInfo(_Model):
    name: str
    options: dict[str, Any]
    form: TaskForm = Field(description="causal: next-token; masked: [MASK] cloze; mixed: each model its own")
    n_prompts: int
    n_rejected: int
    dataset_sha256: str
    rejected: list[RejectedPrompt]
    items: list[TaskItem] = Field(default_factory=list, description="every accepted item, in order (schema >= 3)")
    example_prompt: str
    kind: Literal["answers", "text"] = Field(
        "answers", description="answers: prompts with answer and distractor; text: plain texts (metrics kl, loss)")
    max_tokens: int | None = Field(None, description="plain texts: cut to at most this many tokens (BOS included)")
    n_truncated: int = Field(0, description="plain texts that were longer than max_tokens and were cut")
    token_alignment: TokenAlignment = Field(
        "shared_vocabulary",
        description="shared_vocabulary: token-level patterns (same tokenizer and form); word_pooled: tokens "
        "mapped to shared words by character offsets, attention pooled per word (sum over key tokens, mean "
        "over query tokens) plus the end-query row; word_end_row: only the word-aligned end-query row",
    )


class MetricInfo(_Model):
    """The job's metric as the numbers were computed (circuitdiff.metrics)."""

    name: Metric
    label: str
    short: str
    units: str
    definition: str
    reads: str
    reduction: str
    needs_answer: bool
    retained: str | None
    performs_task: str | None


class Performance(_Model):
    metric: Metric = "logit_diff"
    value: float = Field(description="mean clean metric over prompts (0 for kl)")
    value_std: float
    value_ci95: list[float] | None = Field(None, min_length=2, max_length=2,
                                           description="95% t-interval of the mean over prompts")
    logit_diff: float | None = Field(description="mean clean logit difference; null for a plain-text dataset")
    logit_diff_std: float | None
    accuracy: float | None = Field(description="share of prompts whose top-1 prediction is the answer; null "
                                   "for a plain-text dataset")
    performs_task: bool | None = Field(
        description="answer metrics: mean clean logit difference > 0 and the lower end of its 95% t-interval over "
        "prompts > 0 (circuitdiff.analysis.performance); null for kl and loss")


class ComponentInfluence(_Model):
    value: float | None = Field(None, description="mean metric with this component ablated (schema >= 5)")
    logit_diff: float | None = Field(None, description="mean LD with this component ablated (metric logit_diff)")
    delta: float = Field(description="m_ablated - m_clean (signed)")
    influence: float = Field(description="|delta| (for kl: the mean KL)")
    retained_pct: float | None = Field(description="the metric's retained % (circuitdiff.metrics); null when "
                                       "undefined (LD_clean <= 0, kl, loss)")
    exact: bool | None = Field(default=None, description="true: an exact value (naive, exact, or re-scanned by a "
                               "screened scan); false: an estimate (attribution); null in results before schema 7")
    influence_ci95: list[float] | None = Field(
        default=None, min_length=2, max_length=2,
        description="percentile interval of the influence over bootstrap resamples of the prompts (schema >= 8; "
        "null without resamples)")


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
    kind: ComponentKind
    similarity: float
    matched: bool = Field(description="similarity >= the threshold for this component type")
    student_influence: float
    teacher_influence: float
    duplicated: bool = Field(False, description="a below-threshold pair counted a second time (paper preset)")
    confidence: float | None = Field(
        None, description="share of bootstrap resamples of the prompts in which this pair's source component "
        "chose the same partner (schema >= 3; null without resamples)")
    runner_up: str | None = Field(
        None, description="the source component's best other candidate of the same kind (schema >= 8)")
    margin: float | None = Field(
        None, description="similarity to the partner minus similarity to the runner-up, in the similarity the "
        "matching used (raw eigenvector similarity for the paper's MLPs) (schema >= 8)")
    margin_ci95: list[float] | None = Field(
        None, min_length=2, max_length=2,
        description="percentile interval of the margin over the confidence's resamples of the prompts (schema >= 8)")
    ambiguous: bool | None = Field(
        None, description="a near-tie: the margin's interval includes 0, or the margin is below "
        "circuitdiff.analysis.confidence.MIN_MARGIN (0.02) (schema >= 8; null without resamples)")


class ChanceCalibration(_Model):
    """The score's distribution when the student/teacher correspondence is broken (circuitdiff.analysis.chance)."""

    method: str
    n: int = Field(description="permutation draws")
    mean: float
    ci95: list[float] = Field(min_length=2, max_length=2)
    p_value: float = Field(description="(1 + #{null >= observed}) / (n + 1)")


class Reference(_Model):
    """A score the alignment score is read against (circuitdiff.analysis.verdict)."""

    score: float
    ci95: list[float] | None = Field(None, min_length=2, max_length=2)
    method: str


class ControlScore(_Model):
    """One control student (``spec.controls``) compared with the same teacher under the same spec and data."""

    model: str = Field(description="the control's model id")
    score: float | None
    ci95: list[float] | None = Field(None, min_length=2, max_length=2)
    chance_mean: float | None = None
    above_chance: bool | None = None
    performs_task: bool | None = Field(None, description="a control that does not perform the task is reported "
                                       "but does not enter the verdict")


class Alignment(_Model):
    score: float | None
    ci95: list[float] | None = Field(None, min_length=2, max_length=2)
    n_pairs: int
    mean_similarity: float
    direction: Matching
    chance: ChanceCalibration | None = Field(None, description="the chance null (schema >= 3)")
    above_chance: bool | None = Field(
        None, description="score above the null's 95% upper end and both models perform the task (schema >= 3)")
    protocol: str | None = Field(None, description="which authors' notebook the paper preset follows, or the "
                                 "default preset's measures (schema >= 3)")
    confidence_resamples: int | None = Field(None, description="bootstrap resamples behind matches[].confidence")
    n_ambiguous: int | None = Field(None, description="matches that are near-ties (matches[].ambiguous) (schema >= 8)")
    depth_reference: Reference | None = Field(
        None, description="the score with each similarity replaced by what the student component's relative depth "
        "predicts (schema >= 8)")
    controls: list[ControlScore] = Field(default_factory=list, description="spec.controls' scores (schema >= 8)")
    verdict: Verdict | None = Field(
        None, description="what the score means, one of a closed set (circuitdiff.analysis.verdict.VERDICTS; "
        "schema >= 8; null for older results)")
    verdict_reason: str | None = Field(None, description="the verdict in a sentence, with the numbers behind it")
    ci_method: str | None = Field(None, description="what ci95 (and depth_reference.ci95) resample (schema >= 8)")


class ModelRobustness(_Model):
    n_components: int
    mean_drop: float
    mean_drop_ci95: list[float] | None = Field(
        description="percentile bootstrap over the model's components (not over prompts): how much the mean "
                    "depends on which components there are")
    median_drop: float
    max_drop: float
    severity: float
    worst5_mean: float | None = Field(None, description="mean of the worst 5% of drops (schema >= 2)")
    gini: float | None = Field(None, description="Gini coefficient of the drops (schema >= 2)")


class Robustness(_Model):
    teacher: ModelRobustness | None
    student: ModelRobustness | None
    compression_ratio: float
    delta_mean_drop: float | None = Field(
        description="student mean drop - teacher mean drop, the point difference (schema >= 8; before, the mean of "
                    "the bootstrap differences)")
    delta_mean_drop_ci95: list[float] | None = Field(
        description="percentile bootstrap over components, each model's drawn separately")
    delta_mean_drop_bootstrap_mean: float | None = Field(
        None, description="the paper's figure: the mean of the bootstrap differences (schema >= 8)")
    slope_mean: float | None = Field(description="delta mean drop / compression ratio (pp per unit C)")
    slope_mean_ci95: list[float] | None = Field(None, description="the slope's interval, from delta's (schema >= 2)")
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


class ModelCircuit(_Model):
    """One model's circuit found by iterative node pruning (docs/method.md §Method 7)."""

    inclusion: dict[str, float] | None = Field(
        None, description="each component's share of the circuits found on bootstrap resamples of the prompts "
        "(circuits.resamples; schema >= 8; null when not resampled)")

    min_inclusion: float | None = Field(
        None, description="with resamples, the circuit is the components whose inclusion is at least this share "
        "(0.5: a majority of the resamples' circuits), scored on all prompts; null: the circuit is the one "
        "search on all prompts (schema >= 9)")
    search_components: list[str] | None = Field(
        None, description="the circuit one search on all prompts found (what ``components`` held before "
        "schema 9; equal to it without resamples; null in sweep rows, whose ``components`` are such searches)")

    threshold: float = Field(description="T: a component is pruned if performance stays within T points")
    components: list[str] = Field(description="canonical ids, canonical order; the components above "
                                  "``min_inclusion`` when resampled, else the one search's circuit")
    n_heads: int
    n_mlps: int
    kept_pct: float = Field(description="100 * LD(only the circuit kept, everything else ablated) / LD_clean "
                            "(the authors' completeness)")
    removed_pct: float = Field(description="100 * LD(only the circuit ablated) / LD_clean (the authors' "
                               "faithfulness)")
    trace_length: int = Field(description="trial removals the search made")
    n_passes: int
    n_evaluations: int = Field(description="distinct ablated runs the search needed (memoised)")


class SweepRow(ModelCircuit):
    jaccard: float = Field(description="Jaccard overlap with the one search's circuit at the baseline threshold "
                           "(``search_components``; each sweep row is one search on all prompts)")


class NullControl(_Model):
    method: str = Field(description="random: random components of the same head/MLP counts; depth: each "
                        "teacher-circuit component sent to the student layer at the same relative depth")
    n: int
    mean: float = Field(description="mean kept_pct of the null circuits")
    ci95: list[float] = Field(min_length=2, max_length=2)
    p_value: float = Field(description="(1 + #{null kept_pct >= transfer kept_pct}) / (n + 1)")


class CircuitTransfer(_Model):
    kept_pct: float = Field(description="kept_pct of the mapped teacher circuit run on the student")
    n_heads: int
    n_mlps: int
    nulls: dict[str, NullControl]


class CircuitDiffSection(_Model):
    mapped: list[str] = Field(description="the teacher circuit mapped through the matching onto student ids")
    jaccard: float = Field(description="Jaccard overlap of the mapped teacher circuit and the student circuit")
    kept: list[str] = Field(description="teacher-circuit components whose matched student component is in "
                            "the student circuit")
    discarded: list[str] = Field(description="teacher-circuit components with no counterpart in the student circuit")
    new: list[str] = Field(description="student-circuit components matched to no teacher-circuit component")
    discarded_unstable: list[str] = Field(
        default_factory=list, description="discarded by the full-sample circuits but not stably so over the resamples "
        "(teacher in < 80% of them, or a student partner in > 20%) (schema >= 8)")
    new_unstable: list[str] = Field(
        default_factory=list, description="new by the full-sample circuits but not stably so over the resamples "
        "(schema >= 8)")
    transfer: CircuitTransfer


class Faithfulness(_Model):
    """A model's faithfulness curve (circuitdiff.analysis.pruning.FaithfulnessCurve; schema >= 8):
    its k most influential components kept, everything else ablated, for growing k."""

    sizes: list[int] = Field(description="circuit sizes k (0 = everything ablated, N = the full model)")
    kept_pct: list[float] = Field(description="100 · m(top-k) / m(full model) at each size")
    faithfulness: list[float] = Field(description="(m(top-k) − m(∅)) / (m(full) − m(∅)), MIB's normalisation")
    cpr: float = Field(description="area under the faithfulness over the size fraction k/N (MIB's CPR; higher: "
                       "fewer components carry the task)")
    cmd: float = Field(description="area under |1 − faithfulness| (MIB's CMD; lower: closer to the full model)")


class Circuits(_Model):
    """Both models' circuits and what distillation did to the teacher's (schema >= 4)."""

    threshold: float
    ablation: str = Field(description="how components outside a circuit are ablated (the spec's ablation)")
    method: dict[Role, Literal["exact", "naive"]] = Field(
        description="exact: the exact scan's machinery; naive: one adapter forward per evaluation (reference)")
    teacher: ModelCircuit | None
    student: ModelCircuit | None
    sweep: dict[Role, list[SweepRow]] = Field(default_factory=dict)
    diff: CircuitDiffSection | None
    search_s: dict[Role, float] = Field(description="wall time of each model's search, sweep included")
    faithfulness: dict[Role, Faithfulness] = Field(
        default_factory=dict, description="each model's faithfulness curve by influence order, with MIB's CPR and "
        "CMD, so circuit quality compares with the field's benchmark (schema >= 8)")
    note: str | None = None


class ScanInfo(_Model):
    method: ScanMethod
    approximate: bool
    agreement: dict[str, Any] | None = Field(
        default=None, description="per model: the estimate's agreement with the exact scan (attribution with a "
        "check: on sampled components; screened: on the components it re-scanned, with the screen's error margin)")
    cache: dict[str, str] = Field(default_factory=dict, description="per model: hit | miss | disabled")
    precision: dict[str, Any] | None = Field(
        default=None, description="the scan's dtype and what it promises against float32 (schema >= 7; "
        "circuitdiff.vocabulary.PRECISION_CONTRACTS)")
    microbatch_rows: dict[str, int] = Field(
        default_factory=dict, description="per model: the exact scan's micro-batch size (sequences through the "
        "blocks above an ablated layer at once) that ran, sized from free memory and halved on out-of-memory "
        "(schema >= 6)")
    ablation_protocol: str | None = Field(
        None, description="what the ablation replaced activations with, and whose protocol it follows (schema >= 6)")
    estimator: Estimator | None = Field(
        None, description="attribution / screened: the estimator of the estimated influences — gradient "
        "(gradient x activation) or relp (RelP's relevance rules); null when every value is computed (schema >= 10)")


class ComparisonResult(_Model):
    schema_version: Literal[11] = SCHEMA_VERSION
    created_at: str
    spec: dict[str, Any] = Field(description="the fully resolved spec (preset expanded)")
    metric: MetricInfo = Field(default_factory=lambda: MetricInfo(**metric_info("logit_diff")),
                               description="the metric influences are measured on (schema >= 5)")
    engine: dict[str, str]
    models: dict[Role, ModelInfo]
    task: TaskInfo
    performance: dict[Role, Performance]
    influence: dict[Role, dict[str, ComponentInfluence]]
    similarity: Similarity
    matches: list[Match]
    alignment: Alignment
    robustness: Robustness
    unpaired: dict[Role, list[str]] = Field(default_factory=dict, description="components in no pair (schema >= 3)")
    attention: list[AttentionView] = Field(default_factory=list)
    circuits: Circuits | None = Field(None, description="circuits and the circuit diff (schema >= 4; null = "
                                      "not asked for)")
    scan: ScanInfo
    timings: dict[str, float]
    warnings: list[str] = Field(default_factory=list)


def result_json_schema() -> dict:
    return ComparisonResult.model_json_schema()


def upgrade(data: dict) -> dict:
    """A result dict of any released schema version, brought to the current one (a new dict).

    Each step fills what the newer version added with "not computed" values; numbers are never
    invented. Raises ValueError for a version this code does not know.
    """
    version = data.get("schema_version")
    if version not in range(1, SCHEMA_VERSION + 1):
        raise ValueError(f"result schema_version {version!r} is not supported (this code reads 1 to {SCHEMA_VERSION})")
    out = dict(data)
    # 2 added worst5_mean / gini per model and slope_mean_ci95; 3 added the chance calibration, match
    # confidences, unpaired components and task items; 4 added circuits; 5 the metric; 6 added per-model dtype and
    # memory placement, the scan's micro-batch sizes and ablation protocol; 7 per-influence ``exact`` and
    # ``scan.precision``; 8 match runner-ups and margins; 9 the circuit over resamples (``search_components``
    # keeps the one search) and the file line of a rejected custom-dataset item (``task.rejected[].line``); 10 the
    # scan's estimator; 11 the screened scan's error model.
    # All optional: a missing value reads "not computed".
    if version < 5:  # 5: the job's metric; earlier results all measured the logit difference
        out["metric"] = metric_info("logit_diff")
        out["performance"] = {r: {"metric": "logit_diff", "value": p["logit_diff"], "value_std": p["logit_diff_std"],
                                  **p} for r, p in data.get("performance", {}).items()}
        out["influence"] = {r: {c: {"value": v.get("logit_diff"), **v} for c, v in comps.items()}
                            for r, comps in data.get("influence", {}).items()}
    rb = data.get("robustness")
    if version < 8 and isinstance(rb, dict) and rb.get("delta_mean_drop") is not None:
        # before 8, delta_mean_drop held the mean of the bootstrap differences; the point difference
        # is exactly the two mean drops' difference, which every such result holds
        t, s = rb.get("teacher") or {}, rb.get("student") or {}
        point = s["mean_drop"] - t["mean_drop"] if "mean_drop" in s and "mean_drop" in t else None
        out["robustness"] = {**rb, "delta_mean_drop_bootstrap_mean": rb["delta_mean_drop"], "delta_mean_drop": point}
    circ = data.get("circuits")
    if version < 9 and isinstance(circ, dict):  # before 9 the circuit was always the one full-sample search
        out["circuits"] = {**circ, **{r: {**circ[r], "search_components": circ[r].get("components")}
                                      for r in ("teacher", "student") if isinstance(circ.get(r), dict)}}
    scan = data.get("scan")
    if version < 10 and isinstance(scan, dict):  # before 10 every estimate was gradient x activation
        out["scan"] = scan = {**scan, "estimator": "gradient" if scan.get("method") in ESTIMATED_SCANS else None}
    if version < 11 and isinstance(scan, dict) and scan.get("method") == "screened" and isinstance(scan.get("agreement"), dict):
        # before 11 one margin, safety x the largest error on the re-scanned heads, served every head
        out["scan"] = {**scan, "agreement": {
            m: {**a, "error_model": "uniform", "error_per_scale": a.get("max_abs_error")} if isinstance(a, dict) else a
            for m, a in scan["agreement"].items()}}
    out["schema_version"] = SCHEMA_VERSION
    return out
