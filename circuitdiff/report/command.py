"""``circuitdiff report result.json --out report.html`` (and ``compare --report``), and
``circuitdiff diff A.json B.json [--report ab.html]`` (two results side by side).

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


def add_diff(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("diff", help="put two results side by side: score, verdict, influence shares, partners, circuits")
    p.add_argument("a", metavar="A.json", help="the first result (every difference is B - A)")
    p.add_argument("b", metavar="B.json", help="the second result")
    p.add_argument("--report", default=None, metavar="AB.html", help="also write the A/B page there")
    p.add_argument("--json", action="store_true", help="print the whole diff as JSON instead of the summary")
    p.set_defaults(func=cmd_diff)


def diff_lines(d: dict) -> list[str]:
    """The diff in a few lines a person reads (the A/B page has all of it)."""
    def n(x, nd=4, signed=False):
        return "—" if x is None else (f"{x:+.{nd}f}" if signed else f"{x:.{nd}f}")

    s, v, t = d["score"], d["verdict"], d["teacher"]
    ci = s.get("ci95")
    lines = [t["note"] + (" · same prompts" if d["same_prompts"] else " · different prompts"),
             f"A {d['a']['student']}: alignment {n(s['a'])}, {(v['a'] or '—').replace('_', ' ')}",
             f"B {d['b']['student']}: alignment {n(s['b'])}, {(v['b'] or '—').replace('_', ' ')}",
             f"B - A: {n(s['difference'], signed=True)}" + (f" [95% {n(ci[0], signed=True)}, {n(ci[1], signed=True)}]"
                                                            if ci else "") + f" ({s.get('method')})",
             f"verdict: {'unchanged' if not v['changed'] else v['direction'] + ' in B'}; margin above chance "
             f"A {n(v['chance']['a_margin'], 3, True)}, B {n(v['chance']['b_margin'], 3, True)}"]
    moved = [r for r in d["influence"]["student"] if abs(r["difference"]) >= 0.0005][:5]
    if moved:
        lines.append("student influence share, largest moves: "
                     + ", ".join(f"{r['component']} {100 * r['difference']:+.1f} pp" for r in moved))
    m = d["matches"]
    lines.append(f"{m['n_changed']} student components changed teacher partner"
                 + (": " + ", ".join(f"{c['student']} {c['a'] or 'none'} -> {c['b'] or 'none'}" for c in m["changed"][:6])
                    if m["changed"] else ""))
    c = d["circuits"]
    lines.append(c["note"] if c.get("note") else
                 f"circuits' Jaccard: student {n(c['student_jaccard'], 3)}, teacher {n(c['teacher_jaccard'], 3)}")
    return lines


def cmd_diff(args: argparse.Namespace) -> int:
    import json

    from ..analysis.diff import diff_results
    from .diff_page import render_diff
    from .load import load_result

    if args.report:
        check_report_path(args.report)
    a, b = (load_result(Path(x)).model_dump(mode="json") for x in (args.a, args.b))
    d = diff_results(a, b)
    print(json.dumps(d, indent=2) if args.json else "\n".join(diff_lines(d)))
    if args.report:
        out = Path(args.report)
        tmp = out.with_name(f".{out.name}.tmp")
        tmp.write_text(render_diff(d, args.a, args.b), encoding="utf-8")
        tmp.replace(out)
        if not args.json:
            print(f"report: {out}")
    return 0
