"""The sections of a result, each built from the stage that measured it (circuitdiff.result's models).

The pipeline runs the stages (circuitdiff.pipeline); this module turns what they measured into the
typed sections of ``result.json``, calling the analysis functions for every number, so the
pipeline stays a sequence of stages and each rule lives in one analysis module:

- performance: :mod:`circuitdiff.analysis.performance` (who performs the task);
- influence: :class:`circuitdiff.scan.influence.InfluenceScan` (LD, delta, influence, retained %);
- similarity: :mod:`circuitdiff.analysis.similarity` (head row cosine; MLP eigenvectors or CKA);
- matches and alignment: :mod:`circuitdiff.analysis.matching`, :mod:`circuitdiff.analysis.alignment`,
  calibrated by :mod:`circuitdiff.analysis.chance`; match confidences by
  :mod:`circuitdiff.analysis.confidence`;
- robustness: :mod:`circuitdiff.analysis.robustness`, on the drops of the models that perform the task;
- attention views: the head pairs that matter most to both models;
- circuits: :mod:`circuitdiff.analysis.circuits` (search, diff, nulls) as run by
  :mod:`circuitdiff.scan.circuits`.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata
from typing import Any, Sequence

import numpy as np

from . import ENGINE_VERSION
from .analysis import alignment as alignment_mod
from .analysis import robustness as robustness_mod
from .analysis import similarity as similarity_mod
from .analysis._array import to_numpy
from .analysis.chance import chance_null
from .analysis.circuits import jaccard
from .analysis.confidence import MAX_RESAMPLES, match_confidence
from .analysis.matching import Pair
from .analysis.performance import logit_diff_lower_bound, performance
from .catalogue import TASKS
from .metrics import METRICS
from .result import (
    Alignment, AttentionView, ChanceCalibration, CircuitDiffSection, Circuits, CircuitTransfer, ComponentInfluence,
    Match, Matrix, ModelCircuit, ModelRobustness, NullControl, Performance, Robustness, Similarity, SweepRow,
)
from .scan.influence import InfluenceScan
from .spec import ComparisonSpec
from .tasks.dataset import TaskData
from .vocabulary import N_ATTENTION_VIEWS, ROLES, head_ids, mlp_ids, parse_component

# The robustness bootstrap's seed is the authors' (docs/authors-code.md §3.7: numpy default_rng(42) per
# statistic), so the paper preset reproduces their intervals exactly; the alignment bootstrap uses
# the spec's seed.
ROBUSTNESS_SEED = robustness_mod.SEED


# --------------------------------------------------------------------------- performance
def performance_section(scan: InfluenceScan, correct: Any, clean_ld: Any = None) -> Performance:
    """The clean metric of one model; ``clean_ld`` [n]: the clean logit difference where the metric is
    another answer metric (who performs the task is decided on it); ``correct`` None for plain texts."""
    return Performance(**performance(scan.clean_ld, correct, scan.metric, clean_ld))


def performance_warnings(lds: dict[str, Any], perf: dict[str, Performance]) -> list[str]:
    """lds: per model the clean logit difference [n] (None for a plain-text task)."""
    out = []
    for r in ROLES:
        p = perf[r]
        if p.performs_task is False:
            out.append(
                f"the {r} does not perform the task (clean logit difference {p.logit_diff:.3f}, "
                f"95% interval lower end {logit_diff_lower_bound(lds[r]):.3f} <= 0): its robustness is "
                "not computed" + ("" if p.logit_diff > 0 else " and its retained % is undefined")
            )
    return out


# --------------------------------------------------------------------------- influence
def influence_section(scan: InfluenceScan) -> dict[str, ComponentInfluence]:
    return {cid: ComponentInfluence(**v) for cid, v in scan.summary().items()}


# --------------------------------------------------------------------------- similarity
@dataclass
class Similarities:
    """Student x teacher similarity matrices (heads [Hs, Ht], MLPs [Ls, Lt]) and how they were made
    (``qmask``: the query rows head similarity averages; None = all)."""

    heads: np.ndarray
    mlps: np.ndarray
    mlps_raw: np.ndarray | None
    head_method: str
    mlp_method: str
    qmask: np.ndarray | None = None

    def section(self, student: Any, teacher: Any) -> Similarity:
        s_heads, t_heads = head_ids(student.n_layers, student.n_heads), head_ids(teacher.n_layers, teacher.n_heads)
        s_mlps, t_mlps = mlp_ids(student.n_layers), mlp_ids(teacher.n_layers)
        return Similarity(
            heads=matrix(self.heads, s_heads, t_heads), mlps=matrix(self.mlps, s_mlps, t_mlps),
            head_method=self.head_method, mlp_method=self.mlp_method,
            mlps_raw=None if self.mlps_raw is None else matrix(self.mlps_raw, s_mlps, t_mlps),
        )


def similarities(
    s: Any, t: Any, student: Any, teacher: Any, spec: ComparisonSpec, alignment: str, warnings: list[str],
) -> Similarities:
    """s, t: per-model statistics with ``patterns`` [layer][head, T, T] and ``mlp_rows`` [layer][n, d]
    (clean-pass statistics, or their word-pooled form for pairs that do not share tokens)."""
    s_pat = np.stack([to_numpy(p) for p in s.patterns]).reshape(-1, *s.patterns[0].shape[1:])
    t_pat = np.stack([to_numpy(p) for p in t.patterns]).reshape(-1, *t.patterns[0].shape[1:])
    paper = spec.preset == "paper"
    # The paper averages every query row, including row 0 (trivially identical in a causal model);
    # the default preset leaves it out (docs/authors-code.md §7 pitfall 8).
    qmask = None if paper else similarity_mod.query_rows(s_pat.shape[1], exclude_first=True)
    head_method = "row_cosine_all_rows" if paper else "row_cosine_excl_first_row"
    if alignment == "word_end_row":  # word patterns: the last row is the end query (circuitdiff.scan.words)
        qmask = np.arange(s_pat.shape[1]) == s_pat.shape[1] - 1
        head_method = "word_end_row_cosine"
    elif alignment == "word_pooled":
        head_method = "word_pooled_" + head_method
    heads = similarity_mod.head_similarity(s_pat, t_pat, qmask)
    mlp_similarity = spec.mlp_similarity
    if mlp_similarity != "cka" and student.d_model != teacher.d_model:
        # eigenvectors of different widths live in different spaces; CKA compares the same rows
        mlp_similarity = "cka"
        warnings.append(f"MLP widths differ (student {student.d_model}, teacher {teacher.d_model}): "
                        "MLP similarity is linear CKA instead of eigenvectors")
    if mlp_similarity == "cka":
        return Similarities(heads, similarity_mod.mlp_similarity_cka(s.mlp_rows, t.mlp_rows), None, head_method,
                            "linear_cka", qmask)
    raw = similarity_mod.mlp_similarity_eigen(s.mlp_rows, t.mlp_rows, k=3)
    if mlp_similarity == "eigen_raw":
        return Similarities(heads, raw, None, head_method, "eigen_top3_raw", qmask)
    return Similarities(heads, similarity_mod.clip_similarity(similarity_mod.rescale_to_heads(raw, heads)), raw,
                        head_method, "eigen_top3_rescaled", qmask)


def ties(spec: ComparisonSpec) -> str:
    """Argmax ties: the paper preset breaks them as the task's notebook did; otherwise the first."""
    return TASKS[spec.task].paper.ties if spec.preset == "paper" else "first"


