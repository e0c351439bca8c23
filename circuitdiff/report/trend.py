"""A watch's trend report: one self-contained HTML page over its history (stdlib only).

What moved over training, checkpoint by checkpoint (x axis: the history's checkpoint order), as a
page a team lead puts on a screen:

- the alignment score with its 95% bootstrap band, the chance null's band (up to the top of its
  95% interval: a score inside it is no evidence of kept structure), the baseline checkpoint marked,
  regressions in red; every point links to its checkpoint's own report;
- the student's clean logit difference, with the line at 0 labelled (below it the student does not
  perform the task);
- influence drift: each student component's share of the total influence (influence / sum over
  components, the normalisation the alignment score uses) as a components x checkpoints heatmap,
  with the teacher's column (the share of the component's teacher partner);
- matched-pair changes: which student component's teacher partner appeared, vanished or changed
  since the previous compared checkpoint;
- every entry with its status, numbers, the rules that fired (their sentences) or why it failed,
  and a link to its job.

Charts are inline SVG with readable ticks and titled axes (circuitdiff.report.axes), there is no
script, and a Content-Security-Policy forbids loading anything: the page works offline, from a mail
attachment, and nothing a checkpoint name smuggles in runs. Links (``base_url`` + ``/v1/...``) are
plain navigation, not loads.
"""

from __future__ import annotations

import html
import re
from typing import Any

from .axes import nice_ticks, tick_label

W, H, PAD_L, PAD_R, PAD_T, PAD_B = 1200, 330, 84, 150, 16, 86
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
ZERO_LABEL = "0: below it, the\ntask is not performed"


def e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _fmt(x: float | None, nd: int = 3) -> str:
    return "—" if x is None else f"{x:.{nd}f}"


def _scale(lo: float, hi: float, a: float, b: float):
    span = (hi - lo) or 1.0
    return lambda v: a + (v - lo) / span * (b - a)


def _links(base_url: str, entry: dict) -> dict[str, str]:
    v1 = base_url.rstrip("/") + "/v1"
    job = entry.get("job_id")
    return {} if not job else {"report": f"{v1}/comparisons/{job}/report", "job": f"{v1}/comparisons/{job}"}


