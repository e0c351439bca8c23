"""A result's tables as CSV files a spreadsheet or pandas reads directly (the worker writes them
beside ``result.json``; ``Client.download(job_id, "influence.csv", path)`` fetches one).

Every column that carries a quantity names its unit in its header (``influence (logits)``, the
metric's units from ``result.metric``; ``share of total influence (0-1)``; ``similarity (linear_cka,
0-1)``), so a file read on its own says what its numbers are. Components use the report's ids
(``L{layer}H{head}``, ``L{layer}MLP``), rows in canonical component order.

- ``influence.csv``: one row per component of each model;
- ``matches.csv``: one row per pair in the alignment score;
- ``similarity_heads.csv`` / ``similarity_mlps.csv``: the similarity matrices, student components
  down, teacher components across (the first header cell says so and names the measure).
"""

from __future__ import annotations

import csv
import io
from typing import Any

from ..vocabulary import ROLES

NAMES = ("influence.csv", "matches.csv", "similarity_heads.csv", "similarity_mlps.csv")


def _text(rows: list[list[Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    for row in rows:
        w.writerow(["" if v is None else v for v in row])
    return buf.getvalue()


def units(r: dict[str, Any]) -> str:
    return (r.get("metric") or {}).get("units") or "logits"  # results before the metric field: logit difference


def influence_csv(r: dict[str, Any]) -> str:
    u = units(r)
    rows: list[list[Any]] = [["model", "component", "kind", f"influence ({u})", f"influence ci95 low ({u})",
                              f"influence ci95 high ({u})", f"signed change when ablated ({u})",
                              f"metric when ablated ({u})", "retained (% of clean)", "share of total influence (0-1)",
                              "exact"]]
    for role in ROLES:
        comps = (r.get("influence") or {}).get(role) or {}
        total = sum(float(c.get("influence") or 0.0) for c in comps.values())
        for cid, c in comps.items():
            ci = c.get("influence_ci95") or [None, None]
            rows.append([role, cid, "mlp" if cid.endswith("MLP") else "head", c.get("influence"), ci[0], ci[1],
                         c.get("delta"), c.get("value", c.get("logit_diff")), c.get("retained_pct"),
                         (float(c.get("influence") or 0.0) / total) if total > 0 else None, c.get("exact")])
    return _text(rows)


def matches_csv(r: dict[str, Any]) -> str:
    u = units(r)
    sim = r.get("similarity") or {}
    rows: list[list[Any]] = [["student", "teacher", "kind",
                              f"similarity (heads: {sim.get('head_method', 'head')}; mlps: {sim.get('mlp_method', 'mlp')})",
                              "matched (at or above the threshold)", f"student influence ({u})",
                              f"teacher influence ({u})", "confidence (share of resamples with this partner, 0-1)",
                              "runner-up teacher", "margin over runner-up (similarity)", "margin ci95 low",
                              "margin ci95 high", "near tie", "counted twice"]]
    for m in r.get("matches") or []:
        ci = m.get("margin_ci95") or [None, None]
        rows.append([m["student"], m["teacher"], m.get("kind"), m.get("similarity"), m.get("matched"),
                     m.get("student_influence"), m.get("teacher_influence"), m.get("confidence"),
                     m.get("runner_up"), m.get("margin"), ci[0], ci[1], m.get("ambiguous"), m.get("duplicated")])
    return _text(rows)


def matrix_csv(matrix: dict[str, Any] | None, method: str | None) -> str | None:
    if not matrix or not matrix.get("rows"):
        return None
    corner = f"student \\ teacher: {method or 'similarity'} (0-1)"
    rows = [[corner, *matrix["cols"]]]
    rows += [[name, *vals] for name, vals in zip(matrix["rows"], matrix["values"])]
    return _text(rows)


def csv_files(r: dict[str, Any]) -> dict[str, str]:
    """File name -> CSV text for a result.json dict; a matrix the result lacks is left out."""
    sim = r.get("similarity") or {}
    out = {"influence.csv": influence_csv(r), "matches.csv": matches_csv(r)}
    for name, key, method in (("similarity_heads.csv", "heads", sim.get("head_method")),
                              ("similarity_mlps.csv", "mlps", sim.get("mlp_method"))):
        text = matrix_csv(sim.get(key), method)
        if text is not None:
            out[name] = text
    return out
