"""One self-contained HTML page for a comparison result.

Every string that comes from the result (model ids, prompts, tokens, task options, warnings) goes
through :func:`e` (``html.escape``): prompts are user input and the page is shared. Images are
inline PNGs; styles and the sorting script are inline blocks allowed by hash in the page's
Content-Security-Policy (see ``assets.py``). Without scripts every table is still complete.
"""

from __future__ import annotations

import base64
import html
import json
import platform
import struct
from pathlib import PurePosixPath
from typing import Any

import matplotlib

from ..analysis.confidence import MIN_MARGIN
from ..result import ComparisonResult
from .assets import CSS, JS, content_security_policy
from .plots import PNG_DPI, Plot
from ..vocabulary import layer_key, parse_component
from . import circuit_views as circuits_section
from .summary import (SIDES, UNSTABLE_CONFIDENCE, component_drops, fmt_ci, fmt_params, influence_shares,
                      interpretation, matched_counts, needs_caution, unstable_matches)

MAX_REJECTED_SHOWN = 200


def e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _num(x: float | None, digits: int = 3) -> str:
    """A right-aligned cell whose data-v keeps full precision for sorting."""
    if x is None:
        return '<td class="num" data-v="">–</td>'
    return f'<td class="num" data-v="{x!r}">{x:.{digits}f}</td>'


def _png_size(png: bytes) -> tuple[int, int]:
    w, h = struct.unpack(">II", png[16:24])  # IHDR
    return w, h


def _img(plot: Plot, alt: str) -> str:
    png = plot.png()
    w, h = _png_size(png)
    # Displayed at 100 dpi: crisp on high-density screens, readable on plain ones.
    scale = 100 / PNG_DPI
    data = base64.b64encode(png).decode()
    return (f'<img src="data:image/png;base64,{data}" width="{round(w * scale)}" height="{round(h * scale)}" '
            f'alt="{e(alt)}">')


def _figure(plot: Plot | None, alt: str, caption: str) -> str:
    if plot is None:
        return ""
    return f'<figure id="fig-{e(plot.name)}">{_img(plot, alt)}<figcaption>{caption}</figcaption></figure>'


def _status_badge(status: str) -> str:
    label = {"matched": "matched", "below": "below threshold", "none": "unmatched"}[status]
    cls = {"matched": "ok", "below": "bad", "none": "none"}[status]
    return f'<span class="badge {cls}">{label}</span>'


def _verdict_line(a) -> str:
    """The verdict, first on the first card: its name, and on hover the sentence with its numbers."""
    if a.verdict is None:
        return ""
    refs = []
    if a.depth_reference is not None:
        refs.append(f"depth reference {a.depth_reference.score:.3f}")
    refs += [f"control {c.model} {c.score:.3f}" for c in a.controls if c.score is not None]
    return (f'<div class="verdict-name" id="verdict" title="{e(a.verdict_reason or "")}"><b>'
            f'{e(a.verdict.replace("_", " "))}</b>' + (f"<br><small>{e(' · '.join(refs))}</small>" if refs else "")
            + "</div>")