def protocol(spec: ComparisonSpec) -> str:
    if spec.preset == "paper":
        return TASKS[spec.task].paper.describe()
    return (f"circuitdiff default: {spec.ablation} ablation, head row cosine without row 0, "
            f"{ {'cka': 'linear CKA', 'eigen': 'rescaled eigenvector', 'eigen_raw': 'raw eigenvector'}[spec.mlp_similarity] }"
            f" MLP similarity, {spec.matching.replace('_', ' ')} matching, each pair once")


def matrix(values: Any, rows: list[str], cols: list[str]) -> Matrix:
    return Matrix(rows=rows, cols=cols, values=[[float(v) for v in r] for r in np.asarray(values)])


# --------------------------------------------------------------------------- matches and alignment
def matches_section(pairs: Sequence[Pair], infl: dict[str, dict[str, float]],
                    confidence: Sequence[float] | None) -> list[Match]:
    return [
        Match(student=p.student, teacher=p.teacher, kind=p.kind, similarity=p.similarity, matched=p.matched,
              student_influence=infl["student"][p.student], teacher_influence=infl["teacher"][p.teacher],
              duplicated=p.duplicated, confidence=None if confidence is None else confidence[k])
        for k, p in enumerate(pairs)
    ]


def confidence_resamples(spec: ComparisonSpec, n_prompts: int) -> int:
    """Resamples behind the match confidences: the spec's ``bootstrap``, at most MAX_RESAMPLES; none
    with one prompt or without a bootstrap."""
    return min(spec.bootstrap, MAX_RESAMPLES) if n_prompts > 1 else 0


