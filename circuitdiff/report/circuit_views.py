"""The report's circuits section (result schema >= 4): both circuits on the layer/head grid, what the
student kept, discarded and rebuilt of the teacher's circuit, the threshold sweep, and the
transferred circuit against its null controls (docs/method.md §Method 7; circuitdiff.result.Circuits).

Grids are HTML tables coloured by CSS classes (no inline styles: the page's CSP allows none), so the
section reads without images or scripts; every cell also carries its state as text.
"""

from __future__ import annotations

import html
from typing import Any

from ..result import ComparisonResult
from ..vocabulary import head_id, mlp_id

SIDES = ("teacher", "student")
STATE_LABEL = {"kept": "kept", "discarded": "discarded", "new": "new", "mapped": "mapped, not in circuit",
               "unstable": "discarded or new on the full sample, not stably over resamples", "": ""}


def e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def cell_states(r: ComparisonResult, side: str) -> dict[str, str]:
    """Component -> its state in the diff. Teacher circuit: kept | discarded; student circuit: kept
    (a teacher-circuit partner) | new; a student component the teacher circuit maps to that the
    student circuit does not hold: mapped. Without a diff, circuit members are 'kept'."""
    c = r.circuits
    own = getattr(c, side)
    members = set(own.components) if own else set()
    d = c.diff
    if d is None:
        return {x: "kept" for x in members}
    if side == "teacher":
        return {**{x: "kept" for x in d.kept}, **{x: "discarded" for x in d.discarded},
                **{x: "unstable" for x in d.discarded_unstable}}
    mapped = set(d.mapped)
    out = {x: "mapped" for x in mapped - members}
    out.update({x: "kept" if x in mapped else ("unstable" if x in d.new_unstable else "new") for x in members})
    return out


def grid(r: ComparisonResult, side: str) -> str:
    """Layers as columns, heads as rows, then the MLP row; a cell's class is its diff state."""
    m = r.models[side]
    states = cell_states(r, side)
    head = "".join(f'<th class="num">L{layer}</th>' for layer in range(m.n_layers))
    rows = []
    for h in list(range(m.n_heads)) + [None]:
        cells = []
        for layer in range(m.n_layers):
            cid = mlp_id(layer) if h is None else head_id(layer, h)
            st = states.get(cid, "")
            label = STATE_LABEL[st]
            cells.append(f'<td class="cc {st}" data-component="{cid}" title="{cid} {label}">'
                         f'{"●" if st in ("kept", "new", "discarded", "unstable") else ("○" if st else "")}'
                         f'<span class="sr">{cid} {label}</span></td>')
        rows.append(f'<tr><th>{"MLP" if h is None else f"H{h}"}</th>{"".join(cells)}</tr>')
    return (f'<table class="circuit-grid" id="circuit-grid-{side}"><thead><tr><th></th>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>')


def _pct(x: float) -> str:
    return f"{x:.1f}%"


def _faithfulness(c, side: str) -> str:
    """The faithfulness curve's areas (MIB's CPR / CMD, circuitdiff.analysis.pruning), when computed."""
    f = c.faithfulness.get(side)
    if f is None:
        return ""
    return (f'<br><span title="the top-k components by influence kept, for growing k (MIB, arXiv 2504.13151)">'
            f'faithfulness curve: CPR {f.cpr:.3f} · CMD {f.cmd:.3f}</span>')


