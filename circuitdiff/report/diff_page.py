"""The A/B page: two results side by side (circuitdiff.analysis.diff), one self-contained HTML file.

Read top to bottom: whether the two share a teacher (said first, in a coloured banner), the score of
each with its interval against its chance null and the difference with its interval, the verdicts,
the components whose share of the influence moved most (the rest folded), the matches that changed
partner, and the circuits' overlap. Inline SVG and CSS, no script, nothing loaded: the same
Content-Security-Policy as the trend report.
"""

from __future__ import annotations

import html
from typing import Any

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
TOP = 12  # component rows shown before the fold


def e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def num(x: float | None, nd: int = 3, signed: bool = False) -> str:
    if x is None:
        return "—"
    return f"{x:+.{nd}f}" if signed else f"{x:.{nd}f}"


def pct(x: float | None, signed: bool = False) -> str:
    if x is None:
        return "—"
    return f"{100 * x:+.1f} pp" if signed else f"{100 * x:.1f}%"


def label(v: str | None) -> str:
    return "—" if not v else v.replace("_", " ")


def _intervals(d: dict[str, Any]) -> str:
    """Both scores with their 95% intervals and the top of each chance null, on one axis."""
    W, H, L, R = 900, 170, 60, 30
    rows = [("A", d["a"]), ("B", d["b"])]
    xs = [v for _, s in rows for v in ([s["score"]] + (s["ci95"] or []) + [s["chance_high"], s["chance_mean"]])
          if v is not None]
    if not xs:
        return '<p class="empty">Neither result has an alignment score.</p>'
    lo, hi = min(xs), max(xs)
    pad = max((hi - lo) * 0.1, 0.01)
    lo, hi = max(0.0, lo - pad), min(1.0, hi + pad) if hi <= 1 else hi + pad
    x = lambda v: L + (v - lo) / ((hi - lo) or 1) * (W - L - R)
    out = [f'<svg class="ab" viewBox="0 0 {W} {H}" role="img" aria-label="alignment score of A and B with '
           f'95% intervals and chance">']
    for t in range(6):
        v = lo + (hi - lo) * t / 5
        out.append(f'<line x1="{x(v):.1f}" x2="{x(v):.1f}" y1="14" y2="{H - 46}" class="grid"/>'
                   f'<text x="{x(v):.1f}" y="{H - 28}" class="tick" text-anchor="middle">{v:.3f}</text>')
    out.append(f'<text x="{(L + W - R) / 2}" y="{H - 6}" class="axis" text-anchor="middle">alignment score '
               '(dot: the score; bar: its 95% interval; grey band: up to the top of the chance null\'s 95% interval)'
               '</text>')
    for i, (name, s) in enumerate(rows):
        y = 38 + i * 44
        out.append(f'<text x="{L - 10}" y="{y + 5}" class="rowlab" text-anchor="end">{name}</text>')
        if s["chance_high"] is not None:
            out.append(f'<rect x="{x(lo):.1f}" y="{y - 13}" width="{x(s["chance_high"]) - x(lo):.1f}" height="26" '
                       f'class="chance"><title>{name}: chance up to {s["chance_high"]:.3f}</title></rect>')
        if s["ci95"]:
            a, b = s["ci95"]
            out.append(f'<line x1="{x(a):.1f}" x2="{x(b):.1f}" y1="{y}" y2="{y}" class="ci {name}"/>')
        if s["score"] is not None:
            out.append(f'<circle cx="{x(s["score"]):.1f}" cy="{y}" r="6" class="pt {name}"><title>{name}: '
                       f'{s["score"]:.4f}</title></circle>')
    out.append("</svg>")
    return "".join(out)


def _shares(rows: list[dict[str, Any]], role: str) -> str:
    if not rows:
        return f'<p class="empty">No {role} influences in either result.</p>'
    vmax = max(max(r["a"] or 0, r["b"] or 0) for r in rows) or 1.0

    def bar(v: float | None, cls: str) -> str:
        w = 0 if v is None else 100 * v / vmax
        return f'<span class="bar {cls}" style="width:{w:.1f}%"></span>'

    def row(r: dict[str, Any]) -> str:
        only = {"a": " (A only)", "b": " (B only)"}.get(r["in"], "")
        sign = "up" if r["difference"] > 0.0005 else "down" if r["difference"] < -0.0005 else "flat"
        return (f'<tr><th scope="row">{e(r["component"])}{only}</th><td class="num">{pct(r["a"])}</td>'
                f'<td class="num">{pct(r["b"])}</td><td class="num {sign}">{pct(r["difference"], True)}</td>'
                f'<td class="bars">{bar(r["a"], "A")}{bar(r["b"], "B")}</td></tr>')

    head = ('<thead><tr><th>component</th><th>share in A</th><th>share in B</th><th>B − A</th>'
            '<th>A (upper) and B (lower)</th></tr></thead>')
    top, rest = rows[:TOP], rows[TOP:]
    out = f'<table class="shares {role}">{head}<tbody>{"".join(row(r) for r in top)}</tbody></table>'
    if rest:
        out += (f'<details><summary>{len(rest)} more components (each moved by at most '
                f'{pct(abs(rest[0]["difference"]))})</summary><table class="shares">{head}<tbody>'
                f'{"".join(row(r) for r in rest)}</tbody></table></details>')
    return out


