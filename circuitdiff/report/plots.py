"""The report's figures (matplotlib, Agg, no pyplot state): each function takes a validated result
and returns a ``Figure``; :func:`make_plots` builds them all and :func:`save_plots` writes PNG + SVG.

Conventions shared by every figure: the teacher is drawn first (left), the student second; teacher
blue, student orange; component ids as in docs/design.md. Text from the result (token strings) is drawn
with mathtext off, so a ``$`` in a user's prompt is a dollar sign and not LaTeX.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: the worker and CI have no display

import numpy as np
from matplotlib import colors, patheffects
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator

from ..result import AttentionView, ComparisonResult
from ..vocabulary import N_ATTENTION_VIEWS, layer_key, parse_component
from .summary import SIDES, component_drops

COLORS = {"teacher": "#3b6ea5", "student": "#d9822b"}
MATCHED, BELOW = "#2e7d4f", "#c0392b"
NEAR_TIE = "#e08a00"  # a near-tie match's runner-up (matches[].ambiguous)
INFLUENCE_CMAP = "OrRd"
SIMILARITY_CMAP = "viridis"
ATTENTION_CMAP = "inferno"  # as the paper's attention heatmaps (docs/authors-code.md §3.8)
RC = {
    "text.parse_math": False,
    "text.usetex": False,
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "svg.fonttype": "path",  # text as outlines: the SVG carries no markup from the result
}
PNG_DPI = 130
ANNOTATE_MAX_CELLS = 160


@dataclass
class Plot:
    name: str  # file stem: plots/<name>.png|svg
    title: str
    figure: Figure
    _png: bytes | None = None

    def png(self) -> bytes:
        """PNG bytes, drawn once: the report embeds the same image it writes to plots/."""
        if self._png is None:
            self._png = figure_bytes(self.figure, "png", dpi=PNG_DPI)
        return self._png


def _cell_text_color(value: float, norm: colors.Normalize, cmap) -> str:
    r, g, b, _ = cmap(norm(value))
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"


def _head_grid(r: ComparisonResult, side: str) -> np.ndarray:
    """influence: [head, layer] (heads down, layers across, so MLP bars line up with the columns)."""
    m = r.models[side]
    grid = np.full((m.n_heads, m.n_layers), np.nan)
    for cid, c in r.influence[side].items():
        comp = parse_component(cid)
        if comp.head is not None:
            grid[comp.head, comp.layer] = c.influence
    return grid


def _mlp_row(r: ComparisonResult, side: str) -> np.ndarray:
    """influence: [layer]"""
    row = np.full(r.models[side].n_layers, np.nan)
    for cid, c in r.influence[side].items():
        comp = parse_component(cid)
        if comp.head is None:
            row[comp.layer] = c.influence
    return row


def influence_figure(r: ComparisonResult) -> Figure:
    grids = {s: _head_grid(r, s) for s in SIDES}
    mlps = {s: _mlp_row(r, s) for s in SIDES}
    vmax = max(float(np.nanmax(g)) if np.isfinite(g).any() else 0.0 for g in grids.values()) or 1.0
    bar_max = max(float(np.nanmax(m)) if np.isfinite(m).any() else 0.0 for m in mlps.values()) or 1.0
    norm = colors.Normalize(0, vmax)
    cmap = matplotlib.colormaps[INFLUENCE_CMAP]
    n_t, n_s = (r.models[s].n_layers for s in SIDES)
    n_heads = max(r.models[s].n_heads for s in SIDES)
    cell = min(0.55, 7.5 / (n_t + n_s))
    fig = Figure(figsize=(max(7.0, cell * (n_t + n_s) + 2.6), cell * n_heads + 2.6), layout="constrained")
    gs = fig.add_gridspec(2, 3, width_ratios=[n_t, n_s, 0.25], height_ratios=[n_heads, max(1.6, n_heads / 3)])
    annotate = n_heads * (n_t + n_s) <= ANNOTATE_MAX_CELLS
    im = None
    bar_axes = []
    for col, side in enumerate(SIDES):
        g = grids[side]
        ax = fig.add_subplot(gs[0, col])
        im = ax.imshow(g, cmap=cmap, norm=norm, aspect="auto", interpolation="nearest")
        ax.set_title(f"{side}: {r.models[side].id}", color=COLORS[side], fontweight="bold", loc="left")
        ax.set_xticks(range(g.shape[1]))
        ax.set_xticklabels([])
        ax.set_yticks(range(g.shape[0]))
        ax.set_yticklabels([f"H{h}" for h in range(g.shape[0])])
        if col == 0:
            ax.set_ylabel("head")
        if annotate:
            for (h, l), v in np.ndenumerate(g):
                if np.isfinite(v):
                    ax.text(l, h, f"{v:.2f}", ha="center", va="center", fontsize=7,
                            color=_cell_text_color(v, norm, cmap))
        bx = fig.add_subplot(gs[1, col])
        row = mlps[side]
        x = np.arange(len(row))
        bx.bar(x, np.nan_to_num(row), width=0.8, color=COLORS[side], alpha=0.85)
        bx.set_xlim(-0.5, len(row) - 0.5)
        bx.set_ylim(0, bar_max * 1.25)
        bx.set_xticks(x)
        bx.set_xticklabels([f"L{l}" for l in x])
        bx.set_xlabel("layer")
        if col == 0:
            bx.set_ylabel("MLP influence")
        if len(row) <= 24:
            for xi, v in zip(x, row):
                if np.isfinite(v):
                    bx.text(xi, v, f"{v:.2f}", ha="center", va="bottom", fontsize=7)
        bar_axes.append(bx)
    bar_axes[1].sharey(bar_axes[0])
    cax = fig.add_subplot(gs[0, 2])
    m = r.metric
    fig.colorbar(im, cax=cax, label=f"head influence |Δ{m.short}| ({m.units})")
    fig.add_subplot(gs[1, 2]).set_axis_off()
    fig.suptitle(f"Influence of each component: |{m.label} change| when it alone is ablated", fontsize=11)
    return fig


def _nodes(r: ComparisonResult, side: str) -> list[str]:
    return sorted(r.influence[side], key=layer_key)


def matching_figure(r: ComparisonResult) -> Figure:
    """Teacher components on the left, student on the right, one line per pair."""
    nodes = {s: _nodes(r, s) for s in SIDES}
    n_max = max(len(v) for v in nodes.values())
    height = min(18.0, max(4.5, 0.26 * n_max + 1.8))
    fig = Figure(figsize=(6.2, height), layout="constrained")
    ax = fig.add_subplot()
    ax.set_axis_off()
    xs = {"teacher": 0.0, "student": 1.0}
    ys = {s: dict(zip(v, np.linspace(1, 0, len(v)) if len(v) > 1 else [0.5])) for s, v in nodes.items()}
    label_every = max(1, int(np.ceil(n_max / 70)))
    status: dict[str, dict[str, str]] = {s: {c: "none" for c in nodes[s]} for s in SIDES}
    for m in r.matches:
        for side, cid in (("teacher", m.teacher), ("student", m.student)):
            if cid in status[side] and status[side][cid] != "matched":
                status[side][cid] = "matched" if m.matched else "below"
    sims = [m.similarity for m in r.matches if not m.duplicated]
    # Width spans at least 0.2 of similarity, so that differences in the third decimal stay thin.
    hi = max(1.0, max(sims, default=1.0))
    lo = min(min(sims, default=0.0), hi - 0.2)
    for m in r.matches:
        if m.duplicated or m.teacher not in ys["teacher"] or m.student not in ys["student"]:
            continue
        w = 0.4 + 3.6 * max(0.0, (m.similarity - lo) / (hi - lo))
        ax.plot([xs["teacher"], xs["student"]], [ys["teacher"][m.teacher], ys["student"][m.student]],
                color=MATCHED if m.matched else BELOW, lw=w, alpha=0.55 if m.matched else 0.45,
                ls="-" if m.matched else (0, (3, 2)), solid_capstyle="round", zorder=1)
    near_tie = False
    for m in r.matches:  # a near-tie: the runner-up, drawn dotted from the same source component
        if not m.ambiguous or m.duplicated or not m.runner_up:
            continue
        t_id, s_id = (m.runner_up, m.student) if m.runner_up in ys["teacher"] else (m.teacher, m.runner_up)
        if t_id in ys["teacher"] and s_id in ys["student"]:
            near_tie = True
            ax.plot([xs["teacher"], xs["student"]], [ys["teacher"][t_id], ys["student"][s_id]], color=NEAR_TIE,
                    lw=1.6, ls=(0, (1, 1.5)), zorder=2)
    for side in SIDES:
        infl = {c: r.influence[side][c].influence for c in nodes[side]}
        total = sum(infl.values()) or 1.0
        for i, cid in enumerate(nodes[side]):
            head = parse_component(cid).head
            st = status[side][cid]
            face = COLORS[side] if st != "none" else "white"
            edge = {"matched": "black", "below": BELOW, "none": "#888888"}[st]
            size = 25 + 500 * infl[cid] / total
            ax.scatter(xs[side], ys[side][cid], s=size, marker="o" if head is not None else "s",
                       facecolor=face, edgecolor=edge, linewidth=1.3 if st != "matched" else 0.8, zorder=3)
            if i % label_every == 0:
                dx = -0.04 if side == "teacher" else 0.04
                ax.text(xs[side] + dx, ys[side][cid], cid, ha="right" if side == "teacher" else "left",
                        va="center", fontsize=8 if n_max <= 40 else 6,
                        color="#888888" if st == "none" else "black",
                        fontstyle="italic" if st == "none" else "normal")
    for side in SIDES:
        ax.text(xs[side], 1.0 + 0.9 / n_max + 0.02, f"{side}\n{r.models[side].id}", ha="center", va="bottom",
                fontsize=10, fontweight="bold", color=COLORS[side])
    ax.set_xlim(-0.32, 1.32)
    ax.set_ylim(-0.04, 1.0 + 2.8 / n_max + 0.06)
    handles = [
        Line2D([], [], color=MATCHED, lw=3, label="pair at/above threshold"),
        Line2D([], [], color=BELOW, lw=2, ls=(0, (3, 2)), label="pair below threshold"),
        *([Line2D([], [], color=NEAR_TIE, lw=1.6, ls=(0, (1, 1.5)), label="near-tie: the runner-up")] if near_tie else []),
        Line2D([], [], ls="", marker="o", mfc="#bbbbbb", mec="black", ms=8, label="head (area ∝ influence share)"),
        Line2D([], [], ls="", marker="s", mfc="#bbbbbb", mec="black", ms=8, label="MLP"),
        Line2D([], [], ls="", marker="o", mfc="white", mec="#888888", ms=8, label="in no pair (unmatched)"),
    ]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=2, frameon=False, fontsize=8)
    direction = "each student component → its most similar teacher component" if r.alignment.direction == \
        "student_to_teacher" else "each teacher component → its most similar student component"
    fig.suptitle(f"Matching: {direction}\n(line width: similarity {lo:.2f} thinnest … {hi:.2f} thickest)", fontsize=10)
    return fig


def similarity_figure(r: ComparisonResult) -> Figure:
    """Student components (rows) × teacher components (cols), heads and MLPs each on their own
    colour scale (the two similarities are different measures); the chosen pairs are boxed."""
    mats = [(r.similarity.heads, f"heads ({r.similarity.head_method})"),
            (r.similarity.mlps, f"MLPs ({r.similarity.mlp_method})")]  # title's first word names the colour bar
    mats = [(m, t) for m, t in mats if m.rows and m.cols]
    if not mats:
        fig = Figure(figsize=(6, 1.5))
        fig.text(0.5, 0.5, "this result has no similarity matrices", ha="center", va="center")
        return fig
    n_cols = sum(len(m.cols) for m, _ in mats) or 1
    n_rows = max((len(m.rows) for m, _ in mats), default=1)
    cell = min(0.42, 11.0 / n_cols)
    fig = Figure(figsize=(max(7.0, cell * n_cols + 3.6), max(3.2, cell * n_rows + 2.2)), layout="constrained")
    ratios = []
    for m, _ in mats:
        ratios += [max(len(m.cols), 1.5), 0.25]
    gs = fig.add_gridspec(1, len(ratios), width_ratios=ratios)
    pairs = {(p.student, p.teacher): p.matched for p in r.matches if not p.duplicated}
    cmap = matplotlib.colormaps[SIMILARITY_CMAP]
    outline = [patheffects.withStroke(linewidth=4.5, foreground="white")]
    for k, (mat, title) in enumerate(mats):
        v = np.asarray(mat.values, dtype=float)  # [student component, teacher component]
        finite = v[np.isfinite(v)]
        lo = float(np.floor(finite.min() * 10) / 10) if finite.size else 0.0
        norm = colors.Normalize(min(lo, 0.9), max(1.0, float(finite.max()) if finite.size else 1.0))
        ax = fig.add_subplot(gs[0, 2 * k])
        im = ax.imshow(v, cmap=cmap, norm=norm, aspect="auto", interpolation="nearest")
        ax.set_title(title, loc="left")
        small = len(mat.cols) <= 48 and len(mat.rows) <= 48
        ax.set_xticks(range(len(mat.cols)))
        ax.set_xticklabels(mat.cols, rotation=90, fontsize=7 if small else 4)
        ax.set_yticks(range(len(mat.rows)))
        ax.set_yticklabels(mat.rows, fontsize=7 if small else 4)
        ax.set_xlabel("teacher", color=COLORS["teacher"], fontweight="bold")
        if k == 0:
            ax.set_ylabel("student", color=COLORS["student"], fontweight="bold")
        for line, ids in ((ax.axvline, mat.cols), (ax.axhline, mat.rows)):
            layers = [parse_component(c).layer for c in ids]
            for i in range(1, len(layers)):
                if layers[i] != layers[i - 1]:  # layer boundaries
                    line(i - 0.5, color="white", lw=1.2)
        if v.size <= ANNOTATE_MAX_CELLS:
            for (i, j), x in np.ndenumerate(v):
                ax.text(j, i, f"{x:.2f}", ha="center", va="center", fontsize=6,
                        color=_cell_text_color(x, norm, cmap))
        for i, s in enumerate(mat.rows):
            for j, t in enumerate(mat.cols):
                if (s, t) in pairs:
                    ok = pairs[(s, t)]
                    box = Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, lw=2.2, edgecolor="black" if ok else BELOW,
                                    ls="-" if ok else (0, (2, 1.5)), zorder=4)
                    box.set_path_effects(outline)
                    ax.add_patch(box)
        fig.colorbar(im, cax=fig.add_subplot(gs[0, 2 * k + 1]), label=title.split(" ")[0][:-1] + " similarity")
    fig.suptitle("Similarity of student and teacher components (boxes: the chosen pairs; black ≥ threshold, "
                 "red dashed below)", fontsize=10)
    return fig


def drops_figure(r: ComparisonResult) -> Figure:
    """The paper's 'percentage drop from full performance' histograms, one panel per model."""
    fig = Figure(figsize=(8.0, 3.4), layout="constrained")
    axes = fig.subplots(1, 2, sharex=True)
    bins = np.arange(0, 101, 10)
    drops = {s: component_drops(r, s) for s in SIDES}
    ymax = max((np.histogram(list(d.values()), bins)[0].max() for d in drops.values() if d), default=1)
    for ax, side in zip(axes, SIDES):
        d = drops[side]
        ax.set_title(f"{side}: {r.models[side].id}", color=COLORS[side], fontweight="bold", loc="left")
        ax.set_xlabel("percentage drop from full performance")
        ax.set_xticks(bins)
        ax.set_xlim(0, 100)
        if d is None:
            why = (f"the metric {r.metric.name} has no retained %" if r.metric.retained is None else
                   "clean value not of the right sign\n(the model does not perform the task)")
            ax.text(50, 0.5, f"no drops: {why}",
                    ha="center", va="center", transform=ax.get_xaxis_transform(), color="#555555")
            ax.set_yticks([])
            continue
        counts, _, bars = ax.hist(list(d.values()), bins=bins, color=COLORS[side], edgecolor="white")
        ax.bar_label(bars, labels=[str(int(c)) if c else "" for c in counts], fontsize=7)
        ax.set_ylim(0, ymax * 1.18)
        ax.set_ylabel("number of components")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        rob = getattr(r.robustness, side)
        mean = rob.mean_drop if rob is not None else float(np.mean(list(d.values())))
        ax.axvline(mean, color="black", ls="--", lw=1)
        sev = f"\nseverity {rob.severity:.3f}" if rob is not None else ""
        ax.text(0.97, 0.95, f"mean drop {mean:.1f}%{sev}", fontsize=8, va="top", ha="right", transform=ax.transAxes,
                bbox={"boxstyle": "round,pad=0.3", "fc": "white", "ec": "#cccccc"})
    fig.suptitle(f"Single-component ablation: how much performance each of the "
                 f"{len(r.influence['teacher'])} / {len(r.influence['student'])} components costs", fontsize=10)
    return fig


