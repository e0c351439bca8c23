"""``run_comparison(spec) -> ComparisonResult``: the paper's analysis end to end (docs/method.md §Method).

The single entry point shared by the CLI and the worker. This module is the sequence of stages and
nothing else; each stage's work lives in its own module, and circuitdiff.sections turns what the
stages measured into the result's typed sections. Stages, in order (each timed, each reported
through ``progress(stage, done, total)``):

  load        both models behind the adapter interface (circuitdiff.models)
  task        prompts -> token batches for the pair, rejected prompts reported (circuitdiff.tasks)
  clean       one clean pass per model: attention patterns, MLP outputs, top-1 (circuitdiff.scan.clean)
  influence   every head and MLP ablated alone, per model (circuitdiff.scan)
  words       pairs without a shared tokenisation: patterns and MLP rows pooled to shared words
  similarity  head row-cosine of mean patterns; MLP linear CKA or the paper's eigenvectors
  matching    argmax either way or one-to-one, thresholds, the paper's duplicated pairs if asked;
              each match's bootstrap confidence
  alignment   influence-weighted score, bootstrap CI over prompts, calibrated against chance
  robustness  per-model drop statistics from retained %, compression ratio and slope
  circuits    (spec.circuits) each model's circuit by iterative node pruning, the threshold sweep,
              the teacher circuit mapped through the matching and run on the student against
              null controls (circuitdiff.scan.circuits)

``cancelled()`` is polled between stages and between components; when it turns true the run
stops with :class:`~circuitdiff.errors.Cancelled`.
"""

from __future__ import annotations

import contextlib
import time
from datetime import datetime, timezone
from typing import Any, Callable

import numpy as np
import torch

from . import sections
from .analysis.matching import match_components, unpaired
from .cache import ActivationCache
from .cache.engine import PipelineCache, open_cache
from .catalogue import LLAMA_PAPER_ABLATION, LLAMA_PAPER_PROTOCOL, TASKS, task_items
from .errors import Cancelled, MetricError
from .metrics import METRIC_FIX, METRICS, metric_info
from .models import ModelAdapter, load_model, resolve_device
from .models.placement import Workload, check_activations
from .result import ComparisonResult, ScanInfo
from .scan import scan
from .scan import circuits as circuits_mod
from .scan.clean import BATCH_SIZE, CleanStats, clean_pass
from .scan.influence import InfluenceScan, clean_logit_diffs
from .scan.words import word_pass
from .spec import ComparisonSpec
from .tasks.dataset import TaskData, build_task_data
from .vocabulary import LLAMA_MODEL_TYPES, PRECISION_CONTRACTS, ROLES, SCHEMA_VERSION, head_ids, mlp_ids

Progress = Callable[[str, int, int], None]


