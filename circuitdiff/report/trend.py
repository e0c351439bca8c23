"""A watch's trend report: one self-contained HTML page over its history (stdlib only).

What moved over training, checkpoint by checkpoint (x axis: the history's checkpoint order):

- the alignment score with its 95% bootstrap band, regressions marked;
- the student's clean logit difference (the task is performed while it is clearly above 0);
- influence drift: each student component's share of the total influence (influence / sum over
  components, the normalisation the alignment score uses) as a components x checkpoints heatmap;
- matched-pair changes: which student component's teacher partner appeared, vanished or changed
  since the previous compared checkpoint;
- every entry with its status, numbers and the rules that fired.

Charts are inline SVG, there is no script, and a Content-Security-Policy forbids loading anything:
the page works offline, from a mail attachment, and nothing a checkpoint name smuggles in runs.
"""

from __future__ import annotations

import html
import re
from typing import Any

W, H, PAD_L, PAD_R, PAD_T, PAD_B = 760, 250, 56, 60, 14, 78
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


def e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _fmt(x: float | None, nd: int = 3) -> str:
    return "—" if x is None else f"{x:.{nd}f}"


def _scale(lo: float, hi: float, a: float, b: float):
    span = (hi - lo) or 1.0
    return lambda v: a + (v - lo) / span * (b - a)


def _chart(title: str, names: list[str], values: list[float | None], band: list[list[float] | None] | None,
           marks: list[str], zero_line: bool, cls: str) -> str:
    """A line chart over checkpoints; ``marks[i]``: "regression" | "failed" | "" for each point."""
    n = len(names)
    pts = [v for v in values if v is not None] + [x for b in (band or []) if b for x in b]
    if zero_line:
        pts.append(0.0)
    lo, hi = (min(pts), max(pts)) if pts else (0.0, 1.0)
    pad = (hi - lo) * 0.08 or 0.05
    lo, hi = lo - pad, hi + pad
    x = (lambda i: PAD_L + (W - PAD_L - PAD_R) * (i + 0.5) / max(n, 1))
    y = _scale(lo, hi, H - PAD_B, PAD_T)
    out = [f'<svg class="chart {cls}" viewBox="0 0 {W} {H}" role="img" aria-label="{e(title)}">',
           f'<rect x="{PAD_L}" y="{PAD_T}" width="{W - PAD_L - PAD_R}" height="{H - PAD_T - PAD_B}" class="frame"/>']
    for t in range(5):
        v = lo + (hi - lo) * t / 4
        out.append(f'<text x="{PAD_L - 6}" y="{y(v) + 4:.1f}" class="tick" text-anchor="end">{v:.3g}</text>')
    if zero_line and lo < 0 < hi:
        out.append(f'<line x1="{PAD_L}" x2="{W - PAD_R}" y1="{y(0):.1f}" y2="{y(0):.1f}" class="zero"/>')
    if band:
        upper = [(x(i), y(b[1])) for i, b in enumerate(band) if b]
        lower = [(x(i), y(b[0])) for i, b in enumerate(band) if b]
        if upper:
            poly = " ".join(f"{a:.1f},{b:.1f}" for a, b in upper + lower[::-1])
            out.append(f'<polygon points="{poly}" class="band"><title>95% interval</title></polygon>')
    line = [(x(i), y(v)) for i, v in enumerate(values) if v is not None]
    if len(line) > 1:
        out.append('<polyline class="line" points="' + " ".join(f"{a:.1f},{b:.1f}" for a, b in line) + '"/>')
    for i, (name, v) in enumerate(zip(names, values)):
        label = f'<text x="{x(i):.1f}" y="{H - PAD_B + 14}" class="xlab" transform="rotate(30 {x(i):.1f} {H - PAD_B + 14})">{e(name)}</text>'
        out.append(label)
        if v is None:
            if marks[i] == "failed":
                out.append(f'<text x="{x(i):.1f}" y="{PAD_T + 14}" class="failed" text-anchor="middle">✕<title>'
                           f'{e(name)}: failed</title></text>')
            continue
        kind = marks[i] or "ok"
        out.append(f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="{6 if kind == "regression" else 4}" class="pt {kind}">'
                   f'<title>{e(name)}: {v:.4g}{" (regression)" if kind == "regression" else ""}</title></circle>')
    out.append("</svg>")
    return "\n".join(out)