def _token_label(tok: str) -> str:
    """Show whitespace that matters for tokens (a leading space, a newline) and keep labels short."""
    t = tok.replace("\n", "⏎").replace("\t", "⇥")
    if t.startswith(" "):
        t = "·" + t[1:]
    t = "".join(ch if ch.isprintable() else "�" for ch in t)
    return (t[:14] + "…") if len(t) > 15 else (t or "∅")


def attention_figure(r: ComparisonResult, view: AttentionView) -> Figure:
    """Mean attention (over prompts) of a matched pair: query rows × key columns; lower triangle
    for causal models (a masked LM attends both ways, so its whole matrix is shown)."""
    labels = [_token_label(t) for t in view.tokens]
    n = len(labels)
    side = min(5.0, max(3.2, 0.26 * n + 1.3))
    rows = max(len(view.teacher_pattern), len(view.student_pattern))
    height = side + 0.6 if rows >= n else min(side + 0.6, 0.26 * rows + 2.4)
    fig = Figure(figsize=(2 * side + 1.0, height), layout="constrained")
    gs = fig.add_gridspec(1, 3, width_ratios=[1, 1, 0.06])
    pats = {"teacher": np.asarray(view.teacher_pattern, dtype=float),
            "student": np.asarray(view.student_pattern, dtype=float)}  # [query, key]
    # The first query can only attend to itself (weight 1 in every causal head): scaling to it would
    # darken everything else, so the scale stops at the largest weight of the other rows.
    causal = {s: r.models[s].family == "causal" and pats[s].shape[0] == pats[s].shape[1] for s in SIDES}
    rest = [p[1:] if causal[s] and p.shape[0] > 1 else p for s, p in pats.items()]
    vmax = max((float(np.nanmax(p)) for p in rest if p.size), default=1.0) or 1.0
    cmap = matplotlib.colormaps[ATTENTION_CMAP].with_extremes(bad="#f2f2f2")
    im = None
    heads = {"teacher": view.teacher, "student": view.student}
    for k, s in enumerate(SIDES):
        p = pats[s].copy()  # [query, key]; word-aligned views may carry only the end query's row
        if causal[s]:
            p[np.triu_indices(p.shape[0], 1)] = np.nan  # keys after the query are never attended
        q_labels = labels[len(labels) - p.shape[0]:] if p.shape[0] <= len(labels) else [str(i) for i in range(p.shape[0])]
        k_labels = labels if p.shape[1] == len(labels) else [str(i) for i in range(p.shape[1])]
        ax = fig.add_subplot(gs[0, k])
        im = ax.imshow(p, cmap=cmap, vmin=0, vmax=vmax, interpolation="nearest")
        ax.set_title(f"{s} {heads[s]}  ({r.models[s].id})", color=COLORS[s], fontweight="bold", loc="left",
                     fontsize=9)
        fs = 8 if n <= 20 else 6 if n <= 40 else 4
        ax.set_xticks(range(p.shape[1]))
        ax.set_xticklabels(k_labels, rotation=90, fontsize=fs)
        ax.set_yticks(range(p.shape[0]))
        ax.set_yticklabels(q_labels if k == 0 else [], fontsize=fs)
        ax.set_xlabel("key")
        if k == 0:
            ax.set_ylabel("query")
        ax.spines[["left", "bottom"]].set_visible(False)
    fig.colorbar(im, cax=fig.add_subplot(gs[0, 2]), label="mean attention", extend="max" if vmax < 1 else "neither")
    fig.suptitle(f"teacher {view.teacher} ↔ student {view.student}: similarity {view.similarity:.3f}", fontsize=10)
    return fig