def _summary(r: ComparisonResult) -> str:
    a, rob = r.alignment, r.robustness
    t, s = r.models["teacher"], r.models["student"]
    score = "–" if a.score is None else f"{a.score:.3f}"
    ci = f"95% CI {a.ci95[0]:.3f}–{a.ci95[1]:.3f}" if a.ci95 else "no confidence interval"
    if a.verdict is not None:  # schema >= 8: the verdict leads the first card
        verdict_cls = {"kept_teacher_components": " ok", "beyond_depth_reference": " ok"}.get(a.verdict, " bad")
    if a.chance is None:
        chance, verdict_cls = "not calibrated against chance (older result)", ""
    else:
        chance = (f"{'above' if a.above_chance else 'NOT above'} chance: by chance the score is "
                  f"{a.chance.mean:.3f} on average and up to {a.chance.ci95[1]:.3f} (95%), p = {a.chance.p_value:.3g}")
        if a.verdict is None:
            verdict_cls = " ok" if a.above_chance else " bad"
    hm, hn = matched_counts(r, "head")
    mm, mn = matched_counts(r, "mlp")
    sentences = interpretation(r)
    flagged = needs_caution(r)
    verdict = "".join(f"<p>{e(x)}</p>" for x in sentences)
    cards = f"""
<div class="cards">
  <div class="card score{verdict_cls}" id="alignment-score"><div class="label">alignment score</div>
    {_verdict_line(a)}<div class="value">{score}</div><div class="detail"><b id="chance">{e(chance)}</b><br>{e(ci)}<br>{a.n_pairs} pairs · mean similarity {a.mean_similarity:.3f}</div></div>
  <div class="card"><div class="label">matched heads</div><div class="value">{hm}/{hn}</div>
    <div class="detail">similarity ≥ {e(r.spec.get('head_threshold', '?'))}</div></div>
  <div class="card"><div class="label">matched MLPs</div><div class="value">{mm}/{mn}</div>
    <div class="detail">similarity ≥ {e(r.spec.get('mlp_threshold', '?'))}</div></div>
  <div class="card"><div class="label">compression</div><div class="value">{rob.compression_ratio:.0%}</div>
    <div class="detail">{fmt_params(t.n_params)} → {fmt_params(s.n_params)} parameters</div></div>
</div>"""

    def row(label: str, cells: list[str], num: bool = True) -> str:
        cls = ' class="num"' if num else ""
        return f"<tr><th>{label}</th>" + "".join(f"<td{cls}>{c}</td>" for c in cells) + "</tr>"

    perf = {x: r.performance[x] for x in SIDES}
    robs = {x: getattr(rob, x) for x in SIDES}
    metric = r.metric

    def drop_cell(x: str, attr: str, digits: int = 2) -> str:
        m = robs[x]
        if m is None:
            return "–"
        v = getattr(m, attr)
        extra = f" {fmt_ci(m.mean_drop_ci95, 2)}" if attr == "mean_drop" and m.mean_drop_ci95 else ""
        return f"{v:.{digits}f}{e(extra)}"

    rows = [
        row("model", [f'<span class="{x} mono">{e(r.models[x].id)}</span>' for x in SIDES], num=False),
        row("architecture", [e(r.models[x].architecture) for x in SIDES], num=False),
        row("layers × heads", [f"{r.models[x].n_layers} × {r.models[x].n_heads}" for x in SIDES]),
        row("parameters", [f"{r.models[x].n_params:,}" for x in SIDES]),
        row(f"{e(metric.label)} ({e(metric.units)}): clean mean ± std [95% CI]",
            [f"{perf[x].value:.3f} ± {perf[x].value_std:.3f}" + (f" {e(fmt_ci(perf[x].value_ci95, 3))}"
                                                                  if perf[x].value_ci95 else "") for x in SIDES]),
        *([row("logit difference (mean ± std)", [f"{perf[x].logit_diff:.3f} ± {perf[x].logit_diff_std:.3f}"
                                                 for x in SIDES])]
          if metric.name != "logit_diff" and all(perf[x].logit_diff is not None for x in SIDES) else []),
        row("accuracy (top-1 = answer)", ["–" if perf[x].accuracy is None else f"{perf[x].accuracy:.1%}" for x in SIDES]),
        row("performs the task", ["– (no answer metric)" if perf[x].performs_task is None else 'yes'
                                  if perf[x].performs_task else '<span class="badge bad">no: LD not above 0</span>'
                                  for x in SIDES]),
        row("mean drop per component, % [95% CI]", [drop_cell(x, "mean_drop") for x in SIDES]),
        row("median / max drop, %", ["–" if robs[x] is None else f"{robs[x].median_drop:.2f} / {robs[x].max_drop:.2f}"
                                      for x in SIDES]),
        row("severity (share of drop mass beyond 20%)", [drop_cell(x, "severity", 4) for x in SIDES]),
    ]
    models_table = ('<table id="summary-table"><thead><tr><th></th><th class="num teacher">teacher</th>'
                    '<th class="num student">student</th></tr></thead><tbody>' + "".join(rows) + "</tbody></table>")
    extra = [f"compression ratio (P<sub>T</sub> − P<sub>S</sub>)/P<sub>T</sub> = {rob.compression_ratio:.3f}"]
    if a.protocol:
        extra.append(f"protocol: {e(a.protocol)}")
    if a.chance is not None:
        extra.append(f"chance null: {e(a.chance.method)}; {a.chance.n} draws")
    unstable = unstable_matches(r)
    if unstable:
        extra.append(f"{len(unstable)} unstable matches (same partner in fewer than {UNSTABLE_CONFIDENCE:.0%} of "
                     f"{a.confidence_resamples} bootstrap resamples): "
                     + e(", ".join(f"{m.student}→{m.teacher}" for m in unstable[:8])) + (" …" if len(unstable) > 8 else ""))
    near = [m for m in r.matches if m.ambiguous and not m.duplicated]
    if near:
        extra.append(f"{len(near)} near-tie matches (the margin over the runner-up is below {MIN_MARGIN} or its "
                     "interval includes 0): " + e(", ".join(f"{m.student}→{m.teacher} (runner-up {m.runner_up}, "
                                                            f"margin {m.margin:.3f})" for m in near[:6]))
                     + (" …" if len(near) > 6 else ""))
    for side in SIDES:
        if r.unpaired.get(side):
            extra.append(f"{side} components in no pair: {e(', '.join(r.unpaired[side]))}")
    if rob.delta_mean_drop is not None:
        extra.append(f"Δ mean drop (student − teacher) = {rob.delta_mean_drop:.2f} pp, 95% over components "
                     f"{e(fmt_ci(rob.delta_mean_drop_ci95, 2))}")
    if rob.slope_mean is not None:
        extra.append(f"brittleness slope Δmean/C = {rob.slope_mean:.2f} pp per unit compression")
    if rob.delta_severity is not None:
        extra.append(f"Δ severity = {rob.delta_severity:.4f}")
    if rob.note:
        extra.append(e(rob.note))
    warn = ""
    if r.warnings:
        warn = '<h3>Warnings</h3><ul class="warnings">' + "".join(f"<li>{e(w)}</li>" for w in r.warnings) + "</ul>"
    return f"""
<section id="summary"><h2>Summary</h2>
{cards}
<div class="verdict{' flag' if flagged else ''}">{verdict}</div>
{models_table}
<p>{'<br>'.join(extra)}</p>
<p>Task <b>{e(r.task.name)}</b> ({e(r.task.form)}), {r.task.n_prompts} prompts
({r.task.n_rejected} rejected), e.g. <q class="mono">{e(r.task.example_prompt)}</q>.
Ablation: <b>{e(r.spec.get('ablation', '?'))}</b>; matching: <b>{e(a.direction.replace('_', ' '))}</b>;
preset <b>{e(r.spec.get('preset', '?'))}</b>; scan {e(r.scan.method)}{' (approximate)' if r.scan.approximate else ''}.</p>
{warn}
</section>"""