def section(r: ComparisonResult, transfer_figure: str = "") -> str:
    c = r.circuits
    if c is None:
        return ""
    cards = []
    for side in SIDES:
        m = getattr(c, side)
        if m is None:
            cards.append(f'<div class="card"><div class="label">{side} circuit</div><div class="value">–</div>'
                         f'<div class="detail">not searched</div></div>')
            continue
        n_all = r.models[side].n_layers * (r.models[side].n_heads + 1)
        cards.append(
            f'<div class="card" id="circuit-card-{side}"><div class="label">{side} circuit</div>'
            f'<div class="value">{m.n_heads}+{m.n_mlps}</div><div class="detail">heads + MLPs of {n_all} components'
            f'<br>kept {_pct(m.kept_pct)} · removed {_pct(m.removed_pct)}'
            + (f'<br>components in ≥ {m.min_inclusion:.0%} of the resamples\' circuits' if m.min_inclusion else "")
            + f'<br>{m.n_evaluations} evaluations, '
            f'{c.search_s.get(side, 0):.2f} s ({e(c.method.get(side, "?"))})' + _faithfulness(c, side) + '</div></div>')
    d = c.diff
    if d is not None:
        rnd = d.transfer.nulls.get("random")
        verdict = ""
        if rnd is not None:
            beats = d.transfer.kept_pct > rnd.ci95[1]
            verdict = (f'<br><b class="{"ok" if beats else "bad"}">{"beats" if beats else "does not beat"} '
                       f'the random null</b> ({_pct(rnd.mean)}, p = {rnd.p_value:.3g})')
        cards.append(
            f'<div class="card" id="circuit-card-diff"><div class="label">circuit overlap</div>'
            f'<div class="value">{d.jaccard:.2f}</div><div class="detail">Jaccard of the mapped teacher circuit and '
            f'the student circuit<br>kept {len(d.kept)} · discarded {len(d.discarded)} · new {len(d.new)}'
            + (f' · unstable {len(d.discarded_unstable) + len(d.new_unstable)}'
               if d.discarded_unstable or d.new_unstable else "") + '</div></div>')
        cards.append(
            f'<div class="card" id="circuit-card-transfer"><div class="label">teacher circuit on the student</div>'
            f'<div class="value">{_pct(d.transfer.kept_pct)}</div><div class="detail">{d.transfer.n_heads} heads + '
            f'{d.transfer.n_mlps} MLPs kept, the rest ablated{verdict}</div></div>')
    grids = "".join(
        f'<div><h3 class="{side}">{side}: <span class="mono">{e(r.models[side].id)}</span></h3>{grid(r, side)}</div>'
        for side in SIDES if getattr(c, side) is not None)
    legend = ('<p class="legend"><span class="cc kept">●</span> kept (in the teacher circuit and, through the '
              'matching, in the student circuit) · <span class="cc discarded">●</span> discarded (teacher circuit, '
              'no counterpart in the student circuit) · <span class="cc new">●</span> new (student circuit, matched '
              'to no teacher-circuit component) · <span class="cc unstable">●</span> discarded or new on the full '
              'reported circuits but not stably over resamples of the prompts · <span class="cc mapped">○</span> the teacher '
              'circuit maps here, the student circuit does not use it</p>' if d is not None else "")
    diff_table = ""
    if d is not None:
        rows = [("kept", d.kept), ("discarded", d.discarded), ("new", d.new),
                ("unstable (not stably discarded or new over the resamples)", d.discarded_unstable + d.new_unstable),
                ("mapped teacher circuit", d.mapped)]
        diff_table = ('<table id="circuit-diff"><tbody>' + "".join(
            f'<tr><th>{k} ({len(v)})</th><td class="mono">{e(", ".join(v) or "–")}</td></tr>' for k, v in rows)
            + "</tbody></table>")
        nulls = "".join(
            f'<tr><th>{e(k)} null</th><td class="num">{_pct(n.mean)}</td>'
            f'<td class="num">[{n.ci95[0]:.1f}, {n.ci95[1]:.1f}]</td><td class="num">{n.n}</td>'
            f'<td class="num">{n.p_value:.3g}</td></tr>' for k, n in d.transfer.nulls.items())
        diff_table += ('<table id="circuit-transfer"><thead><tr><th></th><th class="num">kept %</th>'
                       '<th class="num">95% interval</th><th class="num">draws</th><th class="num">p</th></tr></thead>'
                       f'<tbody><tr><th>mapped teacher circuit</th><td class="num">{_pct(d.transfer.kept_pct)}</td>'
                       f'<td></td><td></td><td></td></tr>{nulls}</tbody></table>')
    sweep = ""
    if c.sweep:
        rows = []
        for side in SIDES:
            for row in c.sweep.get(side, []):
                rows.append(f'<tr><td class="{side}">{side}</td><td class="num">{row.threshold:g}</td>'
                            f'<td class="num">{row.n_heads}</td><td class="num">{row.n_mlps}</td>'
                            f'<td class="num">{row.n_heads + row.n_mlps}</td><td class="num">{row.kept_pct:.1f}</td>'
                            f'<td class="num">{100 - row.kept_pct:.1f}</td><td class="num">{row.removed_pct:.1f}</td>'
                            f'<td class="num">{100 - row.removed_pct:.1f}</td><td class="num">{row.jaccard:.2f}</td></tr>')
        sweep = ('<h3>Threshold sweep</h3><p>The authors\' <code>threshold_sweep.py</code> table: each threshold\'s '
                 f'circuit, and its Jaccard overlap with the circuit at T = {c.threshold:g}.</p>'
                 '<table class="sortable" id="circuit-sweep"><thead><tr><th>model</th><th class="num">T</th>'
                 '<th class="num">heads</th><th class="num">MLPs</th><th class="num">nodes</th>'
                 '<th class="num">kept %</th><th class="num">kept drop</th><th class="num">removed %</th>'
                 '<th class="num">removed drop</th><th class="num">Jaccard</th></tr></thead><tbody>'
                 + "".join(rows) + "</tbody></table>")
    note = f'<p class="flag">{e(c.note)}</p>' if c.note else ""
    return f"""
<section id="circuits"><h2>Circuits: what the student kept, discarded and rebuilt</h2>
<p>Each model's circuit by iterative node pruning (T = {c.threshold:g} points; components outside the circuit
{e(c.ablation)}-ablated): a component leaves if performance stays within T points of the full model without it.
<b>kept %</b>: performance with only the circuit kept; <b>removed %</b>: with only the circuit ablated. The teacher
circuit is mapped through the matching onto student components and run on the student, next to null circuits
(random components of the same head/MLP counts; each teacher component sent to the student layer at the same depth).</p>
{note}
<div class="cards">{"".join(cards)}</div>
{legend}
<div class="grid2 circuits">{grids}</div>
{diff_table}
{transfer_figure}
{sweep}
</section>"""
