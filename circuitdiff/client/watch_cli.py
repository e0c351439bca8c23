"""``circuitdiff watch create|list|history|check|report|pause|resume|delete|deliveries --server URL``:
watches through the client.

``create`` takes the watch as JSON (``--spec FILE``, ``-`` for stdin) or builds it from flags; the
other commands print a table (``--json`` for the API's own JSON). An API problem prints one line
with its fix and exits 2, as every other user error of the CLI.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import CircuitdiffError
from .wire import TERMINAL


class WatchCommandError(CircuitdiffError):
    code = "watch_command_failed"


def add_watch(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("watch", help="compare every new checkpoint of a run against its teacher (on a service)")
    wsub = p.add_subparsers(dest="watch_command", required=True)

    common = add_server_flags

    q = wsub.add_parser("create", help="create a watch")
    common(q)
    q.add_argument("--spec", metavar="FILE", help="the whole watch as JSON (POST /v1/watches body); '-' reads stdin")
    q.add_argument("--name")
    q.add_argument("--teacher", help="zoo:NAME, a hub id or a checkpoint directory on the server")
    q.add_argument("--directory", help="checkpoint directory under a model root of the server")
    q.add_argument("--pattern", default="step-*", help="subdirectory glob (default: step-*)")
    q.add_argument("--settle-seconds", type=float, default=30, help="compare once unchanged this long (default 30)")
    q.add_argument("--hub", help="instead of --directory: a hub repo whose revisions are the checkpoints")
    q.add_argument("--revisions", choices=("branches", "tags", "commits"), default="branches")
    q.add_argument("--task", default="ioi")
    q.add_argument("--n-prompts", type=int, default=None)
    q.add_argument("--comparison", default=None, metavar="JSON", help="more comparison fields as a JSON object")
    q.add_argument("--interval-seconds", type=int, default=300)
    q.add_argument("--baseline", default="first", help='"first", "previous" or a checkpoint name')
    q.add_argument("--alignment-drop", type=float, default=None)
    q.add_argument("--logit-diff-drop-pct", type=float, default=None)
    q.add_argument("--no-stops-performing", action="store_true", help="do not alert when the student stops performing")
    q.add_argument("--webhook-url", default=None)
    q.add_argument("--webhook-secret", default=None,  # None: circuitdiff.cli.main fills it in
                   help="HMAC key (default: $CIRCUITDIFF_WEBHOOK_SECRET)")
    q.set_defaults(func=cmd_create)

    q = wsub.add_parser("list", help="your watches")
    common(q)
    q.set_defaults(func=cmd_list)

    for name, func, text in (("history", cmd_history, "every compared checkpoint, in order, with its verdict"),
                             ("check", cmd_check, "look for new checkpoints now"),
                             ("pause", cmd_pause, "stop checking (history and jobs stay)"),
                             ("resume", cmd_resume, "check again (at once, then every interval)"),
                             ("delete", cmd_delete, "stop the watch for good and cancel its unfinished jobs"),
                             ("deliveries", cmd_deliveries, "webhook delivery attempts, newest first")):
        q = wsub.add_parser(name, help=text)
        common(q)
        q.add_argument("watch_id")
        q.set_defaults(func=func)

    q = wsub.add_parser("report", help="write the HTML trend report")
    common(q)
    q.add_argument("watch_id")
    q.add_argument("--out", required=True, metavar="FILE.html")
    q.set_defaults(func=cmd_report)


def add_server_flags(q: argparse.ArgumentParser) -> None:
    """The flags of every command that talks to a service (``watch ...``, ``jobs ...``)."""
    q.add_argument("--server", required=True, metavar="URL", help="the circuitdiff service, e.g. http://127.0.0.1:8000")
    q.add_argument("--api-key", default=None, metavar="KEY",  # None: circuitdiff.cli.main fills it in
                   help="the API key (default: $CIRCUITDIFF_KEY)")
    q.add_argument("--json", action="store_true", help="print the API's JSON instead of a table")


def _spec_from_args(args: argparse.Namespace) -> dict:
    if args.spec:
        text = sys.stdin.read() if args.spec == "-" else Path(args.spec).read_text()
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise WatchCommandError(f"--spec: not JSON ({e})", fix="give the POST /v1/watches body as a JSON file")
    missing = [f for f in ("name", "teacher") if not getattr(args, f)]
    if not (args.directory or args.hub):
        missing.append("directory")
    if missing:
        raise WatchCommandError(f"missing --{', --'.join(missing)}", fix="give them, or the whole watch with --spec FILE")
    comparison = {"task": args.task}
    if args.n_prompts is not None:
        comparison["n_prompts"] = args.n_prompts
    if args.comparison:
        try:
            comparison.update(json.loads(args.comparison))
        except json.JSONDecodeError as e:
            raise WatchCommandError(f"--comparison: not JSON ({e})", fix='give an object like \'{"preset": "paper"}\'')
    checkpoints = ({"hub": args.hub, "revisions": args.revisions} if args.hub else
                   {"directory": args.directory, "pattern": args.pattern, "settle_seconds": args.settle_seconds})
    alerts: dict = {"stops_performing": not args.no_stops_performing}
    if args.alignment_drop is not None:
        alerts["alignment_drop"] = args.alignment_drop
    if args.logit_diff_drop_pct is not None:
        alerts["logit_diff_drop_pct"] = args.logit_diff_drop_pct
    if args.webhook_url:
        alerts["webhook"] = {"url": args.webhook_url, "secret": args.webhook_secret or ""}
    return {"name": args.name, "teacher": args.teacher, "checkpoints": checkpoints, "comparison": comparison,
            "interval_seconds": args.interval_seconds, "baseline": args.baseline, "alerts": alerts}


def _client(args: argparse.Namespace):
    from .http import Client

    return Client(args.server, api_key=args.api_key)


def call_server(args: argparse.Namespace, fn):
    """``fn(client)`` against ``--server``; an API problem or an unreachable server is one error line."""
    import httpx

    from .http import ApiError

    try:
        with _client(args) as c:
            return fn(c)
    except ApiError as e:
        first = e.errors[0] if e.errors else {}
        where = f"{first['field']}: " if first.get("field") else ""
        raise WatchCommandError(f"{e.status} {e.code}: {where}{first.get('message') or e.detail}",
                                fix=first.get("fix")) from None
    except httpx.TransportError as e:
        raise WatchCommandError(f"cannot reach {args.server} ({type(e).__name__})",
                                fix="check --server and that the service runs (make run)") from None


def _print_json(x) -> None:
    print(json.dumps(x, indent=2))


def _watch_line(w: dict) -> str:
    c = w["counts"]
    return (f"{w['id']}  {w['status']:7s} {w['name'][:28]:28s} checkpoints {c['checkpoints']:3d}  "
            f"regressions {c['regressions']:2d}  settling {c['settling']}"
            + (f"  last error: {w['last_error']}" if w.get("last_error") else ""))


def cmd_create(args: argparse.Namespace) -> int:
    spec = _spec_from_args(args)
    w = call_server(args, lambda c: c.create_watch(spec))
    _print_json(w) if args.json else print(_watch_line(w))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    items = call_server(args, lambda c: list(c.watches()))
    if args.json:
        _print_json(items)
    for w in [] if args.json else items:
        print(_watch_line(w))
    return 0


def _num(x, nd=3) -> str:
    return "—" if x is None else f"{x:.{nd}f}"


def cmd_history(args: argparse.Namespace) -> int:
    items = call_server(args, lambda c: c.watch_history(args.watch_id))
    if args.json:
        _print_json(items)
        return 0
    print(f"{'checkpoint':24s} {'status':9s} {'alignment':>9s} {'95% CI':>15s} {'student LD':>10s}  verdict")
    for h in items:
        ci = h.get("alignment_ci95")
        verdict = ("REGRESSION: " + ", ".join(r["rule"] for r in h["reasons"]) if h["regression"]
                   else "ok" if h["regression"] is False else "pending" if h["status"] not in TERMINAL
                   else h["status"])
        print(f"{h['checkpoint'][:24]:24s} {h['status']:9s} {_num(h['alignment']):>9s} "
              f"{(_num(ci[0]) + '–' + _num(ci[1])) if ci else '—':>15s} {_num(h['student_logit_diff']):>10s}  {verdict}")
        for r in h.get("reasons") or []:
            if r.get("message"):
                print(f"    {r['message']}")
        err = h.get("error") or {}
        if h["status"] != "succeeded" and err.get("detail"):
            print(f"    {err['detail']}" + (f" Fix: {err['fix']}" if err.get("fix") else ""))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    w = call_server(args, lambda c: c.check_watch(args.watch_id))
    _print_json(w) if args.json else print(f"checking {w['id']} now; history: {w['links']['history']}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if not out.parent.exists():
        raise WatchCommandError(f"--out {args.out}: directory {out.parent} does not exist", fix="create it first")
    page = call_server(args, lambda c: c.watch_report(args.watch_id))
    tmp = out.with_name(f".{out.name}.part")
    tmp.write_bytes(page)
    tmp.replace(out)
    print(f"trend report -> {out}")
    return 0


def _state_change(args: argparse.Namespace, fn, done: str) -> int:
    w = call_server(args, fn)
    _print_json(w) if args.json else print(f"{w['id']} {done}\n{_watch_line(w)}")
    return 0


def cmd_pause(args: argparse.Namespace) -> int:
    return _state_change(args, lambda c: c.update_watch(args.watch_id, paused=True), "paused")


def cmd_resume(args: argparse.Namespace) -> int:
    return _state_change(args, lambda c: c.update_watch(args.watch_id, paused=False), "resumed (checked now)")


def cmd_delete(args: argparse.Namespace) -> int:
    return _state_change(args, lambda c: c.delete_watch(args.watch_id),
                         "deleted (its unfinished jobs cancelled; history and report stay)")


def cmd_deliveries(args: argparse.Namespace) -> int:
    items = call_server(args, lambda c: c.watch_deliveries(args.watch_id))
    if args.json:
        _print_json(items)
        return 0
    print(f"{'at':19s} {'event':20s} {'try':>3s} {'answer':>6s}  id")
    for d in items:
        answer = str(d["status_code"]) if d.get("status_code") else "—"
        extra = f"  {d['error']}" if d.get("error") else ""
        extra += f"  (retry at {d['next_attempt_at'][:19]})" if d.get("next_attempt_at") else ""
        print(f"{d['at'][:19]:19s} {d['event']:20s} {d['attempt']:3d} {answer:>6s}  {d['id']}{extra}")
    return 0
