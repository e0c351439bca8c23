"""Two results side by side: what changed from result A to result B (docs/method.md §Method 5 for
what each number means). Typical use: two students of one teacher (two distillation recipes, two
checkpoints, two seeds). Works on result.json dicts of any schema (fields an older result lacks are
reported as missing, never guessed); numpy-free, so the API can answer it.

- **teacher**: whether both compare against the same teacher (same id and the same weights, by
  sha256 or hub revision). With different teachers the scores measure agreement with two different
  references: the diff says so before anything else.
- **score**: B − A with a 95% interval for the difference. Two results of the very same comparison
  (same models by weights, same prompts, same resolved spec) differ by exactly 0 and the interval is
  [0, 0]. Otherwise each result's interval gives its standard error (width / 2·1.96) and the
  difference's interval is the normal one with the two errors added in quadrature, as for two
  independent estimates: conservative when both ran on the same prompts (their errors are then
  positively correlated, which would narrow a paired interval).
- **verdict** and **chance**: each result's verdict (circuitdiff.analysis.verdict, weakest first) and
  chance null (its mean and the top of its 95% interval), the margin of the score above that top,
  and how both moved.
- **influence**: each component's share of its model's total influence (influence / sum, the
  normalisation the score uses) in A and in B and the difference, for the students (and the
  teachers); a component only one model has counts 0 in the other.
- **matches**: student components whose teacher partner changed (or that gained or lost one).
- **circuits**: Jaccard overlap of A's and B's circuits, per role, when both results found circuits.
"""

from __future__ import annotations

import math
from typing import Any

from .verdict import VERDICTS

Z95 = 1.959963984540054
ROLES = ("teacher", "student")
IGNORED_SPEC = ("device",)  # where a comparison ran does not change what it measures


def _weights(model: dict[str, Any]) -> str | None:
    """What identifies a model's weights: the sha256 of its files, else its hub revision."""
    return model.get("sha256") or (f"{model.get('id')}@{model['revision']}" if model.get("revision") else None)


def _side(r: dict[str, Any]) -> dict[str, Any]:
    a, m, t = r.get("alignment") or {}, r.get("models") or {}, r.get("task") or {}
    chance = a.get("chance") or {}
    return {
        "teacher": (m.get("teacher") or {}).get("id"), "student": (m.get("student") or {}).get("id"),
        "task": t.get("name"), "n_prompts": t.get("n_prompts"), "created_at": r.get("created_at"),
        "schema_version": r.get("schema_version"), "score": a.get("score"), "ci95": a.get("ci95"),
        "verdict": a.get("verdict"), "verdict_reason": a.get("verdict_reason"),
        "chance_mean": chance.get("mean"), "chance_high": (chance.get("ci95") or [None, None])[1],
        "above_chance": a.get("above_chance"),
    }


