"""What an alignment score means: the depth reference and the one verdict (docs/method.md §Method 5).

The alignment score A = (1/N) Σ_p S_p (1 − |Î_S,p − Î_T,p|) is dominated by the similarities S_p of
the matched pairs, and two models trained on the same data put the task in the same places (the
first layer's MLP, say) whether or not one was distilled from the other. The chance null
(:mod:`.chance`) breaks the student↔teacher correspondence but keeps that layout, so a model of the
same data that shares no lineage with the teacher is often "above chance". Two references separate
"solves the task with the same layout" from "kept the teacher's own components":

- **Depth reference**: the same formula with each pair's similarity replaced by what the student
  component's relative depth predicts: its mean similarity to the teacher components of its kind in
  the teacher layer at the same relative depth, ``floor((l_s + ½) / L_s · L_t)`` (DFA's
  ``heuristic_depth_mean`` control is the precedent). Influences and pairs are the score's.
- **Controls** (``spec.controls``): models of the student's size that were *not* distilled from this
  teacher, each compared with the teacher under the same resolved spec and data. Only a control
  tells how high a model of the same data scores without the teacher's components; the depth
  reference is a floor that any trained model clears easily (measured on the bundled GPT pair: 0.30-0.46
  for the distilled student and for two controls alike, whose scores are 0.88-0.94 and 0.57-0.66).

"Beyond" a reference means the score's interval lies above the reference's interval (point values
where a run has no interval). :data:`VERDICTS` is the closed set, in order of strength.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from typing import get_args

from ..vocabulary import Verdict, parse_component

VERDICTS: dict[str, str] = {
    "not_scored": "no alignment score (no pair to score)",
    "not_performing": "a model does not perform the task: its components' influences measure noise",
    "not_above_chance": "the score is within what the two models score with their correspondence broken",
    "same_layout": "above chance, but no better than the depth reference or a control: the student solves the "
                   "task with the same layout, not shown to use the teacher's own components",
    "beyond_depth_reference": "above chance and above the depth reference; no control that performs the task was "
                              "compared, so whether the student kept the teacher's own components is not established",
    "kept_teacher_components": "above chance, the depth reference and every control: the student kept the "
                               "teacher's own components",
}

assert tuple(VERDICTS) == get_args(Verdict), "VERDICTS and vocabulary.Verdict list the same verdicts, in order"


@dataclass(frozen=True)
class Reference:
    """What :func:`decide` reads of a reference: a score and its interval (the result's
    ``alignment.depth_reference`` and ``alignment.controls`` entries have the same two fields)."""

    score: float
    ci95: Sequence[float] | None


def depth_similarities(pairs: Sequence, head_sim: np.ndarray, mlp_sim: np.ndarray, student_layers: int,
                       teacher_layers: int, teacher_heads: int) -> list[float]:
    """Per pair, the student component's mean similarity to the teacher components of its kind in the
    teacher layer at its relative depth (``head_sim`` [Hs, Ht] row-major by layer, ``mlp_sim`` [Ls, Lt])."""
    out = []
    for p in pairs:
        layer = parse_component(p.student).layer
        lt = min(teacher_layers - 1, int((layer + 0.5) / student_layers * teacher_layers))
        if p.kind == "head":
            out.append(float(np.mean(head_sim[p.student_index, lt * teacher_heads:(lt + 1) * teacher_heads])))
        else:
            out.append(float(mlp_sim[p.student_index, lt]))
    return out


def _beyond(score: float, ci: Sequence[float] | None, ref: float, ref_ci: Sequence[float] | None) -> bool:
    low = ci[0] if ci else score
    high = ref_ci[1] if ref_ci else ref
    return low > high


def decide(score: float | None, ci: Sequence[float] | None, *, performing: bool, above_chance: bool,
           depth: Reference | None, controls: Sequence[Reference]) -> str:
    """The verdict (a key of :data:`VERDICTS`). ``controls``: the scores of the controls that perform
    the task (a control that does not cannot say what a working model of the data scores)."""
    if score is None:
        return "not_scored"
    if not performing:
        return "not_performing"
    if not above_chance:
        return "not_above_chance"
    if depth is not None and not _beyond(score, ci, depth.score, depth.ci95):
        return "same_layout"
    if any(not _beyond(score, ci, c.score, c.ci95) for c in controls):
        return "same_layout"
    return "kept_teacher_components" if controls else "beyond_depth_reference"


def reason(verdict: str, score: float | None, ci: Sequence[float] | None, chance_high: float, depth,
           controls: Sequence) -> str:
    """The verdict in one sentence with its numbers (``depth``: a result Reference; ``controls``:
    result ControlScores)."""
    if score is None:
        return VERDICTS[verdict]
    interval = f" [95% {ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""
    parts = [f"alignment {score:.3f}{interval}", f"chance up to {chance_high:.3f}"]
    if depth is not None:
        parts.append(f"depth reference {depth.score:.3f}")
    for c in controls:
        if c.score is not None:
            note = "" if c.performs_task is not False else ", does not perform the task: not used"
            parts.append(f"control {c.model} {c.score:.3f}{note}")
    return f"{VERDICTS[verdict]} ({'; '.join(parts)})"
