"""``python -m circuitdiff.report result.json --out report.html``: the report command on its own."""

from __future__ import annotations

import argparse
import sys

from ..errors import CircuitdiffError
from .command import cmd_report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m circuitdiff.report", description=__doc__.splitlines()[0])
    parser.add_argument("result", help="a result.json written by `circuitdiff compare`")
    parser.add_argument("--out", default="report.html", help="the HTML page to write (plots go to plots/ beside it)")
    args = parser.parse_args(argv)
    try:
        return cmd_report(args)
    except CircuitdiffError as e:
        sys.stderr.write(f"error: {e.message}{f' ({e.fix})' if e.fix else ''}\n")
        return 2


if __name__ == "__main__":
    sys.exit(main())