def _chart(title: str, y_title: str, entries: list[dict], values: list[float | None],
           band: list[list[float] | None] | None, marks: list[str], cls: str, base_url: str, *,
           chance: list[float | None] | None = None, zero_line: str | None = None,
           baseline: set[str] | None = None) -> str:
    """A line chart over checkpoints; ``marks[i]``: "regression" | "failed" | "" for each point.
    ``chance[i]``: the top of the chance null's 95% interval (a grey band below it); ``zero_line``:
    the label of a dashed line at 0; ``baseline``: checkpoint names drawn as the baseline."""
    names = [x["checkpoint"] for x in entries]
    n = len(names)
    pts = [v for v in values if v is not None] + [x for b in (band or []) if b for x in b]
    pts += [c for c in (chance or []) if c is not None]
    if zero_line is not None:
        pts.append(0.0)
    lo, hi, ticks = nice_ticks(min(pts), max(pts)) if pts else (0.0, 1.0, [0.0, 0.5, 1.0])
    x = (lambda i: PAD_L + (W - PAD_L - PAD_R) * (i + 0.5) / max(n, 1))
    y = _scale(lo, hi, H - PAD_B, PAD_T)
    out = [f'<svg class="chart {cls}" viewBox="0 0 {W} {H}" role="img" aria-label="{e(title)}">']
    for t in ticks:
        out.append(f'<line x1="{PAD_L}" x2="{W - PAD_R}" y1="{y(t):.1f}" y2="{y(t):.1f}" class="grid"/>'
                   f'<text x="{PAD_L - 8}" y="{y(t) + 4:.1f}" class="tick" text-anchor="end">{tick_label(t, ticks)}</text>')
    out.append(f'<rect x="{PAD_L}" y="{PAD_T}" width="{W - PAD_L - PAD_R}" height="{H - PAD_T - PAD_B}" class="frame"/>')
    mid = (PAD_T + H - PAD_B) / 2
    out.append(f'<text x="18" y="{mid:.1f}" class="axis-title" text-anchor="middle" '
               f'transform="rotate(-90 18 {mid:.1f})">{e(y_title)}</text>')
    out.append(f'<text x="{(PAD_L + W - PAD_R) / 2:.1f}" y="{H - 6}" class="axis-title" text-anchor="middle">'
               'checkpoint (in training order)</text>')
    if chance and any(c is not None for c in chance):
        top = [(x(i), y(c)) for i, c in enumerate(chance) if c is not None]
        if len(top) == 1:
            (cx, cy), half = top[0], (W - PAD_L - PAD_R) / max(n, 1) / 2
            top = [(cx - half, cy), (cx + half, cy)]
        poly = " ".join(f"{a:.1f},{b:.1f}" for a, b in [*top, (top[-1][0], y(lo)), (top[0][0], y(lo))])
        out.append(f'<polygon points="{poly}" class="chance"><title>chance: up to the top of the 95% interval of '
                   'the score with the correspondence broken</title></polygon>')
        out.append(f'<text x="{W - PAD_R + 8}" y="{top[-1][1] + 4:.1f}" class="legend-label chance-label">'
                   'chance (95% top)</text>')
    if zero_line is not None and lo <= 0 <= hi:
        first, _, rest = zero_line.partition("\n")
        out.append(f'<line x1="{PAD_L}" x2="{W - PAD_R}" y1="{y(0):.1f}" y2="{y(0):.1f}" class="zero"/>'
                   f'<text x="{W - PAD_R + 8}" y="{y(0) + 4:.1f}" class="legend-label zero-label">{e(first)}'
                   + (f'<tspan x="{W - PAD_R + 8}" dy="16">{e(rest)}</tspan>' if rest else "") + "</text>")
    for i, name in enumerate(names):
        if baseline and name in baseline:
            out.append(f'<line x1="{x(i):.1f}" x2="{x(i):.1f}" y1="{PAD_T}" y2="{H - PAD_B}" class="baseline"/>'
                       f'<text x="{x(i) + 4:.1f}" y="{PAD_T + 14}" class="baseline-label">baseline</text>')
    if band:
        upper = [(x(i), y(b[1])) for i, b in enumerate(band) if b]
        lower = [(x(i), y(b[0])) for i, b in enumerate(band) if b]
        if upper:
            poly = " ".join(f"{a:.1f},{b:.1f}" for a, b in upper + lower[::-1])
            out.append(f'<polygon points="{poly}" class="band"><title>95% interval of the score</title></polygon>')
    line = [(x(i), y(v)) for i, v in enumerate(values) if v is not None]
    if len(line) > 1:
        out.append('<polyline class="line" points="' + " ".join(f"{a:.1f},{b:.1f}" for a, b in line) + '"/>')
    for i, (entry, v) in enumerate(zip(entries, values)):
        name = entry["checkpoint"]
        out.append(f'<text x="{x(i):.1f}" y="{H - PAD_B + 16}" class="xlab" '
                   f'transform="rotate(25 {x(i):.1f} {H - PAD_B + 16})">{e(name)}</text>')
        link = _links(base_url, entry).get("report")
        if v is None:
            if marks[i] == "failed":
                out.append(f'<text x="{x(i):.1f}" y="{PAD_T + 30}" class="failed" text-anchor="middle">✕<title>'
                           f'{e(name)}: failed</title></text>')
            continue
        kind = marks[i] or "ok"
        dot = (f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="{7 if kind == "regression" else 5}" class="pt {kind}">'
               f'<title>{e(name)}: {v:.4g}{" (regression)" if kind == "regression" else ""}'
               f'{" — open its report" if link else ""}</title></circle>')
        out.append(f'<a href="{e(link)}" class="point">{dot}</a>' if link else dot)
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


def _heatmap(entries: list[dict], shares: list[dict[str, float] | None]) -> str:
    """Components x checkpoints, and first the teacher column: the share of the teacher component
    each student component is matched to in the latest compared checkpoint."""
    names = [x["checkpoint"] for x in entries]
    comps = sorted({c for s in shares if s for c in s}, key=_component_order)
    if not comps:
        return '<p class="empty">No compared checkpoint yet.</p>'
    last = next((x.get("detail") for x in reversed(entries) if x.get("detail")), None) or {}
    teacher_infl = last.get("teacher_influence") or {}
    t_total = sum(teacher_infl.values()) or 1.0
    partners = last.get("pairs") or {}
    vmax = max([v for s in shares if s for v in s.values()] + [v / t_total for v in teacher_infl.values()]) or 1.0
    head = "".join(f'<th scope="col">{e(n)}</th>' for n in names)
    rows = []
    for c in comps:
        partner = partners.get(c)
        if partner is not None and partner in teacher_infl:
            tv = teacher_infl[partner] / t_total
            tcell = (f'<td class="teacher" style="background:{_heat_colour(tv, vmax)}" title="teacher {e(partner)}: '
                     f'{tv:.3f}">{100 * tv:.0f} <small>{e(partner)}</small></td>')
        else:
            tcell = '<td class="teacher na">—</td>'
        cells = []
        for n, s in zip(names, shares):
            if s is None:
                cells.append('<td class="na">—</td>')
            else:
                v = s.get(c, 0.0)
                cells.append(f'<td style="background:{_heat_colour(v, vmax)}" title="{e(c)} @ {e(n)}: {v:.3f}">'
                             f'{100 * v:.0f}</td>')
        rows.append(f'<tr><th scope="row">{e(c)}</th>{tcell}{"".join(cells)}</tr>')
    return (f'<table class="heat" data-max="{vmax:.4f}"><caption>Share of the total influence (%): each student '
            'component at each checkpoint, and the teacher component it is matched to at the latest one</caption>'
            f'<thead><tr><th>student component</th><th class="teacher">teacher partner</th>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>')


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
        parts.append(f"<b>{e(r['rule'].replace('_', ' '))}</b>: {e(text)}")
    err = x.get("error")
    if err and x["status"] != "succeeded":
        parts.append(e(err.get("detail") or err.get("code") or "") + (f" <i>Fix: {e(err['fix'])}</i>" if err.get("fix") else ""))
    return "<br>".join(parts)