def _partners(m: dict[str, Any]) -> str:
    if not m["changed"]:
        return f'<p class="empty">No student component changed partner ({m["n_same"]} kept theirs).</p>'
    rows = "".join(f'<tr><th scope="row">{e(c["student"])}</th><td>{e(c["a"] or "—")}</td><td>{e(c["b"] or "—")}</td>'
                   f'<td>{e(c["change"])}</td></tr>' for c in m["changed"])
    return (f'<p>{m["n_changed"]} student component(s) changed teacher partner; {m["n_same"]} kept theirs.</p>'
            '<table class="partners"><thead><tr><th>student component</th><th>teacher partner in A</th>'
            f'<th>teacher partner in B</th><th>change</th></tr></thead><tbody>{rows}</tbody></table>')


def _circuits(c: dict[str, Any]) -> str:
    if c.get("note"):
        return f'<p class="empty">{e(c["note"])}</p>'
    rows = []
    for role in ("student", "teacher"):
        j = c.get(f"{role}_jaccard")
        if j is None:
            rows.append(f'<tr><th scope="row">{role}</th><td colspan="3" class="empty">{e(c.get(f"{role}_missing") or "")}'
                        '</td></tr>')
            continue
        only_a, only_b = c.get(f"{role}_only_a") or [], c.get(f"{role}_only_b") or []
        rows.append(f'<tr><th scope="row">{role}</th><td class="num">{num(j)}</td><td>{e(", ".join(only_a) or "—")}</td>'
                    f'<td>{e(", ".join(only_b) or "—")}</td></tr>')
    return ('<table class="circuits"><thead><tr><th>circuit</th><th>Jaccard overlap (1 = the same components)</th>'
            f'<th>only in A</th><th>only in B</th></tr></thead><tbody>{"".join(rows)}</tbody></table>')


def _teacher_shares(d: dict[str, Any]) -> str:
    rows = d["influence"]["teacher"]
    if d["teacher"]["same"] and all(abs(r["difference"]) < 5e-4 for r in rows):
        return ('<details><summary>The same teacher on the same prompts: its shares are the same in A and B '
                f'(show them)</summary>{_shares(rows, "teacher")}</details>')
    return _shares(rows, "teacher")