def match_confidences(pairs: Sequence[Pair], stats: dict[str, Any], sims: Similarities, spec: ComparisonSpec,
                      n_resamples: int) -> list[float] | None:
    """Per pair, the share of bootstrap resamples choosing the same partner (circuitdiff.analysis.confidence)."""
    if not n_resamples:
        return None
    return match_confidence(
        stats["student"].resample_stats(), stats["teacher"].resample_stats(), pairs, direction=spec.matching,
        mlp_method=sims.mlp_method, qmask=sims.qmask, n_resamples=n_resamples, seed=spec.seed, ties=ties(spec),
    )


def alignment_section(pairs: Sequence[Pair], scans: dict[str, InfluenceScan], perf: dict[str, Performance],
                      spec: ComparisonSpec, n_confidence: int) -> Alignment:
    infl = {r: scans[r].influences() for r in ROLES}
    score = alignment_mod.alignment_score_from_pairs(pairs, infl["student"], infl["teacher"])
    ci = None
    if spec.bootstrap and scans["student"].clean_ld.shape[0] > 1:
        s_row = {c: i for i, c in enumerate(scans["student"].components)}
        t_row = {c: i for i, c in enumerate(scans["teacher"].components)}
        boot = alignment_mod.alignment_bootstrap_ci(
            scans["student"].ablated_ld, scans["student"].clean_ld, scans["teacher"].ablated_ld,
            scans["teacher"].clean_ld, [s_row[p.student] for p in pairs], [t_row[p.teacher] for p in pairs],
            [p.similarity for p in pairs], n_boot=spec.bootstrap, seed=spec.seed,
        )
        ci = [boot.ci95[0], boot.ci95[1]]
    null = chance_null(pairs, infl["student"], infl["teacher"], score, n_draws=spec.chance_draws, seed=spec.seed)
    performing = all(perf[r].performs_task is not False for r in ROLES)  # None: the metric has no such test
    return Alignment(
        score=score, ci95=ci, n_pairs=len(pairs), mean_similarity=float(np.mean([p.similarity for p in pairs])),
        direction=spec.matching,
        chance=ChanceCalibration(method=null.method, n=null.n, mean=null.mean, ci95=list(null.ci95),
                                 p_value=null.p_value),
        above_chance=bool(performing and score > null.ci95[1]), protocol=protocol(spec),
        confidence_resamples=n_confidence or None,
    )