def _judgement(x: dict) -> str:
    if x.get("regression"):
        return '<span class="tag bad">regression</span>'
    if x.get("regression") is False:
        return '<span class="tag ok">ok</span>'
    return "—" if x["status"] in ("failed", "cancelled") else '<span class="tag">pending</span>'


def _row(x: dict, base_url: str) -> str:
    links = _links(base_url, x)
    job = (f'<a class="mono" href="{e(links["report"])}">report</a> · <a class="mono" href="{e(links["job"])}">'
           f'{e(x["job_id"])}</a>' if links else "—")
    ci = x.get("alignment_ci95")
    verdict = (x.get("verdict") or "").replace("_", " ") or "—"
    performs = "—" if x.get("student_performs_task") is None else ("yes" if x["student_performs_task"] else "no")
    base = f'<br><small>vs {e(x["baseline"])}</small>' if x.get("baseline") else ""
    return (f'<tr class="{"regression" if x.get("regression") else x["status"]}"><td>{e(x["checkpoint"])}</td>'
            f'<td>{e(x["status"])}</td><td class="num">{_fmt(x.get("alignment"))}</td>'
            f'<td class="num">{e(_fmt(ci[0]) + " – " + _fmt(ci[1])) if ci else "—"}</td>'
            f'<td class="num">{_fmt(x.get("chance_high"))}</td>'
            f'<td>{e(verdict)}</td><td class="num">{_fmt(x.get("student_logit_diff"), 2)}</td><td>{performs}</td>'
            f'<td>{_judgement(x)}{base}</td><td>{_reasons(x)}</td><td>{job}</td></tr>')


