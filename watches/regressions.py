"""A watch's regression rules: one checkpoint's comparison judged against the baseline's.

- ``alignment_drop``: baseline alignment score minus this one, fired when >= the threshold;
- ``logit_diff_drop_pct``: 100 * (baseline LD - this LD) / baseline LD of the student's clean
  logit difference, fired when >= the threshold (only when the baseline's LD > 0: a percentage of
  a non-positive baseline means nothing);
- ``stops_performing``: the student does not perform the task (circuitdiff.analysis.performance)
  while the baseline did (or there is no baseline).

Each fired rule is one ``reasons`` item: ``message``, a sentence with rounded numbers a person reads
(and a webhook receiver can post as is), and the raw numbers behind it as fields. A failed job is never judged.
A comparison on a plain-text dataset has no logit difference and no "performs" verdict (null): the
rules that need them do not fire.
"""

from __future__ import annotations

from typing import Any


def metrics(result: dict[str, Any]) -> dict[str, Any]:
    """What the history keeps of a result.json (plus, for the trend report, per-component data)."""
    student = result["performance"]["student"]
    al = result["alignment"]
    chance = al.get("chance") or {}
    return {
        "verdict": al.get("verdict"),
        "alignment": al.get("score"),
        "alignment_ci95": al.get("ci95"),
        "chance_mean": chance.get("mean"),
        "chance_high": (chance.get("ci95") or [None, None])[1],  # the top of the chance null's 95% interval
        "student_logit_diff": student["logit_diff"],
        "student_performs_task": student["performs_task"],
        "influence": {c: v["influence"] for c, v in result["influence"]["student"].items()},
        "teacher_influence": {c: v["influence"] for c, v in result["influence"]["teacher"].items()},
        "pairs": {m["student"]: m["teacher"] for m in result["matches"] if m.get("matched")},
    }


def judge(current: dict[str, Any], baseline: dict[str, Any] | None, alerts: dict[str, Any]) -> list[dict[str, Any]]:
    reasons: list[dict[str, Any]] = []
    th = alerts.get("alignment_drop")
    if th is not None and baseline and baseline.get("alignment") is not None and current.get("alignment") is not None:
        drop = baseline["alignment"] - current["alignment"]
        if drop >= th:
            reasons.append({"rule": "alignment_drop", "baseline": baseline["alignment"], "value": current["alignment"],
                            "drop": round(drop, 6), "threshold": th,
                            "message": f"The alignment score fell by {drop:.3f} (from {baseline['alignment']:.3f} to "
                                       f"{current['alignment']:.3f}), at least the {th:g} this watch allows."})
    th = alerts.get("logit_diff_drop_pct")
    if (th is not None and baseline and baseline["student_logit_diff"] is not None
            and current["student_logit_diff"] is not None and baseline["student_logit_diff"] > 0):
        base, now = baseline["student_logit_diff"], current["student_logit_diff"]
        pct = 100.0 * (base - now) / base
        if pct >= th:
            reasons.append({"rule": "logit_diff_drop_pct", "baseline": base, "value": now,
                            "drop_pct": round(pct, 3), "threshold": th,
                            "message": f"The student's logit difference fell by {pct:.1f}% (from {base:.2f} to "
                                       f"{now:.2f}), at least the {th:g}% this watch allows."})
    if alerts.get("stops_performing", True) and current["student_performs_task"] is False:
        if baseline is None or baseline["student_performs_task"] is not False:
            ld = current["student_logit_diff"]
            since = "" if baseline is None else " (the baseline did)"
            reasons.append({"rule": "stops_performing", "baseline": None if baseline is None else True,
                            "value": False, "student_logit_diff": ld,
                            "message": "The student no longer performs the task" + since + ": its logit difference"
                                       + ("" if ld is None else f" is {ld:.2f},") + " not reliably above 0."})
    return reasons