def _match_status(r: ComparisonResult) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {x: {c: "none" for c in r.influence[x]} for x in SIDES}
    for m in r.matches:
        for side, cid in (("teacher", m.teacher), ("student", m.student)):
            if cid in out[side] and out[side][cid] != "matched":
                out[side][cid] = "matched" if m.matched else "below"
    return out


TOP_COMPONENTS = 10  # rows of a component table shown before the fold


def _component_table(r: ComparisonResult, side: str, status: dict[str, str]) -> str:
    """Every component, most influential first; beyond the first :data:`TOP_COMPONENTS` the rows are
    folded (a checkbox shows them, no script needed; sorting by a column shows them all)."""
    drops = component_drops(r, side)
    partners: dict[str, list[str]] = {}
    for m in r.matches:
        if not m.duplicated:
            mine, other = (m.teacher, m.student) if side == "teacher" else (m.student, m.teacher)
            partners.setdefault(mine, []).append(other)
    layer_rank = {cid: i for i, cid in enumerate(sorted(r.influence[side], key=layer_key))}
    order = sorted(r.influence[side], key=lambda cid: (-r.influence[side][cid].influence, layer_rank[cid]))
    total = sum(c.influence for c in r.influence[side].values()) or 1.0
    rows = []
    for i, cid in enumerate(order):
        c = r.influence[side][cid]
        kind = "MLP" if parse_component(cid).kind == "mlp" else "head"
        fold = ' class="fold"' if i >= TOP_COMPONENTS else ""
        rows.append(
            f'<tr{fold}><td class="mono" data-v="{layer_rank[cid]}">{e(cid)}</td>'
            f"<td>{kind}</td>{_num(c.value if c.value is not None else c.logit_diff)}{_num(c.delta)}{_influence_cell(c)}"
            f"{_num(c.influence / total * 100, 1)}{_num(c.retained_pct, 1)}"
            f"{_num(None if drops is None else drops[cid], 1)}"
            f"<td>{_status_badge(status[cid])}</td><td class=\"mono\">{e(', '.join(partners.get(cid, [])))}</td></tr>"
        )
    folded = len(order) - TOP_COMPONENTS
    toggle = ""
    if folded > 0:
        rest = sum(r.influence[side][cid].influence for cid in order[TOP_COMPONENTS:]) / total
        toggle = (f'<input type="checkbox" class="unfold" id="unfold-{side}"><label for="unfold-{side}" class="unfold">'
                  f'The {TOP_COMPONENTS} most influential of {len(order)} components; show the other {folded} '
                  f'({rest:.0%} of the influence together)</label>')
    return (toggle + f'<table class="sortable components" id="components-{side}"><thead><tr><th>component</th><th>type</th>'
            f'<th class="num">{e(r.metric.short)} ablated</th><th class="num">Δ {e(r.metric.short)}</th>'
            f'<th class="num" title="{e(r.metric.label)}, {e(r.metric.units)}">influence ({e(r.metric.units)})</th>'
            '<th class="num">share of influence %</th>'
            '<th class="num">retained %</th><th class="num">drop %</th><th>match</th><th>paired with</th></tr></thead>'
            "<tbody>" + "".join(rows) + "</tbody></table>")


