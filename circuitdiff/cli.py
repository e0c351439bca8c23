"""``circuitdiff`` command line: ``compare``, ``tasks``, ``models``.

A progress bar per stage goes to stderr (circuitdiff.progress_bar), a short human summary to stdout,
the full result to ``--out`` when given.
A user error prints one line (``error: ...``) and exits 2; nothing ever prints a traceback
(set CIRCUITDIFF_DEBUG=1 to see one). More subcommands (``report``) register in ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

from . import __version__
from .progress_bar import ProgressBar
from .report.command import add_diff, add_report, check_report_path, write_report
from .metrics import METRICS
from .settings import CliSettings, EngineSettings, SettingsError, quiet_tokenizers, use
from .vocabulary import (
    CIRCUIT_THRESHOLD, SCREEN_TOP, Ablation, Bos, Device, Dtype, Estimator, Matching, Metric, MlpSimilarity, Preset, ScanMethod, choices,
)
from .client.jobs_cli import add_jobs
from .client.watch_cli import add_watch

EXIT_USER_ERROR = 2
EXIT_INTERNAL = 1


# ----------------------------------------------------------------------------- compare
def add_compare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="compare a teacher and a student on a task")
    p.add_argument("--teacher", required=True, help="zoo:NAME, a hub id, or a local checkpoint directory")
    p.add_argument("--student", required=True, help="zoo:NAME, a hub id, or a local checkpoint directory")
    p.add_argument("--teacher-revision", default=None, help="hub revision (branch, tag or commit) of the teacher")
    p.add_argument("--student-revision", default=None, help="hub revision of the student")
    p.add_argument("--control", action="append", default=[], metavar="MODEL",
                   help="a model of the student's size NOT distilled from the teacher, compared with it the same "
                        "way; repeatable (the verdict 'kept_teacher_components' needs the student beyond each)")
    p.add_argument("--task", required=True, help="ioi | sequence | qa | custom (see `circuitdiff tasks`)")
    p.add_argument("--task-option", action="append", default=[], metavar="K=V", help="task option, repeatable")
    p.add_argument("--dataset", default=None, help="custom task: a JSONL file (invalid lines are dropped with a "
                                                   "warning naming them, as an upload drops them)")
    p.add_argument("--strict", action="store_true",
                   help="refuse a --dataset file with any invalid line instead of dropping those lines")
    p.add_argument("--preset", choices=choices(Preset), default="default",
                   help="default, or paper: each task as the authors' notebook ran it")
    p.add_argument("--ablation", choices=choices(Ablation), default=None, help="default: the preset's")
    p.add_argument("--matching", choices=choices(Matching), default=None,
                   help="student_to_teacher (default), teacher_to_student, or one_to_one (optimal assignment)")
    p.add_argument("--mlp-similarity", choices=choices(MlpSimilarity), default=None,
                   help="cka (default preset), eigen (the authors' rescaled), eigen_raw (their IOI notebook's)")
    p.add_argument("--head-threshold", type=float, default=None, help="similarity a head pair needs to count as matched")
    p.add_argument("--mlp-threshold", type=float, default=None, help="likewise for MLP pairs")
    p.add_argument("--duplicate-unmatched", action=argparse.BooleanOptionalAction, default=None,
                   help="count below-threshold head pairs twice (the authors' quirk; paper preset)")
    p.add_argument("--n-prompts", "--prompts", dest="n_prompts", type=int, default=100,
                   help="number of prompts (default 100; the API's n_prompts; --prompts is the old spelling)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bos", choices=choices(Bos), default=None, help="causal models: prepend BOS (default) or not")
    p.add_argument("--bootstrap", type=int, default=None,
                   help="resamples of every confidence interval and of the match confidences (0 = none)")
    p.add_argument("--chance-draws", type=int, default=1000, help="permutations of the chance null (>= 1000)")
    p.add_argument("--device", choices=choices(Device), default="auto")
    p.add_argument("--dtype", choices=choices(Dtype), default="auto",
                   help="weights' dtype (auto: float32 up to 1e9 parameters, bfloat16 above); LDs and influences are "
                   "accumulated in float32 (bfloat16's accuracy against float32: the result's scan.precision)")
    p.add_argument("--metric", choices=choices(Metric), default="logit_diff",
                   help="what influence is measured on: logit_diff (the paper's), answer_prob, answer_logprob, kl "
                        "(from the clean next-token distribution) or loss (next-token loss of the text; kl and loss "
                        "also run plain-text datasets, lines {\"text\": ...})")
    p.add_argument("--scan", choices=choices(ScanMethod), default="exact",
                   help="influence scan method (naive = one forward per component, the reference; screened = "
                   "attribution everywhere, exact where it can change the top components)")
    p.add_argument("--screen-top", type=int, default=None, metavar="K",
                   help=f"with --scan screened: exact values for at least the K most influential components "
                   f"(default {SCREEN_TOP})")
    p.add_argument("--estimator", choices=choices(Estimator), default=None,
                   help="with --scan attribution or screened: gradient (gradient x activation, the default) or relp "
                   "(RelP's relevance rules; smaller largest errors on trained models, docs/method.md)")
    p.add_argument("--attribution-check", type=int, default=None, metavar="N",
                   help="with --scan attribution: exact-scan N sampled components and report the agreement")
    p.add_argument("--circuits", action="store_true",
                   help="find both models' circuits by iterative node pruning and diff them through the matching")
    p.add_argument("--circuit-threshold", type=float, default=None, metavar="T",
                   help=f"with --circuits: prune while performance stays within T points (default {CIRCUIT_THRESHOLD:g})")
    p.add_argument("--circuit-sweep", default=None, metavar="T1,T2,...",
                   help="with --circuits: also search these thresholds, e.g. 10,15,20,25,30")
    p.add_argument("--circuit-null-draws", type=int, default=None, metavar="N",
                   help="with --circuits: circuits per null control of the transfer (default 200)")
    p.add_argument("--no-cache", action="store_true",
                   help="do not read or write the activation cache ($CIRCUITDIFF_CACHE_DIR)")
    p.add_argument("--server", default=None, metavar="URL",
                   help="run on a circuitdiff service (e.g. http://127.0.0.1:8000) instead of locally; "
                        "model paths and --dataset files are read there (a --dataset file is uploaded)")
    p.add_argument("--api-key", default=None, metavar="KEY",
                   help="with --server: the API key (default: $CIRCUITDIFF_KEY)")
    p.add_argument("--out", default=None, help="where to write result.json (default: print the summary only)")
    p.add_argument("--report", default=None, metavar="REPORT.html",
                   help="also write a self-contained HTML report there (plots in plots/ beside it)")
    p.set_defaults(func=cmd_compare)


def spec_from_args(args: argparse.Namespace):
    from .spec import ComparisonSpec

    options: dict[str, Any] = {}
    for kv in args.task_option:
        if "=" not in kv:
            raise _UsageError(f"--task-option {kv!r}: expected KEY=VALUE")
        k, v = kv.split("=", 1)
        options[k.strip()] = v.strip()
    ref = lambda mid, rev: {"id": mid, "revision": rev} if rev else mid  # noqa: E731
    circuits = None
    given = [f for f, v in (("--circuit-threshold", args.circuit_threshold), ("--circuit-sweep", args.circuit_sweep),
                            ("--circuit-null-draws", args.circuit_null_draws)) if v is not None]
    if given and not args.circuits:
        raise _UsageError(f"{', '.join(given)} need --circuits")
    if args.circuits:
        circuits = {}
        if args.circuit_threshold is not None:
            circuits["threshold"] = args.circuit_threshold
        if args.circuit_null_draws is not None:
            circuits["null_draws"] = args.circuit_null_draws
        if args.circuit_sweep is not None:
            try:
                circuits["sweep"] = [float(x) for x in args.circuit_sweep.split(",") if x.strip()]
            except ValueError:
                raise _UsageError(f"--circuit-sweep {args.circuit_sweep!r}: expected numbers separated by commas, "
                                  "e.g. 10,15,20,25,30") from None
    data = {
        "teacher": ref(args.teacher, args.teacher_revision), "student": ref(args.student, args.student_revision),
        "task": args.task, "task_options": options, "dataset": args.dataset, "preset": args.preset,
        "ablation": args.ablation, "matching": args.matching, "mlp_similarity": args.mlp_similarity,
        "head_threshold": args.head_threshold, "mlp_threshold": args.mlp_threshold,
        "duplicate_unmatched": args.duplicate_unmatched, "n_prompts": args.n_prompts, "seed": args.seed,
        "bos": args.bos, "bootstrap": args.bootstrap, "chance_draws": args.chance_draws, "device": args.device,
        "dtype": args.dtype, "scan": args.scan, "metric": args.metric, "attribution_check": args.attribution_check,
        "circuits": circuits, "screen_top": args.screen_top,
        "estimator": args.estimator, "controls": [{"id": c} for c in args.control],
    }
    return ComparisonSpec.model_validate(data)


def cmd_compare(args: argparse.Namespace) -> int:
    spec = spec_from_args(args)
    out = Path(args.out) if args.out else None
    if out is not None and out.parent and not out.parent.exists():
        raise _UsageError(f"--out {args.out}: directory {out.parent} does not exist")
    if args.report:
        check_report_path(args.report)  # before the run, not after it
    check_dataset_file(spec.dataset, args.strict)
    bar = ProgressBar(sys.stderr)
    try:
        if args.server:
            data = compare_on_server(spec, args.server, args.api_key, bar)
        else:
            engine = EngineSettings.from_env()  # the engine's variables, read once for this run
            if spec.dataset:
                from .tasks.custom import resolve_dataset

                resolve_dataset(spec.dataset, engine.datasets_dir)  # a missing file, before any model loads
            _quiet_libraries()
            from .pipeline import run_comparison

            with use(engine):
                result = run_comparison(spec, progress=bar, cache=False if args.no_cache else None)
            data = result.model_dump(mode="json")
        if out is not None:
            tmp = out.with_name(out.name + ".tmp")
            tmp.write_text(json.dumps(data, indent=2) + "\n")
            tmp.replace(out)
        written = None
        if args.report:
            bar("report", 0, 1)  # the page and its plots take seconds on a large pair: a stage of its own
            written = write_report(data, args.report)[Path(args.report).name]
            bar("report", 1, 1)
    finally:
        bar.close()
    print(summary(data))
    if out is not None:
        print(f"\nresult: {out}")
    if written is not None:
        print(f"report: {written}")
    return 0


def check_dataset_file(dataset: str | None, strict: bool) -> None:
    """The one rule for a broken dataset file, locally and with --server (where the upload drops the
    same lines): its invalid lines are named here, before anything runs, with their 1-based line
    numbers, then dropped (a warning) or, with --strict, the file is refused."""
    if not dataset or not Path(dataset).is_file():
        return  # an uploaded dataset's id, or missing (reported by the run, before any model loads)
    from .tasks.custom import dropped_summary, numbered_lines

    numbered, rejected = numbered_lines(Path(dataset).read_bytes())
    if not rejected or not numbered:
        return  # all valid, or none: the run itself refuses a file with no valid line
    summary_text = dropped_summary(rejected, len(numbered) + len(rejected), f"dataset {dataset}")
    if strict:
        raise _UsageError(summary_text.replace("dropped as invalid", "invalid").replace("; the others were used", "")
                          + " (--strict: fix them, or leave out --strict to drop them)")
    sys.stderr.write(f"warning: {summary_text}\n")


def compare_on_server(spec, server: str, api_key: str | None, bar: "ProgressBar | None" = None) -> dict:
    """Submit ``spec`` to a service, draw the job's progress, and return its result as a local run
    would (the same ComparisonResult JSON). A ``dataset`` naming a local file is uploaded first."""
    import httpx

    from .client import ApiError, Client, JobCancelled, JobFailed

    bar = bar or ProgressBar(sys.stderr)

    def show(job) -> None:
        if job.progress and job.progress.stage:
            bar(job.progress.stage, job.progress.done, job.progress.total,
                eta=getattr(job.progress, "eta_seconds", None))  # a server that estimates it (#25)
        elif job.status == "queued" and job.queue_position:
            bar(f"queued (#{job.queue_position})", 0, 1)

    try:
        with Client(server, api_key=api_key) as client:
            if spec.dataset and Path(spec.dataset).is_file():
                uploaded = client.upload_dataset(spec.dataset)  # drops the lines check_dataset_file named
                sys.stderr.write(f"dataset {spec.dataset} uploaded as {uploaded.id}: {uploaded.n_items} items"
                                 + (f", {uploaded.n_rejected} lines dropped (lines "
                                    f"{', '.join(str(r.line) for r in uploaded.rejected[:10])})"
                                    if uploaded.n_rejected else "") + "\n")
                spec = spec.model_copy(update={"dataset": uploaded.id})
            job = client.submit(spec)
            sys.stderr.write(f"job {job.id} on {server}\n")
            try:
                client.wait(job.id, on_update=show)
            except KeyboardInterrupt:
                client.cancel(job.id)
                sys.stderr.write(f"\ncancelled job {job.id}\n")
                raise
            return client.result(job.id).model_dump(mode="json")
    except ApiError as e:
        first = e.errors[0] if e.errors else {}
        where = f"{first['field']}: " if first.get("field") else ""
        raise _UsageError(f"the server refused it ({e.code}): {where}{first.get('message') or e.detail}"
                          + (f" ({e.fix})" if e.fix else "")) from None
    except JobFailed as e:
        raise _UsageError(f"job {e.job.id} failed ({e.code}): {e.detail}" + (f" ({e.fix})" if e.fix else "")) from None
    except JobCancelled as e:
        raise _UsageError(str(e)) from None
    except httpx.TransportError as e:
        raise _UsageError(f"cannot reach {server}: {type(e).__name__}: {e}") from None


def summary(r: dict) -> str:
    """A few lines a person reads after a run: performance, alignment, robustness, top components."""
    lines = []
    m, perf = r["models"], r["performance"]
    t = r["task"]
    lines.append(f"task {t['name']} {t['options'] or ''}: {t['n_prompts']} prompts"
                 + (f" ({t['n_rejected']} rejected)" if t["n_rejected"] else ""))
    metric = METRICS[r.get("metric", {}).get("name", "logit_diff")]
    lines.append(f"metric: {metric.label} ({metric.name}, {metric.units})")
    for role in ("teacher", "student"):
        p = perf[role]
        flag = "  (does not perform the task)" if p["performs_task"] is False else ""
        acc = f", accuracy {p['accuracy']:.0%}" if p.get("accuracy") is not None else ""
        ld = (f", logit diff {p['logit_diff']:.3f}" if metric.name != "logit_diff" and p.get("logit_diff") is not None
              else "")
        lines.append(
            f"{role:8s} {m[role]['id']}: {m[role]['n_layers']}x{m[role]['n_heads']}, {m[role]['n_params']:,} params; "
            f"{metric.label} {p.get('value', p.get('logit_diff')):.4g} ± {p.get('value_std', p.get('logit_diff_std')):.3g}"
            f"{ld}{acc}{flag}"
        )
    lines.insert(0, chance_line(r))
    a = r["alignment"]
    ci = f" [95% CI {a['ci95'][0]:.4f}, {a['ci95'][1]:.4f}]" if a.get("ci95") else ""
    lines.append(f"alignment {a['score']:.4f}{ci} over {a['n_pairs']} pairs ({a['direction']}), "
                 f"mean similarity {a['mean_similarity']:.4f}")
    unstable = [m for m in r.get("matches", []) if m.get("confidence") is not None and m["confidence"] < UNSTABLE
                and not m.get("duplicated")]
    if unstable:
        lines.append(f"{len(unstable)} unstable matches (the same partner in under {UNSTABLE:.0%} of resamples): "
                     + ", ".join(f"{m['student']}->{m['teacher']} {m['confidence']:.2f}" for m in unstable[:6])
                     + (" ..." if len(unstable) > 6 else ""))
    near = [m for m in r.get("matches", []) if m.get("ambiguous") and not m.get("duplicated")]
    if near:
        from .analysis.confidence import MIN_MARGIN

        lines.append(f"{len(near)} near-tie matches (margin over the runner-up below {MIN_MARGIN} or its interval "
                     "includes 0): "
                     + ", ".join(f"{m['student']}->{m['teacher']} (runner-up {m['runner_up']}, margin {m['margin']:.3f})"
                                 for m in near[:6]) + (" ..." if len(near) > 6 else ""))
    rb = r["robustness"]
    for role in ("teacher", "student"):
        x = rb.get(role)
        if x:
            ci = f" [{x['mean_drop_ci95'][0]:.2f}, {x['mean_drop_ci95'][1]:.2f}]" if x.get("mean_drop_ci95") else ""
            lines.append(f"{role:8s} mean drop {x['mean_drop']:.2f}{ci} pp (95% over components), "
                         f"severity {x['severity']:.4f}")
    if rb.get("delta_mean_drop") is not None:
        ci = rb.get("delta_mean_drop_ci95")
        ci_text = f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else ""
        hedge = " (the interval includes 0)" if ci and ci[0] <= 0 <= ci[1] else ""
        lines.append(f"student - teacher mean drop {rb['delta_mean_drop']:+.2f}{ci_text} pp (point difference; "
                     f"95% over components){hedge}")
    lines.append(f"compression ratio {rb['compression_ratio']:.3f}"
                 + (f", slope {rb['slope_mean']:.2f} pp per unit C" if rb.get("slope_mean") is not None else ""))
    if rb.get("note"):
        lines.append(f"note: {rb['note']}")
    for role in ("teacher", "student"):
        top = sorted(r["influence"][role].items(), key=lambda kv: -kv[1]["influence"])[:5]
        parts = [f"{cid} {v['delta']:+.3f}" for cid, v in top]
        lines.append(f"top {role} components (Δ {metric.label}): " + ", ".join(parts))
    lines += circuit_lines(r.get("circuits"))
    for w in r.get("warnings", []):
        lines.append(f"warning: {w}")
    return "\n".join(lines)


def circuit_lines(c: dict | None) -> list[str]:
    """The circuits section in a few lines (none when circuits were not asked for)."""
    if not c:
        return []
    out = []
    for role in ("teacher", "student"):
        m = c.get(role)
        if m:
            out.append(f"{role:8s} circuit (T={m['threshold']:g}): {m['n_heads']} heads + {m['n_mlps']} MLPs, "
                       f"kept {m['kept_pct']:.1f}%, removed {m['removed_pct']:.1f}% "
                       f"({m['n_evaluations']} evaluations, {c['search_s'].get(role, 0):.2f}s)")
    d = c.get("diff")
    if d:
        tr = d["transfer"]
        nulls = ", ".join(f"{k} {v['mean']:.1f}% [{v['ci95'][0]:.1f}, {v['ci95'][1]:.1f}] p={v['p_value']:.3g}"
                          for k, v in tr["nulls"].items())
        out.append(f"circuit diff: jaccard {d['jaccard']:.3f}; kept {len(d['kept'])}, discarded {len(d['discarded'])}, "
                   f"new {len(d['new'])}; teacher circuit on the student keeps {tr['kept_pct']:.1f}% (nulls: {nulls})")
    if c.get("note"):
        out.append(f"note: {c['note']}")
    return out


UNSTABLE = 0.5  # a match whose partner changes in half the resamples or more is not to be read as one


def chance_line(r: dict) -> str:
    """The first line of a summary: the verdict (circuitdiff.analysis.verdict), or for an older result
    whether the score is above chance."""
    a = r["alignment"]
    c = a.get("chance")
    if a.get("verdict"):
        return f"{a['verdict'].upper().replace('_', ' ')}: {a.get('verdict_reason') or ''}".rstrip(": ")
    if a.get("score") is None or not c:
        return "alignment: not calibrated against chance (a result of an earlier schema)"
    null = f"chance {c['mean']:.4f} [95% {c['ci95'][0]:.4f}, {c['ci95'][1]:.4f}], p = {c['p_value']:.3g}"
    if a.get("above_chance"):
        return f"ALIGNED ABOVE CHANCE: alignment {a['score']:.4f} vs {null}"
    failing = [x for x in ("teacher", "student") if r["performance"][x]["performs_task"] is False]
    why = (f"the {' and the '.join(failing)} does not perform the task" if failing
           else "the score is within the chance interval")
    return f"NOT ABOVE CHANCE ({why}): alignment {a['score']:.4f} vs {null}"


# ----------------------------------------------------------------------------- listings
def add_tasks(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tasks", help="list the tasks and their options")
    p.set_defaults(func=cmd_tasks)


def cmd_tasks(args: argparse.Namespace) -> int:
    from .catalogue import list_tasks

    for t in list_tasks():
        print(f"{t['name']:10s} {t['description']}")
        for k, o in t["options"].items():
            print(f"{'':10s}   --task-option {k}={'|'.join(o['values'])}  (default {o['default']})")
    return 0


def add_models(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the bundled zoo models")
    p.set_defaults(func=cmd_models)


def cmd_models(args: argparse.Namespace) -> int:
    from .catalogue import list_zoo

    for m in list_zoo():
        state = "" if m["available"] else "  (not trained in this install: make zoo)"
        print(f"{m['id']:24s} {m['description']}{state}")
    print("\nAlso accepted: a hub id ('gpt2', 'org/name', with --teacher-revision/--student-revision) "
          "or a local checkpoint directory (config.json + *.safetensors).")
    return 0


def add_items(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("items", help="write the items a result was computed on as a custom dataset (JSONL)")
    p.add_argument("result", help="a result.json")
    p.add_argument("--out", required=True, help="the JSONL file to write; re-run with --task custom --dataset FILE")
    p.set_defaults(func=cmd_items)


def cmd_items(args: argparse.Namespace) -> int:
    """Every accepted item of a result, one JSON object per line, with the fields a custom dataset
    takes: ``compare --task custom --dataset`` on it recomputes the same numbers."""
    from .report import load_result

    r = load_result(args.result)
    if not r.task.items:
        raise _UsageError(f"{args.result} lists no items (results of schema < 3 do not; re-run the comparison)")
    out = Path(args.out)
    if out.parent and not out.parent.exists():
        raise _UsageError(f"--out {args.out}: directory {out.parent} does not exist")
    lines = [json.dumps(it.model_dump(exclude_none=True), ensure_ascii=False) for it in r.task.items]
    out.write_text("\n".join(lines) + "\n")
    print(f"{len(lines)} items -> {out}")
    return 0


# ----------------------------------------------------------------------------- main
COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [add_compare, add_tasks, add_models, add_report,
                                                               add_diff, add_items, add_jobs, add_watch]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="circuitdiff", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"circuitdiff {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(sub)
    return parser


class _UsageError(Exception):
    pass


def _quiet_libraries() -> None:
    """Library chatter (weight-loading bars, config warnings) would bury the progress bar."""
    import logging
    import warnings

    quiet_tokenizers()
    warnings.filterwarnings("ignore")
    logging.getLogger("transformers").setLevel(logging.ERROR)
    logging.getLogger("transformer_lens").setLevel(logging.ERROR)
    logging.getLogger("huggingface_hub").setLevel(logging.ERROR)
    logging.getLogger().setLevel(logging.ERROR)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:
        pass


def format_validation_error(e) -> str:
    """``field: message`` per error; the field of a spec error is its location plus the ``field`` its
    context names (circuitdiff.spec.spec_error)."""
    parts = []
    for err in e.errors():
        loc = [str(x) for x in err.get("loc", ()) if x != "__root__"]
        ctx = err.get("ctx") or {}
        if isinstance(ctx.get("field"), str):
            loc.append(ctx["field"])
        msg = err.get("msg", "").removeprefix("Value error, ")
        parts.append(f"{'.'.join(loc)}: {msg}" if loc else msg)
    return "; ".join(parts)


def main(argv: list[str] | None = None) -> int:
    from pydantic import ValidationError

    from .errors import CircuitdiffError

    args = build_parser().parse_args(argv)
    env = CliSettings.from_env()  # the command line's own variables, read once
    for name in ("api_key", "webhook_secret"):  # flags whose default is a variable
        if getattr(args, name, False) is None:
            setattr(args, name, getattr(env, name))
    try:
        return int(args.func(args) or 0)
    except ValidationError as e:
        _fail(f"invalid input: {format_validation_error(e)}")
        return EXIT_USER_ERROR
    except (CircuitdiffError, _UsageError, SettingsError) as e:
        msg = getattr(e, "message", None) or str(e)
        fix = getattr(e, "fix", None)
        _fail(msg + (f" ({fix})" if fix else ""))
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        _fail("interrupted")
        return 130
    except Exception as e:  # noqa: BLE001 - the last line of defence: one line, no traceback
        if env.debug:
            raise
        _fail(f"internal error: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
        return EXIT_INTERNAL


def _fail(message: str) -> None:
    sys.stderr.write(f"error: {message}\n")
    sys.stderr.flush()


if __name__ == "__main__":
    sys.exit(main())