# --------------------------------------------------------------------------- robustness
def robustness_section(
    scans: dict[str, InfluenceScan], perf: dict[str, Performance], t_params: int, s_params: int, n_boot: int,
) -> Robustness:
    """Drops from retained % in canonical component order. A model that does not perform the task
    has no retained % worth a percentage (analysis.performance), so its statistics are null, with a note."""
    c = robustness_mod.compression_ratio(t_params, s_params)
    metric = scans["teacher"].metric
    if METRICS[metric].retained is None:
        return Robustness(teacher=None, student=None, compression_ratio=c, delta_mean_drop=None,
                          delta_mean_drop_ci95=None, slope_mean=None, delta_severity=None, slope_severity=None,
                          note=f"the metric {metric} ({METRICS[metric].label}) has no retained %, so there are no "
                               "drops: robustness is measured on logit_diff, answer_prob or answer_logprob")
    ok = {r: bool(perf[r].performs_task) and None not in scans[r].retained().values() for r in ROLES}
    drops = {r: robustness_mod.drops_from_retained(list(scans[r].retained().values())) for r in ROLES if ok[r]}
    if ok["teacher"] and ok["student"]:
        st = robustness_mod.robustness_stats(drops["teacher"], drops["student"], t_params, s_params,
                                             n_boot=n_boot, seed=ROBUSTNESS_SEED)
        return Robustness(
            teacher=_model_robustness(st.teacher), student=_model_robustness(st.student), compression_ratio=c,
            delta_mean_drop=st.delta_mean_drop, delta_mean_drop_ci95=_pair(st.delta_mean_drop_ci95),
            slope_mean=st.slope_mean, slope_mean_ci95=_pair(st.slope_mean_ci95), delta_severity=st.delta_severity,
            slope_severity=st.slope_severity,
        )
    missing = [r for r in ROLES if not ok[r]]
    return Robustness(
        **{r: _model_robustness(robustness_mod.model_robustness(drops[r], n_boot, ROBUSTNESS_SEED)) if ok[r] else None
           for r in ROLES},
        compression_ratio=c, delta_mean_drop=None, delta_mean_drop_ci95=None, slope_mean=None, delta_severity=None,
        slope_severity=None,
        note=f"{' and '.join(missing)} does not perform the task (clean logit difference not above 0): "
             "drops in % of the clean logit difference are undefined or noise",
    )


def _model_robustness(m: robustness_mod.ModelRobustnessStats) -> ModelRobustness:
    return ModelRobustness(
        n_components=m.n_components, mean_drop=m.mean_drop, mean_drop_ci95=_pair(m.mean_drop_ci95),
        median_drop=m.median_drop, max_drop=m.max_drop, severity=m.severity, worst5_mean=m.worst5_mean, gini=m.gini,
    )


def _pair(ci) -> list[float] | None:
    return None if ci is None else [float(ci[0]), float(ci[1])]


# --------------------------------------------------------------------------- attention views
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


# --------------------------------------------------------------------------- provenance
def engine_versions() -> dict[str, str]:
    out = {"circuitdiff": ENGINE_VERSION}
    for pkg in ("torch", "transformers", "transformer_lens"):
        try:
            out[pkg] = metadata.version(pkg.replace("_", "-"))
        except metadata.PackageNotFoundError:
            out[pkg] = "unknown"
    return out


# --------------------------------------------------------------------------- circuits
def circuits_section(searches: dict[str, Any], moved: Any, spec: ComparisonSpec) -> Circuits:
    """searches: role -> circuitdiff.scan.circuits.ModelSearch (only models that perform the task);
    moved: circuitdiff.scan.circuits.Transfer or None."""
    base = spec.circuits.threshold

    def model_circuit(s: Any, t: float, cls=ModelCircuit, **extra) -> ModelCircuit:
        c = s.circuits[t]
        return cls(threshold=t, components=c.components, n_heads=len(c.heads), n_mlps=len(c.mlps),
                   kept_pct=c.score_pct, removed_pct=s.removed_pct[t], trace_length=len(c.trace),
                   n_passes=c.n_passes, n_evaluations=c.n_evaluations, **extra)

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
        diff = CircuitDiffSection(
            mapped=d.mapped, jaccard=d.jaccard, kept=d.kept, discarded=d.discarded, new=d.new,
            transfer=CircuitTransfer(
                kept_pct=moved.kept_pct, n_heads=n_h, n_mlps=len(d.mapped) - n_h,
                nulls={k: NullControl(method=v.method, n=v.n, mean=v.mean, ci95=list(v.ci95), p_value=v.p_value)
                       for k, v in moved.nulls.items()}),
        )
    missing = [r for r in ROLES if r not in searches]
    return Circuits(
        threshold=base, ablation=spec.ablation,
        method={r: s.method for r, s in searches.items()},
        **{r: model_circuit(searches[r], base) if r in searches else None for r in ROLES},
        sweep=sweep, diff=diff, search_s={r: round(s.wall_s, 4) for r, s in searches.items()},
        note=(f"{' and '.join(missing)} does not perform the task: no circuit to prune relative to it"
              if missing else None),
    )