def transfer_figure(r: ComparisonResult) -> Figure:
    """The teacher circuit run on the student against its null controls (kept %, 95% intervals)."""
    c = r.circuits
    tr = c.diff.transfer
    fig = Figure(figsize=(7.0, 0.9 + 0.55 * (len(tr.nulls) + 1)), layout="constrained")
    ax = fig.subplots()
    labels = [f"{k} null ({n.n} draws)" for k, n in tr.nulls.items()] + ["mapped teacher circuit"]
    for y, n in enumerate(tr.nulls.values()):
        ax.plot(n.ci95, [y, y], color="#777777", lw=4, solid_capstyle="butt")
        ax.plot([n.mean], [y], "o", color="#444444")
        ax.text(n.ci95[1], y + 0.22, f" p = {n.p_value:.3g}", fontsize=8, va="center", color="#444444")
    y = len(tr.nulls)
    ax.plot([tr.kept_pct], [y], "D", color=COLORS["student"], ms=9)
    if c.student is not None:
        ax.axvline(c.student.kept_pct, color=COLORS["student"], ls="--", lw=1)
        ax.text(c.student.kept_pct, y + 0.45, " student's own circuit", fontsize=8, color=COLORS["student"])
    ax.set_yticks(range(len(labels)), labels)
    ax.set_ylim(-0.6, y + 0.8)
    ax.set_xlabel("performance with only these components kept, % of the student's clean logit difference")
    return fig