def run_comparison(
    spec: ComparisonSpec | dict,
    progress: Progress | None = None,
    cancelled: Callable[[], bool] | None = None,
    *,
    datasets_dir: str | None = None,
    loader: Callable[..., ModelAdapter] = load_model,
    cache: ActivationCache | bool | str | None = None,
) -> ComparisonResult:
    """Compare teacher and student as ``spec`` says.

    datasets_dir: where uploaded custom datasets live (``<id>.jsonl``).
    loader: ``loader(ref, device=, dtype=, field=, workload=) -> ModelAdapter``; a worker passes one that keeps
    recently used models loaded (worker/engine.py).
    cache: per-model clean statistics and influence scans are reused from the activation cache
    (circuitdiff.cache): None/True = the active engine settings' cache (circuitdiff.settings; by
    default $CIRCUITDIFF_CACHE_DIR, off with CIRCUITDIFF_CACHE=0), a directory or an ActivationCache,
    False = off. ``scan.cache`` in the result says per model whether it came from the cache.
    """
    if isinstance(spec, dict):
        spec = ComparisonSpec.model_validate(spec)
    ablation_asked = spec.ablation
    spec = spec.resolve()
    run = _Run(progress, cancelled)
    _seed_everything(spec.seed)
    warnings: list[str] = []

    with run.stage("load"):
        device = resolve_device(spec.device)
        adapters: dict[str, ModelAdapter] = {}
        for k, role in enumerate(ROLES):
            # the memory plan before loading sizes the scan at n_prompts (circuitdiff.models.placement)
            adapters[role] = loader(getattr(spec, role), device=device, dtype=spec.dtype, field=f"{role}.id",
                                    workload=Workload(spec.n_prompts, batch_size=BATCH_SIZE))
            run.tick(k + 1, 2)
        teacher, student = adapters["teacher"], adapters["student"]
        spec, protocol = _ablation_protocol(spec, ablation_asked, adapters)

    with run.stage("task"):
        items = task_items(spec.task, spec.task_options, spec.n_prompts, spec.seed, spec.dataset, datasets_dir)
        task = build_task_data(
            items, {r: adapters[r].tokenizer for r in ROLES}, name=spec.task, options=spec.task_options,
            bos=spec.bos, device=device, forms={r: adapters[r].family for r in ROLES},
        )
        warnings += task.warnings
        check_metric(spec.metric, task, {r: adapters[r].family for r in ROLES})
        if spec.circuits is not None and task.kind == "text":  # circuit search reads the logit difference
            raise MetricError("circuits are found on the logit difference, and this dataset is plain text (no answers)",
                              field="circuits", fix="drop `circuits`, or use a dataset of prompts with answers")
        activation_bytes = {}
        for role in ROLES:  # the real token length now known: do the scan's activations still fit?
            a, v = adapters[role], task.view(role)
            activation_bytes[role] = check_activations(
                a.hf_model.config, a.dtype, Workload(v.n, v.clean.tokens.shape[1], BATCH_SIZE), a.device,
                field=f"{role}.id", model_id=a.info["id"])
        if task.word_aligned:
            # issue #4: no shared tokenisation; attention is compared on shared words. The paper
            # compared only the end-query row for its GPT-2 vs DistilBERT control (pitfall 8).
            task.token_alignment = "word_end_row" if spec.preset == "paper" else "word_pooled"

    pcache = PipelineCache(open_cache(cache))
    clean: dict[str, CleanStats] = {}
    with run.stage("clean"):
        for k, role in enumerate(ROLES):
            view = task.view(role)
            clean[role] = pcache.clean(role, adapters[role], view, lambda: clean_pass(adapters[role], view), CleanStats)
            run.tick(k + 1, 2)

    options = {"check": spec.attribution_check, "seed": spec.seed} if spec.scan == "attribution" and spec.attribution_check else {}
    if spec.scan == "screened":
        options = {"screen_top": spec.screen_top}
    scans: dict[str, InfluenceScan] = {}
    for role in ROLES:
        with run.stage(f"influence:{role}"):
            view = task.view(role)
            scans[role] = pcache.scan(
                role, adapters[role], view, {"method": spec.scan, "ablation": spec.ablation, "metric": spec.metric,
                                             **options},
                lambda: scan(adapters[role], view, spec.ablation, method=spec.scan, batch_size=BATCH_SIZE,
                             progress=progress, cancelled=cancelled, stage=f"influence:{role}", metric=spec.metric,
                             **options),
                InfluenceScan,
            )
    ran = {scans[r].method for r in ROLES}
    method = spec.scan
    if ran != {method}:  # exact/attribution on an architecture without a functional view: naive ran
        warnings.append(f"scan method {method!r} does not cover every model of this pair; ran: "
                        + ", ".join(f"{r} {scans[r].method}" for r in ROLES))
        method = "naive" if "naive" in ran else method

    compared: dict[str, Any] = clean  # the statistics attention / MLP similarity read
    if task.word_aligned:
        with run.stage("words"):
            w_max = max(len(w) for w in task.words)
            compared = {r: word_pass(adapters[r], task.view(r), w_max, BATCH_SIZE) for r in ROLES}
            warnings.append(
                f"teacher and student do not share a tokenisation ({teacher.family} vs {student.family}): tokens are "
                f"mapped to the words both inputs share by character offsets; attention is compared on "
                + ("the word-aligned end-query row" if task.token_alignment == "word_end_row" else
                   "word-pooled patterns (sum over a word's key tokens, mean over its query tokens)")
                + ", MLP outputs on per-word means"
            )

    with run.stage("similarity"):
        sims = sections.similarities(compared["student"], compared["teacher"], student, teacher, spec,
                                     alignment=task.token_alignment, warnings=warnings)

    ids = {r: (head_ids(adapters[r].n_layers, adapters[r].n_heads), mlp_ids(adapters[r].n_layers)) for r in ROLES}
    with run.stage("matching"):
        pairs = match_components(
            sims.heads, sims.mlps, ids["student"][0], ids["teacher"][0], ids["student"][1], ids["teacher"][1],
            direction=spec.matching, head_threshold=spec.head_threshold, mlp_threshold=spec.mlp_threshold,
            ties=sections.ties(spec), duplicate_below_threshold=spec.duplicate_unmatched,
        )
        infl = {r: scans[r].influences() for r in ROLES}
        n_confidence = sections.confidence_resamples(spec, task.n_prompts)
        confidence = sections.match_confidences(pairs, compared, sims, spec, n_confidence)

    # Who performs the task is decided on the clean logit difference for every answer metric.
    lds = {r: scans[r].clean_ld if spec.metric == "logit_diff" else
           clean_logit_diffs(adapters[r], task.view(r), BATCH_SIZE) if task.kind == "answers" else None for r in ROLES}
    performance = {r: sections.performance_section(scans[r], clean[r].correct if task.kind == "answers" else None,
                                                   lds[r]) for r in ROLES}
    warnings += sections.performance_warnings(lds, performance)
    with run.stage("alignment"):
        alignment = sections.alignment_section(pairs, scans, performance, spec, n_confidence)

    with run.stage("robustness"):
        robustness = sections.robustness_section(scans, performance, teacher.n_params, student.n_params,
                                                 spec.bootstrap)

    circuits = None
    if spec.circuits is not None:
        c = spec.circuits
        searches: dict[str, circuits_mod.ModelSearch] = {}
        evaluators: dict[str, circuits_mod.CircuitEvaluator] = {}
        for role in ROLES:
            with run.stage(f"circuits:{role}"):
                if performance[role].performs_task:
                    evaluators[role] = circuits_mod.CircuitEvaluator(
                        adapters[role], task.view(role), spec.ablation, method="naive" if spec.scan == "naive" else "exact",
                        batch_size=BATCH_SIZE, progress=progress, cancelled=cancelled, stage=f"circuits:{role}")
                    searches[role] = circuits_mod.search(evaluators[role], [c.threshold, *(c.sweep or [])])
        moved = None
        if len(searches) == 2:
            with run.stage("circuits:transfer"):
                evaluators["student"].stage = "circuits:transfer"
                moved = circuits_mod.transfer(
                    evaluators["student"], searches["teacher"].circuits[c.threshold].components,
                    searches["student"].circuits[c.threshold].components,
                    [(p.student, p.teacher) for p in pairs if not p.duplicated], teacher.n_layers, c.null_draws,
                    spec.seed)
        circuits = sections.circuits_section(searches, moved, spec)

    result = ComparisonResult(
        schema_version=SCHEMA_VERSION,
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        spec=spec.model_dump(mode="json"),
        metric=metric_info(spec.metric),
        engine=sections.engine_versions(),
        models={r: _model_info(adapters[r].info, activation_bytes[r]) for r in ROLES},
        task=task.info(),
        performance=performance,
        influence={r: sections.influence_section(scans[r]) for r in ROLES},
        similarity=sims.section(student, teacher),
        matches=sections.matches_section(pairs, infl, confidence),
        unpaired=unpaired(pairs, ids["student"][0] + ids["student"][1], ids["teacher"][0] + ids["teacher"][1]),
        alignment=alignment,
        robustness=robustness,
        attention=sections.attention_views(pairs, infl, compared, task),
        circuits=circuits,
        scan=ScanInfo(
            method=method, approximate=not all(all(scans[r].is_exact()) for r in ROLES),
            precision=_precision({str(adapters[r].dtype).removeprefix("torch.") for r in ROLES}),
            agreement={r: scans[r].agreement for r in ROLES if scans[r].agreement is not None} or None,
            cache=pcache.status,
            microbatch_rows={r: scans[r].microbatch_rows for r in ROLES if scans[r].microbatch_rows},
            ablation_protocol=protocol,
        ),
        timings=run.timings,
        warnings=warnings,
    )
    run.tick_stage("done", 1, 1)
    return result