def render_diff(d: dict[str, Any], name_a: str = "A", name_b: str = "B") -> str:
    """The page for :func:`circuitdiff.analysis.diff.diff_results`'s answer; ``name_a``/``name_b``
    say where each result came from (file names or job ids)."""
    a, b, t, s, v = d["a"], d["b"], d["teacher"], d["score"], d["verdict"]
    banner = "same" if t["same"] else "different"
    ci = s.get("ci95")
    diff_text = num(s["difference"], 4, True) + (f' <span class="ci">[95% {num(ci[0], 4, True)}, {num(ci[1], 4, True)}]'
                                                 f'</span>' if ci else "")
    moved = {"same": "unchanged", "stronger": "stronger in B", "weaker": "weaker in B", "unknown": "not comparable"}
    ch = v["chance"]

    def card(name: str, src: str, side: dict[str, Any], reason: str | None) -> str:
        ci = side["ci95"]
        return (f'<div class="card {name}"><h3>{name}: {e(side["student"])}</h3><p class="src">{e(src)} · teacher '
                f'{e(side["teacher"])} · task {e(side["task"])}, {e(side["n_prompts"])} prompts</p>'
                f'<p class="big">{num(side["score"], 3)}'
                + (f' <span class="ci">[95% {num(ci[0])}, {num(ci[1])}]</span>' if ci else "")
                + f'</p><p>chance mean {num(side["chance_mean"])}, up to {num(side["chance_high"])}</p>'
                f'<p class="verdict">{e(label(side["verdict"]))}</p><p class="reason">{e(reason or "")}</p></div>')

    return f"""<!doctype html>
<html lang="en"><head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>circuitdiff A/B: {e(a["student"])} vs {e(b["student"])}</title>
<style>
body{{font:15px/1.5 system-ui,sans-serif;margin:24px 32px;color:#222}}
h1{{font-size:24px;margin:0 0 8px}} h2{{font-size:18px;margin:32px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}}
h3{{font-size:16px;margin:0 0 4px}} .src{{color:#666;font-size:13px;margin:0}}
.banner{{padding:10px 14px;border-radius:6px;font-weight:600;margin:8px 0 16px}}
.banner.same{{background:#e5f2e5;border:1px solid #7fbf7f}} .banner.different{{background:#fdebd0;border:1px solid #e59866}}
.cards{{display:grid;grid-template-columns:1fr 1fr 1fr;gap:16px}}
.card{{border:1px solid #ddd;border-radius:8px;padding:12px 16px}} .card.A{{border-top:4px solid #2166ac}}
.card.B{{border-top:4px solid #b2182b}} .card.D{{border-top:4px solid #555}}
.big{{font-size:28px;font-weight:600;margin:6px 0}} .ci{{font-size:14px;color:#555;font-weight:400}}
.verdict{{font-weight:600;text-transform:uppercase;letter-spacing:.02em;margin:4px 0}} .reason{{color:#555;font-size:13px}}
svg.ab{{width:100%;height:auto;display:block;max-width:1200px}}
.grid{{stroke:#eee}} .tick,.axis{{font-size:12px;fill:#555}} .rowlab{{font-size:16px;font-weight:600;fill:#222}}
.chance{{fill:#bbb;fill-opacity:.35}} .ci{{stroke-width:4}} line.ci.A{{stroke:#2166ac}} line.ci.B{{stroke:#b2182b}}
.pt.A{{fill:#2166ac}} .pt.B{{fill:#b2182b}}
table{{border-collapse:collapse;margin:8px 0;font-size:14px;width:100%}}
td,th{{border-bottom:1px solid #e5e5e5;padding:4px 8px;text-align:left;vertical-align:middle}}
thead th{{border-bottom:2px solid #ccc;font-weight:600}} td.num{{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}}
td.up{{color:#1a7f37}} td.down{{color:#b2182b}} td.bars{{width:40%}}
.bar{{display:block;height:7px;margin:2px 0;border-radius:2px}} .bar.A{{background:#2166ac}} .bar.B{{background:#b2182b}}
details summary{{cursor:pointer;color:#2166ac;margin:6px 0}} .empty{{color:#666}}
.two{{display:grid;grid-template-columns:1fr 1fr;gap:24px}}
</style></head>
<body>
<h1>A/B: {e(a["student"])} vs {e(b["student"])}</h1>
<p class="src">A = {e(name_a)} · B = {e(name_b)} · every difference is B − A</p>
<div class="banner {banner}" id="teacher">{e(t["note"][0].upper() + t["note"][1:])}</div>
{'<p class="src">The two results ran on the same prompts.</p>' if d["same_prompts"] else
 '<p class="src">The two results ran on different prompts.</p>'}
<div class="cards">
{card("A", name_a, a, v["a_reason"])}
{card("B", name_b, b, v["b_reason"])}
<div class="card D"><h3>Difference (B − A)</h3><p class="src">{e(s.get("method") or "")}</p>
<p class="big" id="score-difference">{diff_text}</p>
<p>margin above chance: A {num(ch["a_margin"], 3, True)}, B {num(ch["b_margin"], 3, True)}
(change {num(ch["margin_difference"], 3, True)})</p>
<p class="verdict" id="verdict-change">verdict {e(moved[v["direction"]])}</p>
<p class="reason">{e(label(v["a"]))} → {e(label(v["b"]))}</p></div>
</div>
<h2>Alignment score and chance</h2>
{_intervals(d)}
<h2>Influence shares: student</h2>
<p class="src">Each component's share of its model's total influence (the normalisation the score uses),
largest change first.</p>
{_shares(d["influence"]["student"], "student")}
<div class="two"><div>
<h2>Matches that changed partner</h2>
{_partners(d["matches"])}
</div><div>
<h2>Circuits</h2>
{_circuits(d["circuits"])}
</div></div>
<h2>Influence shares: teacher</h2>
{_teacher_shares(d)}
</body></html>
"""