def same_comparison(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Both results measured the same thing: same weights on both sides, same prompts, same spec."""
    def spec(r):
        return {k: v for k, v in (r.get("spec") or {}).items() if k not in IGNORED_SPEC}

    models_a, models_b = a.get("models") or {}, b.get("models") or {}
    same_models = all(_weights(models_a.get(x) or {}) is not None
                      and _weights(models_a.get(x) or {}) == _weights(models_b.get(x) or {}) for x in ROLES)
    same_prompts = (a.get("task") or {}).get("dataset_sha256") == (b.get("task") or {}).get("dataset_sha256")
    return same_models and same_prompts and spec(a) == spec(b)


def teacher_relation(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    ta, tb = (a.get("models") or {}).get("teacher") or {}, (b.get("models") or {}).get("teacher") or {}
    wa, wb = _weights(ta), _weights(tb)
    same = wa is not None and wa == wb
    if same:
        note = f"same teacher: both compare against {ta.get('id')} (the same weights)"
    elif ta.get("id") == tb.get("id"):
        note = (f"different teachers: both name {ta.get('id')}, but its weights differ between the two runs; "
                "the scores measure agreement with two different references")
    else:
        note = (f"different teachers: A compares against {ta.get('id')}, B against {tb.get('id')}; the scores "
                "measure agreement with two different references")
    return {"same": same, "a": ta.get("id"), "b": tb.get("id"), "a_weights": wa, "b_weights": wb, "note": note}


def score_difference(a: dict[str, Any], b: dict[str, Any], identical: bool) -> dict[str, Any]:
    sa, sb = _side(a), _side(b)
    out: dict[str, Any] = {"a": sa["score"], "b": sb["score"], "difference": None, "ci95": None, "method": None}
    if sa["score"] is None or sb["score"] is None:
        out["method"] = "a result has no alignment score"
        return out
    d = sb["score"] - sa["score"]
    out["difference"] = d
    if identical:
        out["ci95"] = [d, d]
        out["method"] = "the same comparison twice (same weights, prompts and spec): no sampling difference"
    elif sa["ci95"] and sb["ci95"]:
        se = math.hypot(*((ci[1] - ci[0]) / (2 * Z95) for ci in (sa["ci95"], sb["ci95"])))
        out["ci95"] = [d - Z95 * se, d + Z95 * se]
        out["method"] = ("normal interval from each result's 95% interval, errors added in quadrature as for "
                         "independent estimates (conservative when both ran on the same prompts)")
        out["excludes_zero"] = not (out["ci95"][0] <= 0 <= out["ci95"][1])
    else:
        out["method"] = "no interval: a result was run without bootstrap resamples"
    return out


def verdict_change(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    sa, sb = _side(a), _side(b)
    order = list(VERDICTS)
    va, vb = sa["verdict"], sb["verdict"]
    if va is None or vb is None:
        direction = "unknown"  # a result of a schema before verdicts
    else:
        step = order.index(vb) - order.index(va)
        direction = "same" if step == 0 else "stronger" if step > 0 else "weaker"
    margin = lambda s: None if s["score"] is None or s["chance_high"] is None else s["score"] - s["chance_high"]
    ma, mb = margin(sa), margin(sb)
    return {
        "a": va, "b": vb, "changed": va != vb, "direction": direction,
        "a_reason": sa["verdict_reason"], "b_reason": sb["verdict_reason"],
        "chance": {"a_mean": sa["chance_mean"], "b_mean": sb["chance_mean"], "a_high": sa["chance_high"],
                   "b_high": sb["chance_high"], "a_margin": ma, "b_margin": mb,
                   "margin_difference": None if ma is None or mb is None else mb - ma,
                   "a_above": sa["above_chance"], "b_above": sb["above_chance"]},
    }


def shares(r: dict[str, Any], role: str) -> dict[str, float]:
    """Each component's share of the model's total influence."""
    infl = {c: float(v.get("influence") or 0.0) for c, v in ((r.get("influence") or {}).get(role) or {}).items()}
    total = sum(infl.values())
    return {c: (v / total if total > 0 else 0.0) for c, v in infl.items()}


def influence_changes(a: dict[str, Any], b: dict[str, Any], role: str) -> list[dict[str, Any]]:
    """Every component of either model, largest change in share first."""
    sa, sb = shares(a, role), shares(b, role)
    rows = []
    for c in set(sa) | set(sb):
        x, y = sa.get(c), sb.get(c)
        rows.append({"component": c, "a": x, "b": y, "difference": (y or 0.0) - (x or 0.0),
                     "in": "both" if x is not None and y is not None else "a" if y is None else "b"})
    return sorted(rows, key=lambda r: (-abs(r["difference"]), r["component"]))


def partner_changes(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    def partners(r):
        return {m["student"]: m["teacher"] for m in r.get("matches") or [] if m.get("matched", True)}

    pa, pb = partners(a), partners(b)
    changed = []
    for s in sorted(set(pa) | set(pb)):
        x, y = pa.get(s), pb.get(s)
        if x != y:
            changed.append({"student": s, "a": x, "b": y,
                            "change": "gained" if x is None else "lost" if y is None else "changed"})
    return {"changed": changed, "n_changed": len(changed), "n_same": sum(pa.get(s) == pb.get(s) for s in pa if s in pb)}


def jaccard(x: set[str], y: set[str]) -> float:
    return 1.0 if not x and not y else len(x & y) / len(x | y)


def circuit_overlap(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    ca, cb = a.get("circuits") or {}, b.get("circuits") or {}
    out: dict[str, Any] = {}
    for role in ROLES:
        x, y = ca.get(role), cb.get(role)
        if x and y:
            out[f"{role}_jaccard"] = jaccard(set(x["components"]), set(y["components"]))
            out[f"{role}_only_a"] = sorted(set(x["components"]) - set(y["components"]))
            out[f"{role}_only_b"] = sorted(set(y["components"]) - set(x["components"]))
        else:
            out[f"{role}_jaccard"] = None
            lacking = [n for n, c, r in (("A", x, ca), ("B", y, cb)) if not c and r]
            if lacking:
                out[f"{role}_missing"] = "; ".join(
                    f"{n} has no {role} circuit" + (f" ({r['note']})" if r.get("note") else "")
                    for n, r in ((n, ca if n == "A" else cb) for n in lacking))
    missing = [n for n, c in (("A", ca), ("B", cb)) if not c]
    out["note"] = (f"result {' and '.join(missing)} found no circuits (run with circuits)" if missing else None)
    return out


def diff_results(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """What changed from result ``a`` to result ``b`` (both result.json dicts); B − A throughout."""
    identical = same_comparison(a, b)
    same_prompts = ((a.get("task") or {}).get("dataset_sha256") is not None
                    and (a.get("task") or {}).get("dataset_sha256") == (b.get("task") or {}).get("dataset_sha256"))
    return {
        "a": _side(a), "b": _side(b),
        "teacher": teacher_relation(a, b),
        "same_comparison": identical,
        "same_prompts": same_prompts,
        "score": score_difference(a, b, identical),
        "verdict": verdict_change(a, b),
        "influence": {role: influence_changes(a, b, role) for role in ROLES},
        "matches": partner_changes(a, b),
        "circuits": circuit_overlap(a, b),
    }