def faithfulness_figure(r: ComparisonResult) -> Figure:
    """Both models' faithfulness curves on one axis: the top-k components by influence kept, for
    growing k as a fraction of each model's components (MIB's CPR is the area under each)."""
    fig = Figure(figsize=(7.0, 3.4), layout="constrained")
    ax = fig.subplots()
    for side in SIDES:
        f = r.circuits.faithfulness.get(side)
        if f is None:
            continue
        n = max(f.sizes[-1], 1)
        ax.plot([k / n for k in f.sizes], f.faithfulness, "-o", ms=3, color=COLORS[side],
                label=f"{side} (CPR {f.cpr:.3f}, CMD {f.cmd:.3f})")
    ax.axhline(1.0, color="#999999", lw=0.8, ls="--")
    ax.set_xlim(0, 1)
    ax.set_xlabel("circuit size: the k most influential components kept, as a fraction of the model's")
    ax.set_ylabel("faithfulness (0: all ablated, 1: full model)")
    ax.legend(loc="lower right", fontsize=8)
    return fig


def _verdict_words(r: ComparisonResult) -> str:
    a = r.alignment
    if a.verdict:
        return a.verdict.replace("_", " ").upper()
    return "ABOVE CHANCE" if a.above_chance else "NOT ABOVE CHANCE" if a.above_chance is False else "NOT CALIBRATED"


