"""``circuitdiff report result.json --out report.html`` (and ``compare --report``).

The page goes to ``--out``; its plots (PNG + SVG) to a ``plots/`` folder beside it. Registered in
``circuitdiff/cli.py``'s ``COMMANDS``; also runnable as ``python -m circuitdiff.report``.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def check_report_path(out: str | Path) -> Path:
    """Fail before an expensive run, not after it: the page must be an .html file in an existing folder."""
    from .load import ResultFileError

    path = Path(out)
    if path.suffix.lower() not in (".html", ".htm"):
        raise ResultFileError(f"report path {out}: must end in .html", fix="e.g. --report report.html")
    if not path.parent.is_dir():
        raise ResultFileError(f"report path {out}: directory {path.parent} does not exist")
    return path


def write_report(result, out: str | Path) -> dict[str, Path]:
    """Render ``result`` (dict, ComparisonResult or result.json path) to the page ``out``."""
    from . import render_report

    path = check_report_path(out)
    return render_report(result, path.parent, html_name=path.name)


def add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="render a result.json as a self-contained HTML report with plots")
    p.add_argument("result", help="a result.json written by `circuitdiff compare`")
    p.add_argument("--out", default="report.html", help="the HTML page to write (plots go to plots/ beside it)")
    p.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    files = write_report(Path(args.result), args.out)
    n_plots = sum(1 for k in files if k.startswith("plots/") and k.endswith(".png"))
    print(f"report: {files[Path(args.out).name]}  ({n_plots} plots as PNG + SVG in {Path(args.out).parent / 'plots'})")
    return 0