def _heat_colour(v: float, vmax: float) -> str:
    t = 0.0 if vmax <= 0 else min(1.0, v / vmax)
    r, g, b = (int(255 - t * (255 - c)) for c in (33, 102, 172))  # white -> blue
    return f"rgb({r},{g},{b})"


def _component_order(c: str) -> tuple:
    """L2H1 < L2H10 < L2MLP < L10H0: by layer, heads before the MLP, heads by number."""
    m = re.match(r"L(\d+)(?:H(\d+)|MLP)$", c)
    return (int(m[1]), 1 if m[2] is None else 0, int(m[2] or 0), c) if m else (1 << 30, 0, 0, c)


def _heatmap(names: list[str], shares: list[dict[str, float] | None]) -> str:
    comps = sorted({c for s in shares if s for c in s}, key=_component_order)
    if not comps:
        return '<p class="empty">No compared checkpoint yet.</p>'
    vmax = max(v for s in shares if s for v in s.values()) or 1.0
    head = "".join(f'<th scope="col">{e(n)}</th>' for n in names)
    rows = []
    for c in comps:
        cells = []
        for n, s in zip(names, shares):
            if s is None:
                cells.append('<td class="na">—</td>')
            else:
                v = s.get(c, 0.0)
                cells.append(f'<td style="background:{_heat_colour(v, vmax)}" title="{e(c)} @ {e(n)}: {v:.3f}">'
                             f'{100 * v:.0f}</td>')
        rows.append(f'<tr><th scope="row">{e(c)}</th>{"".join(cells)}</tr>')
    return (f'<table class="heat" data-max="{vmax:.4f}"><caption>Share of the student\'s total influence (%), '
            f'component x checkpoint</caption><thead><tr><th></th>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>')


def _pair_changes(names: list[str], pairs: list[dict[str, str] | None]) -> str:
    rows, prev, prev_name = [], None, None
    for n, p in zip(names, pairs):
        if p is None:
            continue
        if prev is not None:
            for s in sorted(set(prev) | set(p)):
                a, b = prev.get(s), p.get(s)
                if a != b:
                    what = "appeared" if a is None else "lost" if b is None else "changed"
                    rows.append(f"<tr><td>{e(prev_name)} → {e(n)}</td><td>{e(s)}</td><td>{e(a or '—')}</td>"
                                f"<td>{e(b or '—')}</td><td>{what}</td></tr>")
        prev, prev_name = p, n
    if not rows:
        return '<p class="empty">No matched pair changed between compared checkpoints.</p>'
    return ('<table class="pairs"><thead><tr><th>checkpoints</th><th>student</th><th>teacher before</th>'
            '<th>teacher after</th><th>change</th></tr></thead><tbody>' + "".join(rows) + "</tbody></table>")


def _reasons(x: dict) -> str:
    """The fired rules' sentences (older entries have none: their rule and rounded numbers); a
    refused or failed checkpoint's error and fix."""
    parts = []
    for r in x.get("reasons") or []:
        text = r.get("message") or ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                                             for k, v in r.items() if k != "rule")
        parts.append(f"<b>{e(r['rule'])}</b>: {e(text)}")
    err = x.get("error")
    if err and x["status"] != "succeeded":
        parts.append(e(err.get("detail") or err.get("code") or "") + (f" <i>Fix: {e(err['fix'])}</i>" if err.get("fix") else ""))
    return "<br>".join(parts)


