"""The last step: every stage's section into one :class:`~circuitdiff.result.ComparisonResult`, with
the provenance a result carries (engine versions, the models' memory plans, what the scan ran and in
which precision) and the side-by-side attention views of the head pairs that matter most."""

from __future__ import annotations

from datetime import datetime, timezone
from importlib import metadata
from typing import Any, Sequence

from .. import ENGINE_VERSION
from ..analysis.matching import Pair
from ..metrics import metric_info
from ..result import AttentionView, Circuits, ComponentInfluence, ComparisonResult, Performance, Robustness, ScanInfo
from ..result import Alignment as AlignmentSection
from ..spec import ablation_protocol
from ..tasks.dataset import TaskData
from ..vocabulary import N_ATTENTION_VIEWS, PRECISION_CONTRACTS, ROLES, SCHEMA_VERSION, parse_component
from .context import RunContext
from ..analysis.chain import ChainIntervals
from .influence import Influences
from .matching import Matching
from .similarity import Similarities
from .task import PreparedTask


def assemble(ctx: RunContext, task: PreparedTask, infl: Influences, compared: dict[str, Any], sims: Similarities,
             matching: Matching, perf: dict[str, Performance], alignment: AlignmentSection, robustness: Robustness,
             circuits: Circuits | None, chain: ChainIntervals | None = None) -> ComparisonResult:
    spec, scans = ctx.spec, infl.scans
    by_role = infl.influences()
    ci = {r: {} for r in ROLES} if chain is None else chain.influence_ci95
    return ComparisonResult(
        schema_version=SCHEMA_VERSION,
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        spec=spec.model_dump(mode="json"),
        metric=metric_info(spec.metric),
        engine=engine_versions(),
        models={r: model_info(ctx.models[r].info, task.activation_bytes[r]) for r in ROLES},
        task=task.data.info(),
        performance=perf,
        influence={r: {c: ComponentInfluence(**v, influence_ci95=list(ci[r][c]) if c in ci[r] else None)
                       for c, v in scans[r].summary().items()} for r in ROLES},
        similarity=sims.section(ctx.student, ctx.teacher),
        matches=matching.section(by_role),
        unpaired=matching.unpaired,
        alignment=alignment,
        robustness=robustness,
        attention=attention_views(matching.pairs, by_role, compared, task.data),
        circuits=circuits,
        scan=ScanInfo(
            method=infl.method, approximate=not all(all(scans[r].is_exact()) for r in ROLES),
            precision=precision({str(ctx.models[r].dtype).removeprefix("torch.") for r in ROLES}),
            agreement={r: scans[r].agreement for r in ROLES if scans[r].agreement is not None} or None,
            cache=ctx.cache.status,
            microbatch_rows={r: scans[r].microbatch_rows for r in ROLES if scans[r].microbatch_rows},
            ablation_protocol=ablation_protocol(spec, ctx.model_types),
            estimator=next((scans[r].estimator for r in ROLES if scans[r].estimator), None),
        ),
        timings=ctx.clock.timings,
        warnings=ctx.warnings,
    )


def model_info(info: dict, activation_bytes: int) -> dict:
    """What the result records of a model: its load-time info, with the memory plan's activation
    figure for *this* job (the real token length), so that a model reused from a worker's cache
    reports the same plan as a fresh load would."""
    placement = info.get("placement")
    if not placement:
        return info
    return {**info, "placement": {**placement, "activation_bytes": activation_bytes,
                                  "needed_bytes": placement["weight_bytes"] + activation_bytes}}


def precision(dtypes: set[str]) -> dict:
    """``scan.precision``: the dtype the models ran in (the lower-precision one where they differ) and
    its accuracy contract against float32 (circuitdiff.vocabulary.PRECISION_CONTRACTS)."""
    dtype = next((d for d in ("bfloat16", "float16") if d in dtypes), "float32")
    return {"dtype": dtype, "accumulation": "float32", **PRECISION_CONTRACTS.get(dtype, {"characterised": False})}


def engine_versions() -> dict[str, str]:
    out = {"circuitdiff": ENGINE_VERSION}
    for pkg in ("torch", "transformers", "transformer_lens"):
        try:
            out[pkg] = metadata.version(pkg.replace("_", "-"))
        except metadata.PackageNotFoundError:
            out[pkg] = "unknown"
    return out


def attention_views(pairs: Sequence[Pair], infl: dict[str, dict[str, float]], stats: dict[str, Any],
                    task: TaskData) -> list[AttentionView]:
    """Side-by-side mean patterns for the head pairs that matter most to both models (largest
    Î_S + Î_T), labelled with the tokens (or shared words) of the longest prompt."""
    heads = [p for p in pairs if p.kind == "head" and not p.duplicated]
    if not heads:
        return []
    tot = {r: sum(v for c, v in infl[r].items() if parse_component(c).kind == "head") or 1.0 for r in ROLES}
    ranked = sorted(heads, key=lambda p: -(infl["student"][p.student] / tot["student"]
                                           + infl["teacher"][p.teacher] / tot["teacher"]))
    labels = max(task.words if task.word_aligned else task.view("student").token_labels, key=len)
    views, seen = [], set()
    for p in ranked:
        if (p.student, p.teacher) in seen:
            continue
        seen.add((p.student, p.teacher))
        views.append(AttentionView(
            student=p.student, teacher=p.teacher, similarity=p.similarity, tokens=labels,
            student_pattern=_pattern(stats["student"], p.student, len(labels)),
            teacher_pattern=_pattern(stats["teacher"], p.teacher, len(labels)),
        ))
        if len(views) == N_ATTENTION_VIEWS:
            break
    return views


def _pattern(stats: Any, cid: str, T: int) -> list[list[float]]:
    c = parse_component(cid)
    return [[round(float(v), 5) for v in row] for row in stats.patterns[c.layer][c.head, :T, :T]]
