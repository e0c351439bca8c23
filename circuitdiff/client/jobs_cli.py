"""``circuitdiff jobs list|get|cancel --server URL``: your comparison jobs on a service, through the client.

``list`` and ``get`` print a line per job (``--json`` for the API's own JSON); ``cancel`` cancels a
queued job at once and asks a running one to stop. An API problem prints one line with its fix and
exits 2, as every other user error of the CLI (:mod:`circuitdiff.client.watch_cli` does the same).
"""

from __future__ import annotations

import argparse
import json

from .watch_cli import WatchCommandError, add_server_flags, call_server
from .wire import STATUSES


def add_jobs(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("jobs", help="list, inspect or cancel your comparison jobs on a service")
    jsub = p.add_subparsers(dest="jobs_command", required=True)

    q = jsub.add_parser("list", help="your jobs, newest first")
    add_server_flags(q)
    q.add_argument("--status", choices=STATUSES, default=None, help="only jobs in this state")
    q.add_argument("--limit", type=int, default=20, help="at most this many (default 20)")
    q.set_defaults(func=cmd_list)

    for name, func, text in (("get", cmd_get, "one job: status, stage, warnings, error"),
                             ("cancel", cmd_cancel, "cancel a queued job, or stop a running one")):
        q = jsub.add_parser(name, help=text)
        add_server_flags(q)
        q.add_argument("job_id")
        q.set_defaults(func=func)


def _line(j: dict) -> str:
    p = j.get("progress") or {}
    stage = f"{p['stage']} {p['done']}/{p['total']}" if p and j["status"] == "running" else ""
    spec = j.get("spec") or {}
    pair = f"{(spec.get('teacher') or {}).get('id', '?')} vs {(spec.get('student') or {}).get('id', '?')}"
    what = j.get("checkpoint") and f"watch {j['watch_id']} {j['checkpoint']}" or pair
    return f"{j['id']}  {j['status']:9s} {j['created_at'][:19]}  {spec.get('task', '?'):8s} {what}  {stage}".rstrip()


def _dump(job) -> dict:
    return job.model_dump(mode="json")


def cmd_list(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise WatchCommandError("--limit must be at least 1")

    def take(c):
        out = []
        for job in c.list(status=args.status, page_size=min(args.limit, 100)):
            out.append(_dump(job))
            if len(out) >= args.limit:
                break
        return out

    items = call_server(args, take)
    if args.json:
        print(json.dumps(items, indent=2))
    else:
        for j in items:
            print(_line(j))
    return 0


def _details(j: dict) -> list[str]:
    lines = [_line(j)]
    if j.get("queue_position"):
        lines.append(f"  queue position {j['queue_position']}")
    p = j.get("progress") or {}
    if p and j["status"] == "running":
        eta = p.get("eta_seconds")
        lines.append(f"  stage {p['stage']}: {p['done']}/{p['total']}" + (f", about {eta:.0f}s left" if eta else ""))
    for w in j.get("warnings") or []:
        lines.append(f"  warning: {w}")
    e = j.get("error")
    if e:
        lines.append(f"  error {e['code']}: {e['detail']}" + (f" (fix: {e['fix']})" if e.get("fix") else ""))
    if j["status"] == "succeeded":
        lines.append(f"  result: {j['links']['result']}   report: {j['links']['report']}")
    return lines


def cmd_get(args: argparse.Namespace) -> int:
    j = call_server(args, lambda c: _dump(c.get(args.job_id)))
    print(json.dumps(j, indent=2) if args.json else "\n".join(_details(j)))
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    j = call_server(args, lambda c: _dump(c.cancel(args.job_id)))
    if args.json:
        print(json.dumps(j, indent=2))
    elif j["status"] == "cancelled":
        print(f"{j['id']} cancelled")
    else:
        print(f"{j['id']} asked to stop; it stops at its next step (circuitdiff jobs get --server ... {j['id']})")
    return 0