def render_trend(watch: dict, entries: list[dict]) -> str:
    """The page for a watch record (``watches.store`` layout) and its history entries, in order."""
    spec = watch["spec"]
    names = [x["checkpoint"] for x in entries]
    ok = [x["status"] == "succeeded" and bool(x.get("detail")) for x in entries]
    marks = ["regression" if x.get("regression") else "failed" if x["status"] in ("failed", "cancelled") else ""
             for x in entries]
    align = [x.get("alignment") if ok[i] else None for i, x in enumerate(entries)]
    band = [x.get("alignment_ci95") if ok[i] else None for i, x in enumerate(entries)]
    ld = [x.get("student_logit_diff") if ok[i] else None for i, x in enumerate(entries)]
    shares: list[dict[str, float] | None] = []
    pairs: list[dict[str, str] | None] = []
    for x in entries:
        d = x.get("detail")
        if not d:
            shares.append(None)
            pairs.append(None)
            continue
        tot = sum(d["influence"].values()) or 1.0
        shares.append({c: v / tot for c, v in d["influence"].items()})
        pairs.append(d["pairs"])
    n_reg = sum(bool(x.get("regression")) for x in entries)
    rows = "".join(
        f'<tr class="{"regression" if x.get("regression") else x["status"]}"><td>{e(x["checkpoint"])}</td>'
        f'<td>{e(x["status"])}</td><td>{_fmt(x.get("alignment"))}</td>'
        f'<td>{e(_fmt(x["alignment_ci95"][0]) + " – " + _fmt(x["alignment_ci95"][1])) if x.get("alignment_ci95") else "—"}</td>'
        f'<td>{_fmt(x.get("student_logit_diff"))}</td>'
        f'<td>{"—" if x.get("student_performs_task") is None else ("yes" if x["student_performs_task"] else "no")}</td>'
        f'<td>{"regression" if x.get("regression") else "" if x.get("regression") is None else "ok"}</td>'
        f'<td>{_reasons(x)}</td><td><code>{e(x["job_id"] or "—")}</code></td></tr>'
        for x in entries)
    src = spec["checkpoints"]
    source = f'{e(src.get("directory") or src.get("hub"))} ({e(src.get("pattern") or src.get("revisions"))})'
    return f"""<!doctype html>
<html lang="en"><head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>circuitdiff trend: {e(watch["name"])}</title>
<style>
body{{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1000px;color:#222;padding:0 16px}}
h1{{font-size:22px}} h2{{font-size:17px;margin-top:28px}} .meta{{color:#555}}
svg.chart{{width:100%;height:auto;max-width:{W}px;display:block}}
.frame{{fill:none;stroke:#ccc}} .tick,.xlab{{font-size:10px;fill:#555}} .zero{{stroke:#999;stroke-dasharray:4 3}}
.band{{fill:#2166ac;fill-opacity:.18}} .line{{fill:none;stroke:#2166ac;stroke-width:2}}
.pt.ok{{fill:#2166ac}} .pt.regression{{fill:#d7301f;stroke:#fff;stroke-width:1.5}} .failed{{fill:#b15928;font-size:14px}}
table{{border-collapse:collapse;margin:8px 0;font-size:13px}} td,th{{border:1px solid #ddd;padding:3px 6px;text-align:left}}
table.heat td{{text-align:right;min-width:34px}} tr.regression td{{background:#fde0dd}} tr.failed td{{color:#b15928}}
.legend span{{margin-right:14px}} .sw{{display:inline-block;width:10px;height:10px;border-radius:5px;margin-right:4px}}
</style></head>
<body>
<h1>Trend: {e(watch["name"])}</h1>
<p class="meta">Teacher <b>{e(spec["teacher"]["id"])}</b> · checkpoints {source} · baseline <b>{e(spec["baseline"])}</b>
 · task <b>{e(spec["comparison"].get("task", ""))}</b> · status {e(watch["status"])} ·
 <span id="summary">{len(entries)} compared checkpoint(s), {n_reg} regression(s)</span></p>
<p class="legend"><span><i class="sw" style="background:#2166ac"></i>compared</span>
<span><i class="sw" style="background:#d7301f"></i>regression</span><span>✕ failed job</span></p>
<h2>Alignment score (95% band)</h2>
{_chart("alignment score over checkpoints", names, align, band, marks, False, "alignment")}
<h2>Student clean logit difference</h2>
{_chart("student logit difference over checkpoints", names, ld, None, marks, True, "logit-diff")}
<h2>Influence drift</h2>
{_heatmap(names, shares)}
<h2>Matched-pair changes</h2>
{_pair_changes(names, pairs)}
<h2>Every checkpoint</h2>
<table class="history"><thead><tr><th>checkpoint</th><th>status</th><th>alignment</th><th>95% CI</th>
<th>student LD</th><th>performs task</th><th>verdict</th><th>reasons</th><th>job</th></tr></thead>
<tbody>{rows}</tbody></table>
</body></html>
"""
