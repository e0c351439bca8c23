"""Circuit discovery by iterative node pruning (PAPER.md §Method 7, paper-notes §3.2).

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
logit difference) with every component not in ``kept`` ablated. Scores of candidate sets already
seen are reused, so the confirming last pass costs nothing when nothing changes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from ..vocabulary import canonical_key, head_id, mlp_id, parse_component

__all__ = ["ScoreFn", "PruneStep", "Circuit", "find_circuit", "pass_order", "jaccard", "circuit_overlap"]

ScoreFn = Callable[[frozenset[str]], float]
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
) -> Circuit:
    """Iterative node pruning.

    score: performance with exactly the components in the given set un-ablated.
    threshold: T, in percentage points of the full model's score.
    start: the initial candidate set (default: every head and, if ``mlps``, every MLP).
    full_score: the reference score (default: score of the full model); must be > 0, since the
        rule is relative to it.
    progress: called as ``progress(pass_index, n_evaluations)`` after each pass.
    """
    everything = pass_order(n_layers, n_heads, "forward", mlps=mlps)
    kept = set(everything if start is None else start)
    unknown = kept - set(everything)
    if unknown:
        raise ValueError(f"start contains components the model does not have: {sorted(unknown)}")
    memo: dict[frozenset[str], float] = {}

    def evaluate(candidate: frozenset[str]) -> float:
        if candidate not in memo:
            memo[candidate] = float(score(candidate))
        return memo[candidate]

    full = evaluate(frozenset(everything)) if full_score is None else float(full_score)
    if not full > 0:
        raise ValueError(f"the full model's score must be positive to prune relative to it, got {full}")

    trace: list[PruneStep] = []
    n_passes = 0
    for n_passes in range(1, max_passes + 1):
        direction: PassDirection = "backward" if n_passes % 2 == 1 else "forward"
        removed_any = False
        for comp in pass_order(n_layers, n_heads, direction, mlps=mlps):
            if comp not in kept:
                continue
            pct = 100.0 * evaluate(frozenset(kept - {comp})) / full
            drop = 100.0 - pct < threshold
            trace.append(PruneStep(n_passes, direction, comp, pct, drop))
            if drop:
                kept.discard(comp)
                removed_any = True
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