def _influence_cell(c) -> str:
    """The influence, marked "≈" where it is an estimate (attribution; screened and not re-scanned)."""
    if c.exact is not False:
        return _num(c.influence)
    return (f'<td class="num estimated" data-v="{c.influence!r}" title="estimated (attribution), not an exact '
            f'ablation">≈ {c.influence:.3f}</td>')


def _estimated_note(r: ComparisonResult) -> str:
    n = {x: sum(c.exact is False for c in r.influence[x].values()) for x in SIDES}
    if not any(n.values()):
        return ""
    return (f'<p class="note" id="estimated-note">Influences marked ≈ are estimates (attribution patching), not exact '
            f'ablations: {n["teacher"]} of {len(r.influence["teacher"])} teacher and {n["student"]} of '
            f'{len(r.influence["student"])} student components. The alignment score uses them as they are.</p>')


def _matches_table(r: ComparisonResult) -> str:
    """The alignment score's pairs with each pair's term S·(1 − |Î_S − Î_T|) (docs/method.md §Method 5)."""
    shares_s, shares_t = influence_shares(r)
    rows = []
    order = sorted(range(len(r.matches)), key=lambda i: (r.matches[i].kind, layer_key(r.matches[i].student)))
    for i in order:
        m, ns, nt = r.matches[i], shares_s[i], shares_t[i]
        term = m.similarity * (1 - abs(ns - nt))
        status = "matched" if m.matched else "below"
        dup = " (counted twice)" if m.duplicated else ""
        unstable = m.confidence is not None and m.confidence < UNSTABLE_CONFIDENCE and not m.duplicated
        flag = ' <span class="badge bad">unstable</span>' if unstable else ""
        if m.ambiguous and not m.duplicated:
            flag += (f' <span class="badge bad" title="runner-up {e(m.runner_up or "")}: margin '
                     f'{m.margin:.3f} {e(fmt_ci(m.margin_ci95, 3))}">near-tie</span>')
        rows.append(
            f'<tr class="{"" if m.matched else "below"}"><td class="mono">{e(m.student)}</td><td class="mono">{e(m.teacher)}</td>'
            f"<td>{e(m.kind)}</td>{_num(m.similarity)}<td>{_status_badge(status)}{dup}{flag}</td>{_num(m.confidence, 2)}"
            f'<td class="mono">{e(m.runner_up or "–")}</td>{_num(m.margin, 3)}'
            f"{_num(m.student_influence)}{_num(m.teacher_influence)}{_num(ns)}{_num(nt)}{_num(term, 4)}</tr>"
        )
    return ('<table class="sortable" id="matches-table"><thead><tr><th>student</th><th>teacher</th><th>type</th>'
            '<th class="num">similarity</th><th>status</th><th class="num">confidence</th><th>runner-up</th>'
            '<th class="num">margin</th><th class="num">I<sub>S</sub></th>'
            '<th class="num">I<sub>T</sub></th><th class="num">Î<sub>S</sub></th><th class="num">Î<sub>T</sub></th>'
            '<th class="num">S·(1−|Î<sub>S</sub>−Î<sub>T</sub>|)</th></tr></thead><tbody>' + "".join(rows) +
            "</tbody></table>")