def render_trend(watch: dict, entries: list[dict], base_url: str = "") -> str:
    """The page for a watch record (``watches.store`` layout) and its history entries, in order.
    ``base_url``: where the API is, for the links to each checkpoint's job and report ("" gives
    paths, right when the page is opened from the API)."""
    spec = watch["spec"]
    names = [x["checkpoint"] for x in entries]
    ok = [x["status"] == "succeeded" and bool(x.get("detail")) for x in entries]
    marks = ["regression" if x.get("regression") else "failed" if x["status"] in ("failed", "cancelled") else ""
             for x in entries]
    align = [x.get("alignment") if ok[i] else None for i, x in enumerate(entries)]
    band = [x.get("alignment_ci95") if ok[i] else None for i, x in enumerate(entries)]
    chance = [x.get("chance_high") if ok[i] else None for i, x in enumerate(entries)]
    ld = [x.get("student_logit_diff") if ok[i] else None for i, x in enumerate(entries)]
    baseline = {x["baseline"] for x in entries if x.get("baseline")}
    if spec["baseline"] not in ("first", "previous"):
        baseline.add(spec["baseline"])
    elif spec["baseline"] == "first":
        first = next((x["checkpoint"] for x, good in zip(entries, ok) if good), None)
        baseline |= {first} if first else set()
    if spec["baseline"] == "previous":
        baseline = set()  # every checkpoint is the next one's baseline: a marker would say nothing
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
    n_failed = sum(x["status"] in ("failed", "cancelled") for x in entries)
    rows = "".join(_row(x, base_url) for x in entries)
    src = spec["checkpoints"]
    source = f'{e(src.get("directory") or src.get("hub"))} ({e(src.get("pattern") or src.get("revisions"))})'
    latest = next((x for x in reversed(entries) if x["status"] == "succeeded" and x.get("alignment") is not None), None)
    headline = ("no compared checkpoint yet" if latest is None else
                f'latest compared: <b>{e(latest["checkpoint"])}</b>, alignment <b>{_fmt(latest["alignment"])}</b>'
                + (f' ({e(latest["verdict"].replace("_", " "))})' if latest.get("verdict") else ""))
    return f"""<!doctype html>
<html lang="en"><head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>circuitdiff trend: {e(watch["name"])}</title>
<style>
body{{font:15px/1.5 system-ui,sans-serif;margin:24px 32px;color:#222}}
h1{{font-size:26px;margin:0 0 4px}} h2{{font-size:18px;margin:30px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}}
.meta{{color:#555;margin:2px 0}} .headline{{font-size:17px;margin:10px 0}}
.counts span{{display:inline-block;margin-right:18px;padding:4px 10px;border-radius:14px;background:#f1f3f4}}
.counts .bad{{background:#fde0dd;color:#a50f15}}
svg.chart{{width:100%;height:auto;display:block}}
.frame{{fill:none;stroke:#bbb}} .grid{{stroke:#eee}} .tick,.xlab{{font-size:13px;fill:#444}}
.axis-title{{font-size:14px;fill:#222;font-weight:600}} .legend-label{{font-size:13px;fill:#555}}
.zero{{stroke:#777;stroke-dasharray:6 4}} .chance{{fill:#999;fill-opacity:.22}}
.baseline{{stroke:#6a51a3;stroke-width:1.5;stroke-dasharray:3 3}} .baseline-label{{font-size:13px;fill:#6a51a3;font-weight:600}}
.band{{fill:#2166ac;fill-opacity:.18}} .line{{fill:none;stroke:#2166ac;stroke-width:2.5}}
.pt.ok{{fill:#2166ac}} .pt.regression{{fill:#d7301f;stroke:#fff;stroke-width:1.5}} text.failed{{fill:#b15928;font-size:18px}}
a.point circle{{cursor:pointer}} a.point:hover circle{{stroke:#111;stroke-width:2}}
table{{border-collapse:collapse;margin:8px 0;font-size:14px}} td,th{{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}}
thead th{{background:#f6f8fa}} td.num{{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}}
table.history{{width:100%}} table.heat td{{text-align:right;min-width:38px}} table.heat td.teacher{{border-right:3px solid #555}}
table.heat th.teacher{{border-right:3px solid #555}} table.heat small{{color:#333}}
tr.regression td{{background:#fde0dd}} tr.failed td,tr.cancelled td{{color:#8c4a12}}
.tag{{display:inline-block;padding:0 8px;border-radius:10px;background:#eee;font-size:13px}} .tag.ok{{background:#e5f2e5;color:#1a7f37}}
.tag.bad{{background:#d7301f;color:#fff}} .mono{{font-family:ui-monospace,monospace;font-size:13px}}
.legend span{{margin-right:18px}} .sw{{display:inline-block;width:12px;height:12px;border-radius:6px;margin-right:5px;vertical-align:-1px}}
.scroll{{overflow-x:auto}} .empty{{color:#666}}
</style></head>
<body>
<h1>Trend: {e(watch["name"])}</h1>
<p class="meta">Teacher <b>{e(spec["teacher"]["id"])}</b> · checkpoints {source} · baseline <b>{e(spec["baseline"])}</b>
 · task <b>{e(spec["comparison"].get("task", ""))}</b> · watch {e(watch["status"])}</p>
<p class="headline">{headline}</p>
<p class="counts" id="summary"><span>{len(entries)} checkpoint(s)</span><span class="{'bad' if n_reg else ''}">{n_reg} regression(s)</span><span>{n_failed} failed or refused</span></p>
<p class="legend"><span><i class="sw" style="background:#2166ac"></i>compared (click a point for its report)</span>
<span><i class="sw" style="background:#d7301f"></i>regression</span><span>✕ failed</span>
<span><i class="sw" style="background:#bbb"></i>chance: up to the top of its 95% interval</span>
<span style="color:#6a51a3">┆ baseline</span></p>
<h2>Alignment score (with its 95% interval)</h2>
{_chart("alignment score over checkpoints", "alignment score (0–1)", entries, align, band, marks, "alignment",
        base_url, chance=chance, baseline=baseline)}
<h2>Student clean logit difference</h2>
{_chart("student logit difference over checkpoints", "logit difference (logits)", entries, ld, None, marks,
        "logit-diff", base_url, zero_line=ZERO_LABEL, baseline=baseline)}
<h2>Influence drift</h2>
<div class="scroll">{_heatmap(entries, shares)}</div>
<h2>Matched-pair changes</h2>
{_pair_changes(names, pairs)}
<h2>Every checkpoint</h2>
<div class="scroll"><table class="history"><thead><tr><th>checkpoint</th><th>status</th><th>alignment</th><th>95% CI</th>
<th>chance (95% top)</th><th>verdict</th><th>student LD (logits)</th><th>performs task</th><th>judged</th>
<th>reasons</th><th>job</th></tr></thead>
<tbody>{rows}</tbody></table></div>
</body></html>
"""
