"""Numbers the report derives from a result, and the plain-language reading of them.

Everything here is computed from ``result.json`` alone (no torch), so a report can be re-rendered
from a stored result. Drops follow docs/method.md §Method 6: m = 100 - clamp(retained %, 0, 100).
"""

from __future__ import annotations

from ..analysis.alignment import normalised_influence
from ..analysis.robustness import drops_from_retained
from ..result import ComparisonResult
from ..vocabulary import ROLES

SIDES = ROLES

# Reference points for the sentence (docs/method.md, headline table): distilled pairs score 0.82-0.94,
# the non-distilled control pair (GPT-2 vs DistilBERT) 0.72.
PAPER_DISTILLED_MIN = 0.82
PAPER_CONTROL = 0.725


def component_drops(r: ComparisonResult, side: str) -> dict[str, float] | None:
    """Percentage drop from full performance per component (circuitdiff.analysis.robustness); None
    when the model does not perform the task (its retained % is undefined or noise)."""
    if not r.performance[side].performs_task:
        return None
    retained = {cid: c.retained_pct for cid, c in r.influence[side].items()}
    if any(v is None for v in retained.values()):
        return None
    return dict(zip(retained, (float(m) for m in drops_from_retained(list(retained.values())))))


def influence_shares(r: ComparisonResult) -> tuple[list[float], list[float]]:
    """Î_S and Î_T of every pair in ``r.matches`` (circuitdiff.analysis.alignment: I / ΣI over the
    pair list, duplicates included; uniform when a model's influences sum to 0)."""
    if not r.matches:
        return [], []
    return ([float(x) for x in normalised_influence([m.student_influence for m in r.matches])],
            [float(x) for x in normalised_influence([m.teacher_influence for m in r.matches])])


