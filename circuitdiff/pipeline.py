"""``run_comparison(spec) -> ComparisonResult``: the paper's analysis end to end (docs/method.md).

The single entry point shared by the CLI and the worker. It reads top to bottom as the sequence of
stages (circuitdiff.stages, one module each); every stage is timed and reported through
``progress(stage, done, total)``, and ``cancelled()`` is polled between stages and between
components (a cancelled run stops with :class:`~circuitdiff.errors.Cancelled`).
"""

from __future__ import annotations

from typing import Callable

from .cache import ActivationCache
from .cache.pipeline_cache import PipelineCache, open_cache
from .models import ModelAdapter, load_model
from .result import ComparisonResult
from .spec import ComparisonSpec
from .stages import alignment, assemble, circuits, clean, controls, influence, intervals, load, matching, performance
from .stages import robustness
from .stages import similarity, task
from .stages.context import Progress, RunContext, StageClock, seed_everything


def run_comparison(
    spec: ComparisonSpec | dict,
    progress: Progress | None = None,
    cancelled: Callable[[], bool] | None = None,
    *,
    datasets_dir: str | None = None,
    loader: Callable[..., ModelAdapter] = load_model,
    cache: ActivationCache | bool | str | None = None,
    resolved: Callable[[ComparisonSpec], None] | None = None,
    before_scan: Callable[[str], None] | None = None,
) -> ComparisonResult:
    """Compare teacher and student as ``spec`` says.

    datasets_dir: where uploaded custom datasets live (``<id>.jsonl``).
    loader: ``loader(ref, device=, dtype=, field=, workload=) -> ModelAdapter``; a worker passes one that keeps
    recently used models loaded (worker/runner.py).
    cache: per-model clean statistics and influence scans are reused from the activation cache
    (circuitdiff.cache): None/True = the active engine settings' cache (circuitdiff.settings; by
    default $CIRCUITDIFF_CACHE_DIR, off with CIRCUITDIFF_CACHE=0), a directory or an ActivationCache,
    False = off. ``scan.cache`` in the result says per model whether it came from the cache.
    resolved: called with the spec resolved against the loaded models (the one the result carries),
    before any scan; a worker writes it into the job record.
    before_scan: called with a role before that model's influence scan is looked up in the cache: a
    worker whose other worker is scanning that model (:func:`scan_one_model`) waits there for it.
    """
    ctx, prepared = _prepare(spec, progress, cancelled, datasets_dir, loader, cache, resolved)
    clock = ctx.clock
    with clock.stage("clean"):
        stats = clean.clean_passes(ctx, prepared.data)
    influences = influence.scan_influences(ctx, prepared.data, before=before_scan)  # influence:teacher, :student
    compared = clean.compared_statistics(ctx, prepared.data, stats)  # stage words, for word-aligned pairs
    with clock.stage("similarity"):
        sims = similarity.similarities(ctx, compared, prepared.data.token_alignment)
    with clock.stage("matching"):
        matches = matching.match(ctx, sims, compared, prepared.data.n_prompts)
    performs = performance.performances(ctx, prepared.data, stats, influences)

    def compare_control(control: ComparisonSpec, prefix: str) -> ComparisonResult:
        report = None if progress is None else (lambda stage, done, total: progress(prefix + stage, done, total))
        return run_comparison(control, report, cancelled, datasets_dir=datasets_dir, loader=loader, cache=cache)

    found_controls = controls.control_scores(ctx, compare_control)  # stages control:<model>:*
    with clock.stage("intervals"):
        chain = intervals.intervals(ctx, matches, influences, sims)
    with clock.stage("alignment"):
        score = alignment.alignment(ctx, matches, influences, performs, sims, found_controls, chain)
    with clock.stage("robustness"):
        robust = robustness.robustness(ctx, influences, performs)
    found = None
    if ctx.spec.circuits is not None:  # stages circuits:teacher, circuits:student, circuits:transfer
        found = circuits.find_circuits(ctx, prepared.data, matches, performs, influences.influences())

    result = assemble.assemble(ctx, prepared, influences, compared, sims, matches, performs, score, robust, found,
                               chain)
    clock.tick_stage("done", 1, 1)
    return result


def _prepare(spec, progress, cancelled, datasets_dir, loader, cache, resolved=None) -> tuple[RunContext, task.PreparedTask]:
    """Stages ``load`` and ``task``: what every run of a spec starts from."""
    if isinstance(spec, dict):
        spec = ComparisonSpec.model_validate(spec)
    clock = StageClock(progress, cancelled)
    seed_everything(spec.seed)
    with clock.stage("load"):
        pair = load.load_pair(spec, loader, clock)
    if resolved is not None:
        resolved(pair.spec)
    ctx = RunContext(pair.spec, pair.models, pair.model_types, pair.device, clock, PipelineCache(open_cache(cache)),
                     datasets_dir)
    with clock.stage("task"):
        prepared = task.prepare_task(ctx)
    return ctx, prepared


def scan_one_model(
    spec: ComparisonSpec | dict,
    role: str,
    progress: Progress | None = None,
    cancelled: Callable[[], bool] | None = None,
    *,
    datasets_dir: str | None = None,
    loader: Callable[..., ModelAdapter] = load_model,
    cache: ActivationCache | bool | str | None = None,
) -> str:
    """One model's side of a comparison, into the activation cache: its clean pass and its influence
    scan, on exactly the tokens :func:`run_comparison` gives it (same load and task stages), so a
    run of the whole comparison elsewhere finds both entries warm (the hand-off of a comparison split
    over two workers). Returns the cache's outcome for the model (hit, miss or disabled)."""
    ctx, prepared = _prepare(spec, progress, cancelled, datasets_dir, loader, cache)
    with ctx.clock.stage("clean"):
        clean.clean_passes(ctx, prepared.data, roles=(role,))
    influence.scan_influences(ctx, prepared.data, roles=(role,))
    return ctx.cache.status.get(role, "disabled")
