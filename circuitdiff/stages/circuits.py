"""Stages ``circuits:<role>`` and ``circuits:transfer`` (spec.circuits): each model's circuit by
iterative node pruning with the threshold sweep, then the teacher's circuit mapped through the
matching and run on the student against null controls (circuitdiff.scan.circuits runs them,
circuitdiff.analysis.pruning holds the search, diff and null statistics)."""

from __future__ import annotations

from typing import Any

from ..analysis.pruning import CIRCUIT_MIN_INCLUSION, consensus_components, jaccard, stable_diff
from ..result import (CircuitDiffSection, Circuits, CircuitTransfer, Faithfulness, ModelCircuit, NullControl,
                      Performance, SweepRow)
from ..scan import circuits as circuit_scan
from ..scan.clean import BATCH_SIZE
from ..spec import ComparisonSpec
from ..tasks.dataset import TaskData
from ..vocabulary import ROLES, parse_component
from .context import RunContext
from .matching import Matching


def find_circuits(ctx: RunContext, task: TaskData, matching: Matching, perf: dict[str, Performance],
                  influence: dict[str, dict[str, float]]) -> Circuits:
    """``influence``: role -> component -> influence (the faithfulness curves keep components in that order)."""
    spec, c = ctx.spec, ctx.spec.circuits
    searches: dict[str, circuit_scan.ModelSearch] = {}
    evaluators: dict[str, circuit_scan.CircuitEvaluator] = {}
    curves: dict[str, Any] = {}
    freqs: dict[str, dict[str, float]] = {}
    chosen: dict[str, circuit_scan.ScoredSet] = {}  # the circuit each model reports: found over resamples
    for role in ROLES:
        stage = f"circuits:{role}"
        with ctx.clock.stage(stage):
            if perf[role].performs_task:  # a circuit is pruned relative to a model that performs the task
                evaluators[role] = circuit_scan.CircuitEvaluator(
                    ctx.models[role], task.view(role), spec.ablation,
                    method="naive" if spec.scan == "naive" else "exact", batch_size=BATCH_SIZE,
                    progress=ctx.clock.progress, cancelled=ctx.clock.cancelled, stage=stage)
                searches[role] = circuit_scan.search(evaluators[role], [c.threshold, *(c.sweep or [])])
                curves[role] = circuit_scan.faithfulness(evaluators[role], influence[role])
                if c.resamples:
                    freqs[role] = circuit_scan.inclusion(evaluators[role], c.threshold, c.resamples, spec.seed)
                    chosen[role] = circuit_scan.score_set(evaluators[role], consensus_components(freqs[role]))
    circuit = {r: (chosen[r].components if r in chosen else s.circuits[c.threshold].components)
               for r, s in searches.items()}
    moved = None
    if len(searches) == 2:
        with ctx.clock.stage("circuits:transfer"):
            moved = circuit_scan.transfer(
                evaluators["student"].for_stage("circuits:transfer"), circuit["teacher"], circuit["student"],
                [(p.student, p.teacher) for p in matching.pairs if not p.duplicated], ctx.teacher.n_layers,
                c.null_draws, spec.seed)
    pairs = [(p.student, p.teacher) for p in matching.pairs if not p.duplicated]
    return circuits_section(searches, moved, spec, curves, freqs, pairs, chosen)


def circuits_section(searches: dict[str, Any], moved: Any, spec: ComparisonSpec,
                     curves: dict[str, Any] | None = None, freqs: dict[str, dict[str, float]] | None = None,
                     pairs: list[tuple[str, str]] | None = None,
                     chosen: dict[str, Any] | None = None) -> Circuits:
    """searches: role -> circuitdiff.scan.circuits.ModelSearch (only models that perform the task);
    moved: circuitdiff.scan.circuits.Transfer or None; curves: role -> FaithfulnessCurve; freqs: role ->
    inclusion frequency over resamples; pairs: (student, teacher) of the matching; chosen: role ->
    circuitdiff.scan.circuits.ScoredSet, the circuit over resamples (models with resamples only)."""
    freqs, chosen = freqs or {}, chosen or {}
    base = spec.circuits.threshold

    def model_circuit(s: Any, t: float, cls=ModelCircuit, **extra) -> ModelCircuit:
        c = s.circuits[t]
        return cls(threshold=t, components=c.components, n_heads=len(c.heads), n_mlps=len(c.mlps),
                   kept_pct=c.score_pct, removed_pct=s.removed_pct[t], trace_length=len(c.trace),
                   n_passes=c.n_passes, n_evaluations=c.n_evaluations, **extra)

    def reported(role: str) -> ModelCircuit:
        """The full-sample search's circuit, or with resamples the components above the inclusion rule,
        scored on all prompts (the search's trace counts stay those of the full-sample search)."""
        m = model_circuit(searches[role], base, inclusion=freqs.get(role),
                          search_components=searches[role].circuits[base].components)
        if role not in chosen:
            return m
        k = chosen[role]
        n_h = sum(parse_component(x).head is not None for x in k.components)
        return m.model_copy(update=dict(components=k.components, n_heads=n_h, n_mlps=len(k.components) - n_h,
                                        kept_pct=k.kept_pct, removed_pct=k.removed_pct,
                                        min_inclusion=CIRCUIT_MIN_INCLUSION))

    sweep = {}
    if spec.circuits.sweep:
        for r, s in searches.items():
            ref = s.circuits[base].components
            sweep[r] = [model_circuit(s, t, SweepRow, jaccard=jaccard(s.circuits[t].components, ref))
                        for t in spec.circuits.sweep]
    diff = None
    if moved is not None:
        d = moved.diff
        n_h = sum(parse_component(c).head is not None for c in d.mapped)
        discarded, disc_u, new, new_u = d.discarded, [], d.new, []
        if "teacher" in freqs and "student" in freqs:
            discarded, disc_u, new, new_u = stable_diff(d, freqs["teacher"], freqs["student"], pairs or [])
        diff = CircuitDiffSection(
            mapped=d.mapped, jaccard=d.jaccard, kept=d.kept, discarded=discarded, new=new,
            discarded_unstable=disc_u, new_unstable=new_u,
            transfer=CircuitTransfer(
                kept_pct=moved.kept_pct, n_heads=n_h, n_mlps=len(d.mapped) - n_h,
                nulls={k: NullControl(method=v.method, n=v.n, mean=v.mean, ci95=list(v.ci95), p_value=v.p_value)
                       for k, v in moved.nulls.items()}),
        )
    missing = [r for r in ROLES if r not in searches]
    return Circuits(
        threshold=base, ablation=spec.ablation,
        method={r: s.method for r, s in searches.items()},
        **{r: reported(r) if r in searches else None for r in ROLES},
        sweep=sweep, diff=diff, search_s={r: round(s.wall_s, 4) for r, s in searches.items()},
        faithfulness={r: Faithfulness(sizes=f.sizes, kept_pct=f.kept_pct, faithfulness=f.faithfulness, cpr=f.cpr,
                                      cmd=f.cmd) for r, f in (curves or {}).items()},
        note=(f"{' and '.join(missing)} does not perform the task: no circuit to prune relative to it"
              if missing else None),
    )