def _model_info(info: dict, activation_bytes: int) -> dict:
    """What the result records of a model: its load-time info, with the memory plan's activation
    figure for *this* job (the real token length), so that a model reused from a worker's cache
    reports the same plan as a fresh load would."""
    placement = info.get("placement")
    if not placement:
        return info
    return {**info, "placement": {**placement, "activation_bytes": activation_bytes,
                                  "needed_bytes": placement["weight_bytes"] + activation_bytes}}


def check_metric(metric: str, task: TaskData, families: dict[str, str]) -> None:
    """The metric must be computable on this task and pair: answer metrics need answers; ``loss`` (and
    plain texts at all) need causal models (a masked LM has no next-token distribution over a text)."""
    if METRICS[metric].needs_answer and task.kind == "text":
        raise MetricError(f"metric {metric} reads an answer token, and this dataset is plain text (no answers)",
                          field="metric", fix=METRIC_FIX)
    masked = [r for r in ROLES if families[r] == "masked"]
    if masked and metric == "loss":
        raise MetricError(f"metric loss is the causal next-token loss, and the {' and '.join(masked)} is a masked LM",
                          field="metric", fix="use metric kl, an answer metric, or two causal models")
    if masked and task.kind == "text":
        raise MetricError(f"plain-text datasets need causal models; the {' and '.join(masked)} is a masked LM",
                          field="dataset", fix="give masked models a dataset of prompts with answers and [MASK] forms")


