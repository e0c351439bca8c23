"""Circuit discovery by iterative node pruning (docs/method.md §Method 7, docs/authors-code.md §3.2).

The seqcont method the paper uses for its case studies: start from the full model; with every
component *outside* the candidate set mean-ablated, try removing one component at a time and remove
it for good if the candidate's performance stays within ``T`` points of the full model's::

    keep removing c  if  100 − 100·score(candidate − {c}) / score(full)  <  T      (T = 20)

A **backward** pass visits layers from last to first (in each layer the MLP first, then heads
0..H−1); a **forward** pass visits layers first to last (heads, then the MLP). Passes alternate,
backward first, until a pass removes nothing. Greedy removal makes the result order-dependent; the
order above is the authors' (``find_circuit_backw`` / ``find_circuit_forw``), made generic in the
number of layers and heads (theirs hard-coded 12×12, pitfall 15).

Model code stays outside: :func:`find_circuit` takes ``score(kept) -> float``, the task metric (mean
logit difference) with every component not in ``kept`` ablated (circuitdiff.scan.circuits runs it).
Scores of candidate sets already seen are reused, so the confirming last pass costs nothing when
nothing changes. With ``score_many`` the search asks for several trials of a pass at once,
*speculatively*: the next ``k`` trials assuming none of them removes its component (``k`` doubles
while trials keep failing and falls back to 1 after a removal). A removal makes the speculated sets
after it useless, but never wrong: decisions read only the scores of the exact sets the greedy rule
visits, so the circuit is the same with or without batching.

The circuit diff (:func:`circuit_diff`) maps the teacher's circuit through the matching onto
student ids; :func:`random_sets` and :func:`depth_sets` draw the null controls its transfer is judged
against (the cross-model transfer protocol of arXiv 2604.24302: a transferred circuit means
something only if it beats circuits of the same size chosen without the matching).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from ..vocabulary import canonical_key, head_id, mlp_id, parse_component

__all__ = ["ScoreFn", "PruneStep", "Circuit", "find_circuit", "pass_order", "jaccard", "circuit_overlap",
           "CircuitDiff", "circuit_diff", "random_sets", "depth_sets", "NullSummary", "null_summary"]

ScoreFn = Callable[[frozenset[str]], float]
ScoreManyFn = Callable[[list[frozenset[str]]], list[float]]
MAX_LOOKAHEAD = 16
PassDirection = Literal["backward", "forward"]


@dataclass(frozen=True)
class PruneStep:
    """One trial removal: performance of the candidate without ``component`` (% of the full model)."""

    pass_index: int
    direction: PassDirection
    component: str
    score_pct: float
    removed: bool


@dataclass
class Circuit:
    components: list[str]  # canonical order: heads row-major, then MLPs
    score: float  # score(circuit), in the metric's units
    full_score: float
    score_pct: float  # 100 · score / full_score ("completeness" of the circuit)
    threshold: float
    n_passes: int
    n_evaluations: int  # calls of the score function
    trace: list[PruneStep] = field(default_factory=list)

    @property
    def heads(self) -> list[str]:
        return [c for c in self.components if parse_component(c).head is not None]

    @property
    def mlps(self) -> list[str]:
        return [c for c in self.components if parse_component(c).head is None]


def pass_order(n_layers: int, n_heads: int, direction: PassDirection, *, mlps: bool = True) -> list[str]:
    """Visiting order of one pass: backward = layers L−1..0, MLP then heads; forward = 0..L−1, heads then MLP."""
    order: list[str] = []
    layers = range(n_layers - 1, -1, -1) if direction == "backward" else range(n_layers)
    for layer in layers:
        heads = [head_id(layer, h) for h in range(n_heads)]
        mlp = [mlp_id(layer)] if mlps else []
        order += mlp + heads if direction == "backward" else heads + mlp
    return order


def find_circuit(
    score: ScoreFn,
    n_layers: int,
    n_heads: int,
    *,
    threshold: float = 20.0,
    mlps: bool = True,
    start: Iterable[str] | None = None,
    full_score: float | None = None,
    max_passes: int = 50,
    progress: Callable[[int, int], None] | None = None,
    score_many: ScoreManyFn | None = None,
) -> Circuit:
    """Iterative node pruning.

    score: performance with exactly the components in the given set un-ablated.
    threshold: T, in percentage points of the full model's score.
    start: the initial candidate set (default: every head and, if ``mlps``, every MLP).
    full_score: the reference score (default: score of the full model); must be > 0, since the
        rule is relative to it.
    progress: called as ``progress(pass_index, n_evaluations)`` after each pass.
    score_many: scores of several sets at once (batched); enables speculative look-ahead.
    """
    everything = pass_order(n_layers, n_heads, "forward", mlps=mlps)
    kept = set(everything if start is None else start)
    unknown = kept - set(everything)
    if unknown:
        raise ValueError(f"start contains components the model does not have: {sorted(unknown)}")
    memo: dict[frozenset[str], float] = {}
    lookahead = 1

    def evaluate(candidate: frozenset[str]) -> float:
        if candidate not in memo:
            memo[candidate] = float(score(candidate))
        return memo[candidate]

    def speculate(kept_now: set[str], upcoming: list[str]) -> None:
        """Score kept − {c} for the next ``lookahead`` components still kept, in one batch."""
        todo = [frozenset(kept_now - {c}) for c in upcoming if c in kept_now][:lookahead]
        todo = [s for s in dict.fromkeys(todo) if s not in memo]
        if todo:
            for s, v in zip(todo, score_many(todo)):
                memo[s] = float(v)

    full = evaluate(frozenset(everything)) if full_score is None else float(full_score)
    if not full > 0:
        raise ValueError(f"the full model's score must be positive to prune relative to it, got {full}")

    trace: list[PruneStep] = []
    n_passes = 0
    for n_passes in range(1, max_passes + 1):
        direction: PassDirection = "backward" if n_passes % 2 == 1 else "forward"
        removed_any = False
        order = pass_order(n_layers, n_heads, direction, mlps=mlps)
        for i, comp in enumerate(order):
            if comp not in kept:
                continue
            candidate = frozenset(kept - {comp})
            if score_many is not None and candidate not in memo:
                speculate(kept, order[i:])
            pct = 100.0 * evaluate(candidate) / full
            drop = 100.0 - pct < threshold
            trace.append(PruneStep(n_passes, direction, comp, pct, drop))
            if drop:
                kept.discard(comp)
                removed_any = True
                lookahead = 1
            elif score_many is not None:
                lookahead = min(MAX_LOOKAHEAD, lookahead * 2)
        if progress is not None:
            progress(n_passes, len(memo))
        if not removed_any:
            break
    final = evaluate(frozenset(kept))
    return Circuit(
        components=sorted(kept, key=canonical_key),
        score=final,
        full_score=full,
        score_pct=100.0 * final / full,
        threshold=threshold,
        n_passes=n_passes,
        n_evaluations=len(memo),
        trace=trace,
    )


def jaccard(a: Iterable[str], b: Iterable[str]) -> float:
    """|A ∩ B| / |A ∪ B| (1.0 for two empty sets)."""
    sa, sb = set(a), set(b)
    return len(sa & sb) / len(sa | sb) if sa | sb else 1.0


def circuit_overlap(student_circuit: Iterable[str], teacher_circuit: Iterable[str], pairs: Sequence) -> dict:
    """How much of the student's circuit maps, through the matching, into the teacher's circuit.

    pairs: :class:`~circuitdiff.analysis.matching.Pair` objects (``.student``, ``.teacher``).
    Returns ``{"mapped": [(student, teacher)...], "fraction_of_student": float,
    "teacher_covered": [...], "fraction_of_teacher": float}``; duplicated pairs count once.
    """
    s_circ, t_circ = set(student_circuit), set(teacher_circuit)
    mapped = sorted({(p.student, p.teacher) for p in pairs if p.student in s_circ and p.teacher in t_circ})
    s_hit = {s for s, _ in mapped}
    t_hit = sorted({t for _, t in mapped}, key=canonical_key)
    return {
        "mapped": mapped,
        "fraction_of_student": len(s_hit) / len(s_circ) if s_circ else 0.0,
        "teacher_covered": t_hit,
        "fraction_of_teacher": len(t_hit) / len(t_circ) if t_circ else 0.0,
    }


# --------------------------------------------------------------------------- the circuit diff
@dataclass
class CircuitDiff:
    """The teacher circuit read through the matching (student ids), next to the student's circuit.

    mapped: student components matched to a teacher-circuit component (the transferred circuit);
    kept: teacher-circuit components with a matched student component inside the student circuit;
    discarded: teacher-circuit components with none; new: student-circuit components matched to no
    teacher-circuit component. jaccard = |mapped ∩ student| / |mapped ∪ student|.
    """

    mapped: list[str]
    jaccard: float
    kept: list[str]
    discarded: list[str]
    new: list[str]


def circuit_diff(teacher_circuit: Iterable[str], student_circuit: Iterable[str],
                 pairs: Iterable[tuple[str, str]]) -> CircuitDiff:
    """pairs: (student, teacher) of the matching; any direction, a pair listed twice counts once."""
    t_circ, s_circ = set(teacher_circuit), set(student_circuit)
    partners: dict[str, set[str]] = {}
    for s, t in pairs:
        partners.setdefault(t, set()).add(s)
    mapped = set().union(*(partners.get(t, set()) for t in t_circ)) if t_circ else set()
    kept = {t for t in t_circ if partners.get(t, set()) & s_circ}
    return CircuitDiff(
        mapped=sorted(mapped, key=canonical_key), jaccard=jaccard(mapped, s_circ),
        kept=sorted(kept, key=canonical_key), discarded=sorted(t_circ - kept, key=canonical_key),
        new=sorted(s_circ - mapped, key=canonical_key),
    )


CIRCUIT_MIN_INCLUSION = 0.5  # a model's circuit: the components in at least half the resamples' circuits
STABLE_IN = 0.8  # inclusion frequency at or above which a component is stably in a model's circuit
STABLE_OUT = 0.2  # at or below which it is stably out


def consensus_components(freq: dict[str, float], min_inclusion: float = CIRCUIT_MIN_INCLUSION) -> list[str]:
    """The circuit found over resamples of the prompts: every component whose inclusion frequency is at
    least ``min_inclusion`` (a majority of the resamples' circuits by default), canonical order. One
    search on all prompts is one draw of a noisy procedure; the majority over draws is what a second
    prompt set would find again (docs/method.md §Method 7)."""
    return sorted((c for c, f in freq.items() if f >= min_inclusion), key=canonical_key)


def stable_diff(diff: CircuitDiff, teacher_freq: dict[str, float], student_freq: dict[str, float],
                pairs: Iterable[tuple[str, str]]) -> tuple[list[str], list[str], list[str], list[str]]:
    """Split the diff's discarded and new components by the stability of their inclusion over
    resamples of the prompts: a teacher component is *discarded* only if it is stably in the teacher's
    circuit and every student partner stably out of the student's; a student component is *new* only
    if it is stably in the student's circuit and every teacher partner stably out of the teacher's.
    Returns (discarded, discarded_unstable, new, new_unstable)."""
    t_partners: dict[str, set[str]] = {}
    s_partners: dict[str, set[str]] = {}
    for s, t in pairs:
        t_partners.setdefault(t, set()).add(s)
        s_partners.setdefault(s, set()).add(t)
    disc, disc_u, new, new_u = [], [], [], []
    for t in diff.discarded:
        stable = teacher_freq.get(t, 0) >= STABLE_IN and all(student_freq.get(s, 0) <= STABLE_OUT
                                                              for s in t_partners.get(t, ()))
        (disc if stable else disc_u).append(t)
    for s in diff.new:
        stable = student_freq.get(s, 0) >= STABLE_IN and all(teacher_freq.get(t, 0) <= STABLE_OUT
                                                              for t in s_partners.get(s, ()))
        (new if stable else new_u).append(s)
    return disc, disc_u, new, new_u


def random_sets(like: Iterable[str], n_layers: int, n_heads: int, n: int, seed: int) -> list[list[str]]:
    """``n`` random component sets with the head and MLP counts of ``like`` (null control 1)."""
    like = list(like)
    n_h = sum(parse_component(c).head is not None for c in like)
    heads = [head_id(l, h) for l in range(n_layers) for h in range(n_heads)]
    mlps = [mlp_id(l) for l in range(n_layers)]
    rng = np.random.default_rng(seed)
    return [sorted([heads[i] for i in rng.choice(len(heads), n_h, replace=False)]
                   + [mlps[i] for i in rng.choice(len(mlps), len(like) - n_h, replace=False)], key=canonical_key)
            for _ in range(n)]


def depth_layer(layer: int, n_from: int, n_to: int) -> int:
    """The layer at the same relative depth: centre of layer ``layer`` of ``n_from`` mapped into ``n_to``."""
    return min(n_to - 1, int((layer + 0.5) * n_to / n_from))


def depth_sets(teacher_circuit: Iterable[str], n_teacher_layers: int, n_layers: int, n_heads: int, n: int,
               seed: int) -> list[list[str]]:
    """Null control 2, the depth heuristic: each teacher-circuit component goes to the student layer at
    the same relative depth (an MLP to that layer's MLP, a head to a head of that layer drawn at random,
    since head indices carry no meaning across models); ``n`` draws. Collisions merge, as in a mapping."""
    rng = np.random.default_rng(seed)
    comps = [parse_component(c) for c in teacher_circuit]
    out = []
    for _ in range(n):
        s: set[str] = set()
        for c in comps:
            layer = depth_layer(c.layer, n_teacher_layers, n_layers)
            s.add(mlp_id(layer) if c.head is None else head_id(layer, int(rng.integers(n_heads))))
        out.append(sorted(s, key=canonical_key))
    return out


@dataclass
class NullSummary:
    method: str
    n: int
    mean: float
    ci95: tuple[float, float]
    p_value: float  # (1 + #{null >= observed}) / (n + 1)


def null_summary(method: str, observed: float, null: Sequence[float]) -> NullSummary:
    v = np.asarray(null, dtype=np.float64)
    lo, hi = np.percentile(v, [2.5, 97.5])
    return NullSummary(method, int(v.size), float(v.mean()), (float(lo), float(hi)),
                       float((1 + np.sum(v >= observed)) / (v.size + 1)))


MAX_CURVE_POINTS = 33  # circuit sizes evaluated per faithfulness curve (all of them in small models)


def curve_sizes(n_components: int) -> list[int]:
    """Circuit sizes of a faithfulness curve: every size 0..N when N < MAX_CURVE_POINTS, else that
    many sizes spread evenly (0 and N always in)."""
    if n_components + 1 <= MAX_CURVE_POINTS:
        return list(range(n_components + 1))
    return sorted({round(x) for x in np.linspace(0, n_components, MAX_CURVE_POINTS)})


@dataclass(frozen=True)
class FaithfulnessCurve:
    """The model's performance with only its k most influential components kept (everything else
    ablated), for growing k, as MIB scores node circuits (arXiv 2504.13151): faithfulness
    f(k) = (m(top-k) − m(∅)) / (m(all) − m(∅)); CPR = area under f over the size fraction k/N (higher:
    fewer components carry the task); CMD = area under |1 − f| (lower: closer to the full model)."""

    sizes: list[int]
    kept_pct: list[float]  # 100 · m(top-k) / m(all), the authors' completeness at each size
    faithfulness: list[float]
    cpr: float
    cmd: float


def faithfulness_curve(sizes: Sequence[int], scores: Sequence[float], n_components: int) -> FaithfulnessCurve:
    """``scores[i]``: the metric with the top ``sizes[i]`` components kept; sizes include 0 and N."""
    if not sizes or sizes[0] != 0 or sizes[-1] != n_components:
        raise ValueError("a faithfulness curve needs sizes from 0 to N")
    empty, full = scores[0], scores[-1]
    span = full - empty
    f = [(s - empty) / span if span != 0 else 1.0 for s in scores]
    x = np.asarray(sizes, dtype=np.float64) / max(n_components, 1)
    kept = [100.0 * s / full if full != 0 else float("nan") for s in scores]
    return FaithfulnessCurve(list(sizes), kept, f, float(np.trapezoid(f, x)),
                             float(np.trapezoid(np.abs(1.0 - np.asarray(f)), x)))