def readable(x: Any) -> str:
    """A nested value as a person reads it (escaped HTML): ``key: value`` lines, yes/no for booleans,
    numbers rounded, "–" for nothing; never a Python or JSON literal."""
    if x is None or x == {} or x == []:
        return "–"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, float):
        return f"{x:.4g}"
    if isinstance(x, dict):
        return "<br>".join(f"{e(str(k).replace('_', ' '))}: {readable(v)}" for k, v in x.items())
    if isinstance(x, (list, tuple)):
        return ", ".join(readable(v) for v in x)
    return e(x)


def _kv_table(items: list[tuple[str, str]], table_id: str) -> str:
    """Two-column table; values are already escaped HTML."""
    return f'<table id="{table_id}"><tbody>' + "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in items) + \
        "</tbody></table>"


def _reproducibility(r: ComparisonResult) -> str:
    model_rows = []
    for x in SIDES:
        m = r.models[x]
        model_rows.append(
            f'<tr><th class="{x}">{x}</th><td class="mono">{e(m.id)}</td><td>{e(m.kind)}</td>'
            f'<td class="mono">{e(m.revision or "–")}</td><td class="mono">{e(m.sha256 or "–")}</td>'
            f"<td>{e(m.architecture)}</td><td>{e(m.adapter)}</td><td class=\"num\">{m.n_params:,}</td>"
            f'<td class="num">{m.d_model}</td><td class="num">{m.vocab_size:,}</td></tr>'
        )
    models = ('<table id="repro-models"><thead><tr><th></th><th>id</th><th>kind</th><th>revision</th>'
              '<th>weights sha256</th><th>architecture</th><th>adapter</th><th class="num">params</th>'
              '<th class="num">d_model</th><th class="num">vocab</th></tr></thead><tbody>' + "".join(model_rows) +
              "</tbody></table>")
    task = _kv_table([
        ("task", e(r.task.name)),
        ("options", readable(r.task.options)),
        ("dataset sha256", f'<span class="mono">{e(r.task.dataset_sha256)}</span>'),
        ("prompts used / rejected", f"{r.task.n_prompts} / {r.task.n_rejected}"),
        ("token alignment", e(r.task.token_alignment)),
        ("seed", e(r.spec.get("seed", "–"))),
        ("created", e(r.created_at)),
    ], "repro-task")
    rejected = ""
    if r.task.rejected:
        shown = r.task.rejected[:MAX_REJECTED_SHOWN]
        more = f" (first {len(shown)} shown)" if len(shown) < len(r.task.rejected) else ""
        rejected = (f"<details><summary>{len(r.task.rejected)} rejected prompts{more}</summary>"
                    '<table id="rejected"><thead><tr><th class="num">#</th><th class="num">line</th><th>prompt</th>'
                    '<th>reason</th></tr></thead><tbody>'
                    + "".join(f'<tr><td class="num">{p.index}</td><td class="num">{p.line or "–"}</td>'
                              f'<td class="mono">{e(p.prompt)}</td><td>{e(p.reason)}</td></tr>'
                              for p in shown) + "</tbody></table></details>")
    versions = _kv_table([(e(k), f'<span class="mono">{e(v)}</span>') for k, v in sorted(r.engine.items())], "repro-versions")
    stages = [(k, v) for k, v in r.timings.items() if k != "total"]  # in the order the stages ran
    timings = _kv_table([(e(k), f"{v:.2f} s") for k, v in stages]
                        + ([("<b>total</b>", f"<b>{r.timings['total']:.2f} s</b>")] if "total" in r.timings else []),
                        "repro-timings")
    scan = _kv_table([("method", e(r.scan.method) + (f" (estimator {e(r.scan.estimator)})" if r.scan.estimator else "")),
                      ("values", "estimates (approximate)" if r.scan.approximate else "exact ablations"),
                      ("activation cache", e(", ".join(f"{k}: {v}" for k, v in sorted(r.scan.cache.items())) or "–")),
                      ("agreement with exact", readable(r.scan.agreement)),
                      ("precision", readable(r.scan.precision))], "repro-scan")
    spec = e(json.dumps(r.spec, indent=2, sort_keys=True))
    return f"""
<section id="reproducibility"><h2>Reproducibility</h2>
<p>Everything needed to re-run this comparison: the resolved spec (preset expanded) re-runs it with
the same engine version; model weights are identified by revision or sha256.</p>
<h3>Models</h3><div class="scroll">{models}</div>
<div class="grid2"><div><h3>Task and data</h3>{task}{rejected}</div>
<div><h3>Library versions</h3>{versions}</div>
<div><h3>Timings</h3>{timings}</div>
<div><h3>Influence scan</h3>{scan}</div></div>
<h3>Resolved spec</h3><pre id="resolved-spec">{spec}</pre>
</section>"""