def _ablation_protocol(spec: ComparisonSpec, asked: str | None, adapters: dict[str, ModelAdapter]):
    """The ablation the scans run and what it follows. The ``paper`` preset on two Llama-layout models
    follows the authors' Llama notebook (catalogue.LLAMA_PAPER_PROTOCOL) unless the spec names an
    ablation; the resolved spec in the result then says ``token_mean``, so it re-runs the same."""
    llama = all(a.hf_model.config.model_type in LLAMA_MODEL_TYPES for a in adapters.values())
    if spec.preset == "paper" and asked is None and llama:
        return spec.model_copy(update={"ablation": LLAMA_PAPER_ABLATION}), LLAMA_PAPER_PROTOCOL
    if spec.preset == "paper" and asked is None:
        return spec, TASKS[spec.task].paper.describe()
    return spec, f"{spec.ablation} ablation" + (" (asked in the spec)" if asked else f" ({spec.preset} preset)")


def _precision(dtypes: set[str]) -> dict:
    """``scan.precision``: the dtype the models ran in (the lower-precision one where they differ) and
    its accuracy contract against float32 (circuitdiff.vocabulary.PRECISION_CONTRACTS)."""
    dtype = next((d for d in ("bfloat16", "float16") if d in dtypes), "float32")
    return {"dtype": dtype, "accumulation": "float32", **PRECISION_CONTRACTS.get(dtype, {"characterised": False})}


class _Run:
    """Stage bookkeeping: timings, progress ticks and the cancel check between stages."""

    def __init__(self, progress: Progress | None, cancelled: Callable[[], bool] | None):
        self.progress, self.cancelled = progress, cancelled
        self.timings: dict[str, float] = {}
        self.current = ""
        self.t0 = time.perf_counter()

    @contextlib.contextmanager
    def stage(self, name: str):
        if self.cancelled is not None and self.cancelled():
            raise Cancelled(f"cancelled before stage {name}")
        self.current = name
        self.tick_stage(name, 0, 1)
        start = time.perf_counter()
        yield
        self.timings[name] = round(time.perf_counter() - start, 4)
        self.timings["total"] = round(time.perf_counter() - self.t0, 4)

    def tick(self, done: int, total: int) -> None:
        self.tick_stage(self.current, done, total)

    def tick_stage(self, stage: str, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(stage, done, total)


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    # Same numbers on every run of a spec: deterministic kernels where they exist (warn, don't fail,
    # on ops that have none), no cuDNN autotuning.
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