def fmt(x: float | None, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def fmt_ci(ci: list[float] | None, digits: int = 3) -> str:
    return "" if not ci else f"[{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


def fmt_params(n: int) -> str:
    for unit, div in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= div:
            return f"{n / div:.2f}{unit}"
    return str(n)


def matched_counts(r: ComparisonResult, kind: str) -> tuple[int, int]:
    """(pairs at or above the threshold, all pairs) for one component type, duplicates excluded."""
    pairs = [m for m in r.matches if m.kind == kind and not m.duplicated]
    return sum(m.matched for m in pairs), len(pairs)


def weak_performance(r: ComparisonResult, side: str) -> list[str]:
    """Why a model that passes the LD > 0 test still performs the task only weakly (empty: it does not)."""
    p = r.performance[side]
    why = []
    if p.logit_diff is None or p.logit_diff_std is None or p.accuracy is None:  # plain texts: no answers
        return why
    # LD within two standard errors of 0: "performs the task" only by the sign of noise.
    sem = p.logit_diff_std / max(1, r.task.n_prompts) ** 0.5
    if 0 < p.logit_diff < 2 * sem:
        why.append(f"its logit difference {p.logit_diff:.3f} ± {p.logit_diff_std:.3f} over "
                   f"{r.task.n_prompts} prompts is not clearly above 0")
    if p.logit_diff > 0 and p.accuracy < 0.5:
        why.append(f"it ranks the answer first on only {p.accuracy:.0%} of prompts")
    return why


def needs_caution(r: ComparisonResult) -> bool:
    """Either model fails or only weakly performs the task, or the score is not above chance: the score
    should not be read at face value."""
    not_above = r.alignment.chance is not None and not r.alignment.above_chance
    return not_above or any(r.performance[s].performs_task is False or weak_performance(r, s) for s in SIDES)


UNSTABLE_CONFIDENCE = 0.5  # the partner changes in half the resamples or more


def unstable_matches(r: ComparisonResult) -> list:
    """Matches whose partner is chosen in fewer than half of the bootstrap resamples."""
    return [m for m in r.matches
            if not m.duplicated and m.confidence is not None and m.confidence < UNSTABLE_CONFIDENCE]


def _verdict_sentence(r: ComparisonResult) -> str:
    """What the verdict says of this pair (circuitdiff.analysis.verdict), with its references."""
    a, s, t = r.alignment, r.models["student"].id, r.models["teacher"].id
    ci = f" (95% CI {a.ci95[0]:.3f}–{a.ci95[1]:.3f})" if a.ci95 else ""
    depth = "" if a.depth_reference is None else f"; what relative depth alone predicts: {a.depth_reference.score:.3f}"
    used = [c for c in a.controls if c.score is not None and c.performs_task is not False]
    controls = "".join(f"; {c.model}, never distilled from the teacher: {c.score:.3f}" for c in used)
    head = {
        "kept_teacher_components": f"{s} kept {t}'s own components on {r.task.name}: its alignment {a.score:.3f}{ci} "
                                   f"is above chance, the depth reference and every control",
        "beyond_depth_reference": f"{s} aligns with {t} on {r.task.name} above chance and above what relative depth "
                                  f"alone predicts ({a.score:.3f}{ci}), but no control that performs the task was "
                                  "compared, so this does not show that it kept the teacher's own components",
        "same_layout": f"{s} solves {r.task.name} with {t}'s layout, but its alignment {a.score:.3f}{ci} is no better "
                       "than a model that was not distilled from the teacher (or than relative depth alone) scores: "
                       "it is not shown to use the teacher's own components",
    }[a.verdict]
    return head + depth + controls + "."


def interpretation(r: ComparisonResult) -> list[str]:
    """Sentences that say what the numbers mean, in the order a reader needs them.

    The first sentence is the verdict; it refuses to read an alignment score as evidence of shared
    circuitry when either model fails the task, because influences around a failing baseline
    measure noise (docs/design.md, "does not perform the task"), or when the score is no higher than the
    same two models score with their correspondence broken (circuitdiff.analysis.chance).
    """
    t, s = r.models["teacher"].id, r.models["student"].id
    task = r.task.name
    failing = [side for side in SIDES if r.performance[side].performs_task is False]
    a = r.alignment
    out: list[str] = []
    if a.verdict in ("same_layout", "beyond_depth_reference", "kept_teacher_components"):
        out.append(_verdict_sentence(r))
    if failing:
        who = " and ".join(f"the {side} ({r.models[side].id})" for side in failing)
        verb = "do" if len(failing) > 1 else "does"
        out.append(
            f"Read with care: {who} {verb} not perform the {task} task (clean logit difference not above 0 within its 95% interval), "
            f"so its component influences are measured around a failing baseline and the alignment "
            f"score{'' if a.score is None else f' of {a.score:.3f}'} says little about whether the student kept the teacher's circuit."
        )
    elif a.score is None:
        out.append(f"No alignment score was computed for {s} against {t} on {task}.")
    elif a.chance is not None and not a.above_chance:
        out.append(
            f"Not aligned beyond chance: the alignment score {a.score:.3f} is within what {s} and {t} score when "
            f"the correspondence between their components is broken (chance mean {a.chance.mean:.3f}, 95% up to "
            f"{a.chance.ci95[1]:.3f}, p = {a.chance.p_value:.3g}), so it is no evidence that the student kept the "
            f"teacher's computation on {task}: components that all look alike score high whatever they do."
        )
    elif a.verdict is None:  # results before schema 8: the score's own reading
        if a.score >= 0.9:
            level = "closely follows"
        elif a.score >= PAPER_DISTILLED_MIN:
            level = "largely follows"
        elif a.score > PAPER_CONTROL:
            level = "only partly follows"
        else:
            level = "does not follow"
        ci = f" (95% CI {a.ci95[0]:.3f}–{a.ci95[1]:.3f})" if a.ci95 else ""
        chance = ("" if a.chance is None else
                  f", above chance (the same models with their correspondence broken score {a.chance.mean:.3f}, "
                  f"95% up to {a.chance.ci95[1]:.3f}; p = {a.chance.p_value:.3g})")
        out.append(
            f"The student {s} {level} the teacher {t}'s internal computation on {task}: alignment "
            f"{a.score:.3f}{ci}{chance}, where 1 means every student component has a teacher counterpart with the "
            f"same attention and the same share of influence. For scale, the paper's distilled pairs score "
            f"{PAPER_DISTILLED_MIN:.2f}–0.94 and its non-distilled control pair {PAPER_CONTROL:.2f}."
        )
    for side in SIDES:
        why = weak_performance(r, side)
        if why and side not in failing:
            out.append(f"The {side} performs the task only weakly: {' and '.join(why)}; its influences are "
                       f"small effects around a weak baseline.")
    hm, hn = matched_counts(r, "head")
    mm, mn = matched_counts(r, "mlp")
    if hn or mn:
        out.append(
            f"{hm} of {hn} head pairs and {mm} of {mn} MLP pairs reach the similarity thresholds "
            f"({r.spec.get('head_threshold', '?')} / {r.spec.get('mlp_threshold', '?')}); mean similarity of all pairs "
            f"{a.mean_similarity:.3f}."
        )
    rt, rs = r.robustness.teacher, r.robustness.student
    if rt is not None and rs is not None:
        c = r.robustness.compression_ratio
        if rs.mean_drop > rt.mean_drop:
            trend = "more brittle than"
        elif rs.mean_drop < rt.mean_drop:
            trend = "less brittle than"
        else:
            trend = "as brittle as"
        ci = r.robustness.delta_mean_drop_ci95
        hedge, seems = "", "is"
        if ci and ci[0] <= 0 <= ci[1]:
            seems = "looks"
            hedge = (f" The difference is not significant: its 95% CI [{ci[0]:.1f}, {ci[1]:.1f}] points includes 0 "
                     f"(few components, or few prompts).")
        out.append(
            f"With {c:.0%} fewer parameters, the student {seems} {trend} the teacher: removing one of its components "
            f"costs {rs.mean_drop:.1f}% of performance on average (teacher {rt.mean_drop:.1f}%), severity "
            f"{rs.severity:.3f} vs {rt.severity:.3f}.{hedge}"
        )
    worst = largest_mismatch(r)
    if worst is not None:
        m, ns, nt = worst
        out.append(
            f"The largest influence mismatch is student {m.student} ↔ teacher {m.teacher} (similarity {m.similarity:.2f}): "
            f"{ns:.0%} of the student's influence against {nt:.0%} of the teacher's, the largest penalty in the score."
        )
    return out


def largest_mismatch(r: ComparisonResult):
    """(pair, Î_S, Î_T) of the pair with the largest penalty S·|Î_S − Î_T| (docs/method.md §Method 5), or
    None when no pair differs by 5 points of influence share."""
    ms = r.matches
    if not ms or sum(m.student_influence for m in ms) <= 0 or sum(m.teacher_influence for m in ms) <= 0:
        return None
    shares_s, shares_t = influence_shares(r)
    # The pair's penalty in A is S·|Î_S − Î_T|: the largest one is where the score is lost.
    i = max(range(len(ms)), key=lambda i: ms[i].similarity * abs(shares_s[i] - shares_t[i]))
    ns, nt = shares_s[i], shares_t[i]
    return (ms[i], ns, nt) if abs(ns - nt) >= 0.05 else None
