"""The shared vocabulary of circuitdiff: every name, choice and id format the other modules agree on.

Torch-free and dependency-free (stdlib only), so the spec, the result schema, the engine, the
report, the CLI and the HTTP service all import their literals from here and nowhere else (one
source for each name; the model for this module is auto-circuit's ``types.py``).

Contents, in order: the result schema version and shared limits; the literal choices of a
comparison spec; the names of model and task properties; component addresses (docs/design.md:
``L{layer}H{head}`` for an attention head, ``L{layer}MLP`` for an MLP) with their parser and the
two orders components are listed in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, get_args

from .errors import ComponentIdError

__all__ = [
    "SCHEMA_VERSION", "MAX_PROMPTS", "N_ATTENTION_VIEWS", "CIRCUIT_THRESHOLD", "CIRCUIT_SWEEP", "PAPER_HEAD_THRESHOLD", "PAPER_MLP_THRESHOLD",
    "Role", "ROLES", "Preset", "Verdict", "Ablation", "Metric", "MAX_TEXT_TOKENS", "Matching", "MlpSimilarity", "ScanMethod", "Estimator", "ESTIMATED_SCANS", "DEFAULT_ESTIMATOR", "SCREEN_TOP", "Bos", "Device", "Dtype", "PRECISION_CONTRACTS",
    "BF16_ABOVE_PARAMS", "MEMORY_BUDGET_ENV",
    "ModelKind", "Family", "ModelType", "AdapterName", "TaskForm",
    "TokenAlignment", "ComponentKind", "choices",
    "ComponentIdError", "Component", "head_id", "mlp_id", "parse_component", "is_component_id", "head_ids",
    "mlp_ids", "component_ids", "canonical_key", "layer_key",
]

# --------------------------------------------------------------------------- versions and limits
SCHEMA_VERSION = 11
"""Version of ``result.json``. Bumped with every change of the result's structure; the report still
reads every older version (``circuitdiff.report.load`` upgrades them)."""

MAX_PROMPTS = 5000
"""Most prompts one comparison runs (``n_prompts``), and so the most lines a custom dataset may have:
a dataset the engine cannot run is refused when it is uploaded, not when a worker reads it."""

N_ATTENTION_VIEWS = 4

CIRCUIT_THRESHOLD = 20.0
"""T of the circuit search (docs/method.md §Method 7): a component leaves the circuit if performance stays
within T points (% of the full model's logit difference) without it; the authors' case studies use 20."""

CIRCUIT_SWEEP: tuple[float, ...] = (10.0, 15.0, 20.0, 25.0, 30.0)
"""The authors' threshold sweep (``case_study/threshold_sweep.py``, docs/authors-code.md §3.2), in points."""
"""Matched head pairs whose mean attention patterns a result carries for side-by-side views."""

PAPER_HEAD_THRESHOLD = 0.95
"""The authors' ``simple_threshold`` for head pairs: similarity >= this counts as matched."""

PAPER_MLP_THRESHOLD = 0.12
"""The authors' threshold for MLP pairs (applied to rescaled similarities in their seq/QA runs)."""

MAX_TEXT_TOKENS = 128
"""Plain-text dataset lines (``{"text": ...}``) are cut to at most this many tokens (BOS included), or to
the model's context if shorter; the cut is reported in the result's ``task``."""

# --------------------------------------------------------------------------- spec choices
Role = Literal["teacher", "student"]
"""The two sides of a comparison."""
ROLES: tuple[Role, ...] = ("teacher", "student")

Preset = Literal["default", "paper"]
"""``paper``: the authors' choices, reproduced exactly; ``default``: the same method with their bugs
fixed and confidence intervals added (circuitdiff.spec)."""

Ablation = Literal["zero", "mean", "resample", "token_mean"]
"""What an ablated activation is replaced with: 0, its per-position mean over the corrupted prompts,
its value on the prompt's own corrupted prompt, or ``token_mean``: one mean vector per head / MLP
over every real token of the corrupted set, at every position (the authors' ``llama_influence.ipynb``,
docs/authors-code.md §3.1 D) (circuitdiff.scan.ablation)."""

Metric = Literal["logit_diff", "answer_prob", "answer_logprob", "kl", "loss"]
"""What a component's influence is measured on. One record per name (definition, units, reduction,
readout, what it needs): circuitdiff.metrics.METRICS."""

Matching = Literal["student_to_teacher", "teacher_to_student", "one_to_one"]
# What an alignment score means, weakest first (descriptions: circuitdiff.analysis.verdict.VERDICTS)
Verdict = Literal["not_scored", "not_performing", "not_above_chance", "same_layout", "beyond_depth_reference",
                  "kept_teacher_components"]
"""How components are paired (circuitdiff.analysis.matching): argmax, one pair per student
component (the paper's TL notebooks) or per teacher component (the authors' "biased to teacher"
variant); or ``one_to_one``, the optimal assignment (no component paired twice)."""

MlpSimilarity = Literal["cka", "eigen", "eigen_raw"]
"""MLP similarity (circuitdiff.analysis.similarity): ``cka`` linear CKA (the default preset);
``eigen`` the authors' top-3 eigenvector similarity rescaled to the head-similarity distribution
(their sequence and QA notebooks); ``eigen_raw`` the same without rescaling (their IOI notebook)."""

ScanMethod = Literal["exact", "attribution", "naive", "screened"]
"""How influences are computed: ``naive`` reruns the model once per component (the reference),
``exact`` computes the same numbers reusing the clean pass, ``attribution`` is a first-order
estimate (approximate), ``screened`` estimates every component by attribution and computes the
exact value of the top ``screen_top`` and of every component that could join them within the
estimate's measured error (circuitdiff.scan.screened); each influence says whether it is exact."""

Estimator = Literal["gradient", "relp"]
"""How ``attribution`` (and the screen of ``screened``) differentiates the model
(circuitdiff.scan.attribution.ESTIMATOR_RULES): ``gradient`` plain gradient x activation (AtP);
``relp`` the relevance-propagation rules of RelP through norms, activations, attention patterns and
gated products (circuitdiff.models.functional.GRADIENT_RULES). docs/method.md §Attribution estimators
gives their measured agreement with the exact scan per component kind."""

ESTIMATED_SCANS = ("attribution", "screened")
"""The scan methods that estimate influences (and so take an ``estimator``)."""

DEFAULT_ESTIMATOR = "gradient"
"""The spec's ``estimator`` default for ``attribution`` and ``screened`` scans (the better screen on the
GPT-2-small-shaped pair, docs/method.md)."""

SCREEN_TOP = 20
"""``scan: "screened"``: how many of the most influential components get their exact value at least
(the spec's ``screen_top`` default)."""

Bos = Literal["prepend", "none"]
"""BOS policy for causal models, one for every pass of a job (docs/authors-code.md §7 pitfall 1)."""

Device = Literal["auto", "cpu", "cuda"]
Dtype = Literal["auto", "float32", "float16", "bfloat16"]
"""Weights' dtype; ``auto``: float32 up to :data:`BF16_ABOVE_PARAMS` parameters, bfloat16 above
(per model, decided from its config before loading: circuitdiff.models.placement)."""

BF16_ABOVE_PARAMS = 1_000_000_000
"""``dtype: "auto"`` loads models with more parameters than this in bfloat16 (1B: every pair the
paper ran in float32 is below, its Llama-3.1-8B -> Minitron-4B pair, run in bf16, is above)."""

MEMORY_BUDGET_ENV = "CIRCUITDIFF_MEMORY_BUDGET"
"""Setting: most bytes per device a job may plan to use (``24GiB``); unset = what the device has free."""

PRECISION_CONTRACTS: dict[str, dict] = {
    "float32": {"reference": True},
    "bfloat16": {"max_abs_influence_diff_rel": 0.01, "spearman_min": 0.99, "spearman_over": 0.01,
                 "top_k_identical": 10, "top_k_ties_within": 2.0, "measured_for": "exact"},
}
"""What a scan in each dtype promises against the same scan in float32 (``result.scan.precision``),
measured on the bundled pairs by tests/engine/test_precision.py. ``max_abs_influence_diff_rel``: the largest
|influence − influence_fp32| over every component, divided by the clean LD scale (mean |LD_clean| in
float32); ``spearman_min``: the rank correlation over the components whose float32 influence exceeds
``spearman_over`` of the largest; ``top_k_identical``: the k most influential components are the same
set, except that components whose float32 influences lie within ``top_k_ties_within`` x the largest
difference of the k-th largest may trade places (a tie at this precision). Measured (exact scan,
zoo GPT pair, IOI and sequence, 16 prompts): largest difference 2.9e-3 of the LD scale, Spearman
1.0000, top-10 identical but for one tie (L0H0 / L1H2 on the teacher, IOI); the bounds leave ~3x
headroom (``measured_for``: the scan the figures come from; a screened scan's exact values come
from it). Logit differences and influences are accumulated in float32 whatever the model's dtype.
A dtype absent here (float16) is not characterised."""

# --------------------------------------------------------------------------- models and tasks
ModelKind = Literal["zoo", "hub", "local"]
"""Where a model comes from: ``zoo:NAME`` (bundled), a hub id, or a local checkpoint directory."""

Family = Literal["causal", "masked"]
"""A model's family: ``causal`` predicts the next token (GPT-2, Llama); ``masked`` fills a
``[MASK]`` (BERT, DistilBERT). It decides the task form a model reads."""

ModelType = Literal["gpt2", "llama", "mistral", "qwen2", "bert", "distilbert"]
"""The transformers ``config.model_type`` values circuitdiff has a record of (family, hook layout,
functional view): circuitdiff.architectures.ARCHITECTURES. Other decoders may run through the bridge."""


AdapterName = Literal["bridge", "hooks"]
"""Which adapter ran a model: transformer_lens ``TransformerBridge`` or plain forward hooks."""

TaskForm = Literal["causal", "masked", "mixed"]
"""The form of a task's prompts: next-token, ``[MASK]`` cloze, or each model its own (mixed pairs)."""

TokenAlignment = Literal["shared_vocabulary", "word_offsets", "word_pooled", "word_end_row"]
"""How teacher and student positions correspond: token by token (one tokenisation), or through the
words both inputs share (circuitdiff.tasks.word_alignment)."""

ComponentKind = Literal["head", "mlp"]


def choices(literal) -> tuple[str, ...]:
    """The values of a ``Literal`` alias, e.g. ``choices(Ablation) == ("zero", "mean", "resample")``."""
    return get_args(literal)


# --------------------------------------------------------------------------- component addresses
_HEAD = re.compile(r"^L(\d+)H(\d+)$")
_MLP = re.compile(r"^L(\d+)MLP$")
_MLP_AUTHORS = re.compile(r"^MLP(\d+)$")  # the authors' notebooks' spelling, read by the golden tests


@dataclass(frozen=True)
class Component:
    """A parsed address; ``head`` is None for an MLP."""

    layer: int
    head: int | None = None

    @property
    def kind(self) -> ComponentKind:
        return "mlp" if self.head is None else "head"

    @property
    def id(self) -> str:
        return mlp_id(self.layer) if self.head is None else head_id(self.layer, self.head)

    def __str__(self) -> str:
        return self.id


def head_id(layer: int, head: int) -> str:
    """``head_id(3, 7) == "L3H7"``."""
    if layer < 0 or head < 0:
        raise ComponentIdError(f"layer and head must be >= 0, got layer={layer}, head={head}")
    return f"L{int(layer)}H{int(head)}"


def mlp_id(layer: int) -> str:
    """``mlp_id(3) == "L3MLP"``."""
    if layer < 0:
        raise ComponentIdError(f"layer must be >= 0, got {layer}")
    return f"L{int(layer)}MLP"


def parse_component(cid: str) -> Component:
    """Parse ``L3H7`` / ``L3MLP`` (or the authors' ``MLP3``) into a :class:`Component`."""
    s = cid.strip()
    if m := _HEAD.match(s):
        return Component(int(m[1]), int(m[2]))
    if m := _MLP.match(s) or _MLP_AUTHORS.match(s):
        return Component(int(m[1]))
    raise ComponentIdError(f"not a component id: {cid!r} (expected e.g. 'L3H7' or 'L3MLP')")


def is_component_id(cid: str) -> bool:
    return bool(_HEAD.match(cid) or _MLP.match(cid))


def head_ids(n_layers: int, n_heads: int) -> list[str]:
    """All head ids, row-major: L0H0, L0H1, ..., L{n_layers-1}H{n_heads-1}."""
    return [head_id(layer, h) for layer in range(n_layers) for h in range(n_heads)]


def mlp_ids(n_layers: int) -> list[str]:
    return [mlp_id(layer) for layer in range(n_layers)]


def component_ids(n_layers: int, n_heads: int, *, mlps: bool = True) -> list[str]:
    """The canonical component order: every head row-major, then every MLP by layer."""
    return head_ids(n_layers, n_heads) + (mlp_ids(n_layers) if mlps else [])


def canonical_key(cid: str) -> tuple[int, int, int]:
    """Sort key of the **canonical order**: all heads row-major (layer, then head), then the MLPs by
    layer. Every per-component list of a result is in this order, and the authors' robustness
    bootstrap depends on it (docs/authors-code.md §3.7): resampling with ``rng.choice`` draws indices, so
    the same numbers in another order give another interval."""
    c = parse_component(cid)
    return (0, c.layer, c.head) if c.head is not None else (1, c.layer, 0)


def layer_key(cid: str) -> tuple[int, int]:
    """Sort key of the **layer order** used for display: by layer, the layer's heads in order, then
    its MLP (the order in which the residual stream meets them)."""
    c = parse_component(cid)
    return c.layer, (c.head if c.head is not None else 1 << 30)