def display_id(model_id: str) -> str:
    """A model id for a title: a local checkpoint path as its last two parts (``…/42/step-1000``),
    since the server's directory layout says nothing to the reader (the full path stays under
    Reproducibility); zoo names and hub ids as they are."""
    if model_id.startswith("/"):
        return "…/" + "/".join(PurePosixPath(model_id).parts[-2:])
    return model_id


def for_display(r: ComparisonResult) -> ComparisonResult:
    """The result as the page's titles, prose and figures name it: local checkpoint paths shortened
    (:func:`display_id`). The Reproducibility section reads the result itself."""
    models = {k: m.model_copy(update={"id": display_id(m.id)}) for k, m in r.models.items()}
    return r.model_copy(update={"models": models})


def _job_line(job: dict[str, Any] | None) -> str:
    """Where the page came from when a service rendered it: the job, its result, and its watch."""
    if not job or not job.get("id"):
        return ""
    v1 = (job.get("base_url") or "").rstrip("/") + "/v1"
    jid = job["id"]
    parts = [f'job <a class="mono" href="{e(v1)}/comparisons/{e(jid)}" id="job-link">{e(jid)}</a>',
             f'<a href="{e(v1)}/comparisons/{e(jid)}/result">result.json</a>',
             f'<a href="{e(v1)}/comparisons/{e(jid)}/artifacts">all files (CSV tables, plots)</a>']
    if job.get("watch_id"):
        parts.append(f'checkpoint <b>{e(job.get("checkpoint") or "")}</b> of watch '
                     f'<a class="mono" href="{e(v1)}/watches/{e(job["watch_id"])}/report">{e(job["watch_id"])}</a> '
                     "(trend report)")
    return '<div class="sub" id="job">' + " · ".join(parts) + "</div>"