def summary_figure(r: ComparisonResult) -> Figure:
    """The report's summary as one 16:9 picture to paste into a slide: the verdict, the score with its
    interval against the chance null, the depth reference and the controls on one axis, and the
    numbers behind them."""
    a, t, s = r.alignment, r.models["teacher"], r.models["student"]
    import textwrap

    fig = Figure(figsize=(12.8, 7.2))
    fig.text(0.03, 0.95, f"{t.id}  →  {s.id}   ·   task {r.task.name}, {r.task.n_prompts} prompts", fontsize=15,
             va="top")
    ci = f"  [95% {a.ci95[0]:.3f}, {a.ci95[1]:.3f}]" if a.ci95 else ""
    score = "—" if a.score is None else f"{a.score:.3f}"
    fig.text(0.03, 0.88, _verdict_words(r), fontsize=30, fontweight="bold", va="top",
             color=MATCHED if a.verdict in ("kept_teacher_components", "beyond_depth_reference") else "#333333")
    fig.text(0.03, 0.77, f"alignment score {score}{ci}", fontsize=20, va="top")
    lines = []
    if a.verdict_reason:
        lines.append(a.verdict_reason)
    perf = r.performance
    lines.append("; ".join(f"{side} {r.metric.label} {perf[side].value:.2f}"
                           + ("" if perf[side].performs_task is not False else " (does not perform the task)")
                           for side in SIDES))
    fig.text(0.03, 0.69, "\n".join(textwrap.fill(x, 135) for x in lines), fontsize=11, va="top", color="#444444",
             linespacing=1.5)
    axis = fig.add_axes((0.27, 0.1, 0.68, 0.44))
    marks = []  # (value, interval, label, colour)
    if a.chance is not None:
        marks.append((a.chance.mean, a.chance.ci95, "chance (correspondence broken)", "#888888"))
    if a.depth_reference is not None:
        marks.append((a.depth_reference.score, a.depth_reference.ci95, "depth reference", "#7b6ca8"))
    for c in a.controls:
        if c.score is not None:
            marks.append((c.score, c.ci95, f"control {c.model}", "#b15928"))
    if a.score is not None:
        marks.append((a.score, a.ci95, f"student {s.id}", COLORS["student"]))
    values = [v for m in marks for v in ([m[0]] + list(m[1] or []))]
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    pad = max(0.02, (hi - lo) * 0.08)
    axis.set_xlim(max(0.0, lo - pad), min(1.0, hi + pad))
    for i, (v, interval, label, colour) in enumerate(marks):
        if interval:
            axis.plot(interval, [i, i], color=colour, lw=5, alpha=0.6, solid_capstyle="butt")
        axis.plot([v], [i], "o", color=colour, ms=11)
        axis.text(v, i + 0.28, f"{v:.3f}", ha="center", fontsize=10, color=colour)
    axis.set_yticks(range(len(marks)), [m[2] for m in marks], fontsize=11)
    axis.set_ylim(-0.6, len(marks) - 0.3)
    axis.set_xlabel("alignment score (dot; bar: 95% interval)", fontsize=11)
    axis.xaxis.set_major_locator(MaxNLocator(nbins=8))
    axis.grid(axis="x", color="#eeeeee")
    axis.tick_params(axis="x", labelsize=10)
    fig.suptitle("circuitdiff summary", fontsize=10, color="#777777", x=0.99, ha="right")
    return fig


