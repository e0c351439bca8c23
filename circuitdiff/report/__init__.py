"""The comparison report: ``result.json`` → one self-contained ``report.html`` + plots (PNG, SVG).

    from circuitdiff.report import render_report
    files = render_report(result, Path("out"))   # {"report.html": ..., "plots/influence.png": ...}

Torch-free: a stored result can be re-rendered anywhere matplotlib is installed.
"""

from __future__ import annotations

from pathlib import Path

from ..result import ComparisonResult
from .load import ResultFileError, load_result

__all__ = ["render_report", "render_html", "load_result", "ResultFileError"]


def render_html(result: dict | ComparisonResult) -> str:
    """The self-contained report page for a result (dict as in result.json, or the model)."""
    from .html import render_html as _render

    return _render(load_result(result))


def render_report(result: dict | ComparisonResult | str | Path, out_dir: Path,
                  html_name: str = "report.html", job: dict | None = None) -> dict[str, Path]:
    """Write ``out_dir/<html_name>`` and ``out_dir/plots/<figure>.png|svg`` (``job``: see
    :func:`circuitdiff.report.html.render_html`).

    Returns every written file keyed by its path relative to ``out_dir`` (the worker's artifact
    names). The HTML is written last, through a temporary name, so a reader never sees half a page.
    """
    from .html import for_display, render_html as _render
    from .plots import make_plots, save_plots

    r = load_result(result)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = make_plots(for_display(r))  # figures name a local checkpoint by its last path parts
    try:
        written = {f"plots/{name}": path for name, path in save_plots(plots, out_dir / "plots").items()}
        page = _render(r, plots, job)
    finally:
        for p in plots:
            p.figure.clear()
    html_path = out_dir / html_name
    tmp = html_path.with_name(f".{html_path.name}.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(html_path)
    written[html_name] = html_path
    return written