def render_html(result: dict | ComparisonResult, plots: list[Plot] | None = None,
                job: dict[str, Any] | None = None) -> str:
    """The report page as one string. ``plots`` lets :func:`render_report` reuse the figures it
    also writes as files; without it they are drawn here. ``job``: ``{id, watch_id, checkpoint,
    base_url}`` when a service's worker renders it (links back to the job and its watch)."""
    from .plots import make_plots  # matplotlib import stays lazy for callers that only validate

    full = result if isinstance(result, ComparisonResult) else ComparisonResult.model_validate(result)
    r = for_display(full)
    plots = make_plots(r) if plots is None else plots
    by_name = {p.name: p for p in plots}
    t, s = r.models["teacher"].id, r.models["student"].id
    status = _match_status(r)
    title = f"circuitdiff: {t} → {s} on {r.task.name}"

    influence = _figure(
        by_name.get("influence"), f"Influence heatmaps of {t} and {s}",
        "Each cell is one attention head (columns: layers, rows: heads); its colour is the absolute change of the "
        "logit difference when that head alone is ablated. Teacher and student share one colour scale, so the same "
        "colour means the same effect on the task. Bars below: the same measure for each layer's MLP, on a shared axis.")
    matching = _figure(
        by_name.get("matching"), "Matching of student to teacher components",
        "Lines join each pair used in the alignment score; wider lines are more similar pairs. Green: similarity at or "
        "above the threshold; red dashed: the best match is below it. Marker area shows each component's share of its "
        "model's total influence; hollow grey markers are components that take part in no pair.")
    similarity = _figure(
        by_name.get("similarity"), "Similarity matrices",
        f"Head similarity ({e(r.similarity.head_method)}): mean over query positions of the cosine between the two "
        f"heads' mean attention rows. MLP similarity: {e(r.similarity.mlp_method)}. Boxes mark the pairs chosen by the "
        "matching; white lines separate layers.")
    drops = _figure(
        by_name.get("drops"), "Histograms of performance drop per ablated component",
        "The paper's 'percentage drop from full performance': for every component, 100 − retained % when it alone is "
        "ablated (clamped to 0–100). A brittle model has more mass to the right. Dashed line: mean drop.")
    attention = "".join(
        _figure(p, f"Mean attention patterns of {p.title}",
                "Mean attention over prompts (query rows, key columns; for causal models the upper triangle is blank "
                "because a token cannot attend forward). Teacher left, student right, one colour scale per pair; "
                "a leading · marks a token that starts with a space. Axis labels are the tokens of one prompt; the "
                "pattern is a position-wise mean over all prompts, so labels are exact where prompts share a template.")
        for p in plots if p.name.startswith("attention_"))
    if not attention:
        attention = "<p>This result carries no attention views (masked models or no head pairs).</p>"
    circuits = circuits_section.section(r, _figure(
        by_name.get("circuit_transfer"), "The teacher circuit on the student against null controls",
        "Diamond: the student's performance with only the mapped teacher circuit kept. Grey: mean and 95% interval of "
        "the null circuits. Dashed: the student's own circuit.") + _figure(
        by_name.get("circuit_faithfulness"), "Faithfulness curves of both models",
        "Each model with only its k most influential components kept (the rest ablated), k as a fraction of its "
        "components; 0 = everything ablated, 1 = the full model (MIB's normalisation). CPR is the area under a "
        "curve, CMD the area between it and 1."))

    nav = "".join(f'<a href="#{k}">{v}</a>' for k, v in (
        ("summary", "Summary"), ("influence", "Influence"), ("matching", "Matching"), ("similarity", "Similarity"),
        ("drops", "Robustness"), *((("circuits", "Circuits"),) if r.circuits is not None else ()),
        ("attention", "Attention"), ("reproducibility", "Reproducibility")))

    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{content_security_policy()}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="circuitdiff {e(r.engine.get('circuitdiff', ''))}">
<title>{e(title)}</title>
<link rel="icon" href="data:,">
<style>{CSS}</style>
</head>
<body>
<header>
<h1>circuitdiff report: <span class="teacher mono" id="teacher-id">{e(t)}</span> → <span class="student mono" id="student-id">{e(s)}</span></h1>
<div class="sub">task <b>{e(r.task.name)}</b> · {r.task.n_prompts} prompts · created {e(r.created_at)} · result schema v{r.schema_version}</div>
{_job_line(job)}
</header>
<nav>{nav}</nav>
<main>
{_summary(r)}
<section id="influence"><h2>Which components matter</h2>
{influence}
{_estimated_note(r)}
<details open><summary>Teacher components ({len(r.influence['teacher'])})</summary><div class="scroll">{_component_table(r, 'teacher', status['teacher'])}</div></details>
<details open><summary>Student components ({len(r.influence['student'])})</summary><div class="scroll">{_component_table(r, 'student', status['student'])}</div></details>
</section>
<section id="matching"><h2>Which student component plays which teacher role</h2>
{matching}
<h3>Pairs in the alignment score</h3>
<p>Alignment A = (1/N) Σ S·(1 − |Î<sub>S</sub> − Î<sub>T</sub>|) over these N = {len(r.matches)} pairs, with
influences normalised over the list (Î = I / ΣI).</p>
<div class="scroll">{_matches_table(r)}</div>
</section>
<section id="similarity"><h2>Head and MLP similarity</h2>
{similarity}
</section>
<section id="drops"><h2>Robustness: how much one component costs</h2>
{drops}
</section>
{circuits}
<section id="attention"><h2>Attention patterns of matched head pairs</h2>
<p>Head pairs from the matching, chosen by the comparison for side-by-side views (the pairs with the
largest combined share of influence in the two models).</p>
{attention}
</section>
{_reproducibility(full)}
</main>
<footer>Generated by circuitdiff {e(r.engine.get('circuitdiff', ''))} from result.json (schema v{r.schema_version});
figures drawn with matplotlib {e(matplotlib.__version__)} on Python {e(platform.python_version())}.
Method: Haskins &amp; Adams, “Distilled Circuits”, arXiv 2505.10822. This page is self-contained and makes no
network requests.</footer>
<script>{JS}</script>
</body>
</html>
"""