def make_plots(r: ComparisonResult) -> list[Plot]:
    with matplotlib.rc_context(RC):
        plots = [
            Plot("summary", "Summary for a slide", summary_figure(r)),
            Plot("influence", "Influence heatmaps", influence_figure(r)),
            Plot("matching", "Matching", matching_figure(r)),
            Plot("similarity", "Head similarity", similarity_figure(r)),
            Plot("drops", "Drop histograms", drops_figure(r)),
        ]
        if r.circuits is not None and r.circuits.diff is not None:
            plots.append(Plot("circuit_transfer", "Circuit transfer", transfer_figure(r)))
        if r.circuits is not None and r.circuits.faithfulness:
            plots.append(Plot("circuit_faithfulness", "Faithfulness curves", faithfulness_figure(r)))
        for i, v in enumerate(r.attention[:N_ATTENTION_VIEWS], start=1):
            plots.append(Plot(f"attention_{i}", f"Attention {v.teacher} ↔ {v.student}", attention_figure(r, v)))
    return plots


def figure_bytes(fig: Figure, fmt: str, dpi: int = PNG_DPI) -> bytes:
    buf = io.BytesIO()
    with matplotlib.rc_context(RC):
        fig.savefig(buf, format=fmt, dpi=dpi, metadata={"Date": None} if fmt == "svg" else None)
    return buf.getvalue()


def save_plots(plots: list[Plot], plot_dir: Path) -> dict[str, Path]:
    plot_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for p in plots:
        for fmt in ("png", "svg"):
            path = plot_dir / f"{p.name}.{fmt}"
            path.write_bytes(p.png() if fmt == "png" else figure_bytes(p.figure, fmt))
            written[f"{p.name}.{fmt}"] = path
    # Re-rendering into the same folder: drop attention views a previous result had and this one lacks.
    for stale in plot_dir.glob("attention_*.*"):
        if stale.suffix in (".png", ".svg") and stale.name not in written:
            stale.unlink()
    return written
