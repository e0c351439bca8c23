"""Custom datasets: one validation, one set of limits, for the upload route, the CLI and the engine.

A dataset is JSONL, one object per line with non-empty string fields ``prompt``, ``answer``,
``distractor`` and optionally ``corrupted_prompt``, ``masked_prompt``, ``corrupted_masked_prompt``
(an optional field is omitted, never empty). Answers are bare words, like the built-in tasks: the
decoder form reads the first token of ``" " + answer`` after the prompt.

A line may instead be plain text: ``{"text": ...}`` with an optional ``corrupted_text`` (same token
length; otherwise mean and resample ablation borrow another text of the same length). Such a
dataset has no answers, so it runs with the metrics that need none (``kl``, ``loss``:
circuitdiff.metrics); one dataset is one kind, the first valid line decides. Tokenizer-level problems
(multi-token answers, length mismatches) depend on the models and are found later by the task
layer, per prompt.

Limits (:data:`MAX_LINES`, :data:`MAX_BYTES`) are what the engine can run: a dataset over them is
refused as a whole (:class:`DatasetTooLargeError`), at upload as well as when a file is read, so
no upload is accepted that a worker then cannot use. Within the limits, :func:`validate_lines`
checks line by line, and a broken line is handled the same way everywhere: dropped and reported
with its 1-based line number in the file. The upload route stores the valid lines and answers the
rejected ones; the engine runs the valid lines of a file and says which it dropped (a result
warning, :func:`dropped_summary`), each item keeping its file line (``meta["line"]``, and
``line`` in ``task.rejected``); ``circuitdiff compare --strict`` refuses such a file instead
(``strict=True``). A file with no valid line is refused everywhere.

Torch-free: the HTTP service imports this module.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import DatasetError
from ..settings import current
from ..vocabulary import MAX_PROMPTS
from .generate import MASK, TextItem

REQUIRED = ("prompt", "answer", "distractor")
OPTIONAL = ("corrupted_prompt", "masked_prompt", "corrupted_masked_prompt")
FIELDS = REQUIRED + OPTIONAL
TEXT_FIELDS = ("text", "corrupted_text")  # a plain-text line: text required, corrupted_text optional
MAX_LINES = MAX_PROMPTS  # a comparison runs at most MAX_PROMPTS items: more lines could never be used
MAX_BYTES = 16 * 1024 * 1024
LINE_FIX = ('each line must be a JSON object with non-empty string "prompt", "answer" and "distractor", '
            'or (plain text, for metrics kl and loss) a non-empty string "text"')


class DatasetTooLargeError(DatasetError):
    """Over :data:`MAX_LINES` items or :data:`MAX_BYTES`: refused as a whole."""

    code = "dataset_too_large"


def validate_lines(data: bytes | str) -> tuple[list[dict], list[dict]]:
    """``(items, rejected)`` of a JSONL text.

    items: the valid lines as dicts of the known fields, in order. rejected: ``{line, field,
    reason}`` with 1-based line numbers (``line`` 0: the whole body). Raises
    :class:`DatasetTooLargeError` above the limits.
    """
    numbered, rejected = numbered_lines(data)
    return [item for _, item in numbered], rejected


def dropped_summary(rejected: list[dict], n_lines: int, source: str = "dataset", shown: int = 5) -> str:
    """One sentence for the lines a dataset lost: how many, and the first few with their reasons."""
    first = "; ".join(f"line {r['line']}: {r['reason']}" for r in rejected[:shown])
    more = f"; and {len(rejected) - shown} more" if len(rejected) > shown else ""
    return (f"{source}: {len(rejected)} of {n_lines} lines dropped as invalid ({first}{more}); "
            "the others were used")


def numbered_lines(data: bytes | str) -> tuple[list[tuple[int, dict]], list[dict]]:
    """:func:`validate_lines` with each valid item's 1-based line number in the text."""
    size = len(data.encode() if isinstance(data, str) else data)
    if size > MAX_BYTES:
        raise DatasetTooLargeError(
            f"the dataset is {size:,} bytes; at most {MAX_BYTES:,} ({MAX_BYTES // 2**20} MiB) are accepted",
            field="body", fix=f"split it into files under {MAX_BYTES // 2**20} MiB")
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            return [], [{"line": 0, "field": "body", "reason": f"not UTF-8 text ({e.reason} at byte {e.start})"}]
    else:
        text = data
    lines = [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if len(lines) > MAX_LINES:
        raise DatasetTooLargeError(
            f"the dataset has {len(lines):,} lines; a comparison runs at most {MAX_LINES:,} prompts, "
            f"so at most {MAX_LINES:,} lines are accepted", field="body",
            fix=f"keep at most {MAX_LINES:,} lines (split the dataset into several)")
    items, rejected = [], []
    kind = None  # the first valid line's: "answers" or "text"
    for n, line in lines:
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            rejected.append({"line": n, "field": "line", "reason": f"not valid JSON ({e.msg} at column {e.colno})"})
            continue
        if not isinstance(obj, dict):
            rejected.append({"line": n, "field": "line", "reason": "not a JSON object"})
            continue
        line_kind = "text" if "text" in obj else "answers"
        problem = _check_text(obj) if line_kind == "text" else _check_item(obj)
        if not problem and kind is not None and line_kind != kind:
            problem = {"field": "text" if line_kind == "text" else "line",
                       "reason": f"a {'plain-text' if line_kind == 'text' else 'prompt/answer'} line in a dataset of "
                                 f"{'prompts with answers' if kind == 'answers' else 'plain texts'} (one dataset is one kind)"}
        if problem:
            rejected.append({"line": n, **problem})
        else:
            kind = kind or line_kind
            items.append((n, {k: obj[k] for k in (TEXT_FIELDS if line_kind == "text" else FIELDS) if k in obj}))
    return items, rejected


def dataset_kind(items: list[dict]) -> str:
    """``text`` for a dataset of plain texts, else ``answers`` (validated lines are all one kind)."""
    return "text" if items and "text" in items[0] else "answers"


def _check_text(obj: dict) -> dict | None:
    for k in TEXT_FIELDS:
        if k in obj and (not isinstance(obj[k], str) or not obj[k].strip()):
            return {"field": k, "reason": f"{k!r} must be a non-empty string"
                    + (" (omit an optional field instead of leaving it empty)" if k != "text" else "")}
    extra = sorted(set(obj) - set(TEXT_FIELDS))
    if extra:
        return {"field": extra[0], "reason": f"unknown field {extra[0]!r} in a plain-text line (allowed: "
                f"{', '.join(TEXT_FIELDS)}; prompt/answer/distractor lines are the other kind)"}
    return None


def _check_item(obj: dict) -> dict | None:
    for k in REQUIRED:
        if k not in obj:
            return {"field": k, "reason": f"missing required field {k!r}"}
    for k in FIELDS:
        if k in obj and (not isinstance(obj[k], str) or not obj[k].strip()):
            return {"field": k, "reason": f"{k!r} must be a non-empty string"
                    + (" (omit an optional field instead of leaving it empty)" if k in OPTIONAL else "")}
    extra = sorted(set(obj) - set(FIELDS))
    if extra:
        return {"field": extra[0], "reason": f"unknown field {extra[0]!r} (allowed: {', '.join(FIELDS)})"}
    if obj["answer"].strip() == obj["distractor"].strip():
        return {"field": "distractor", "reason": "distractor equals the answer"}
    return None


def to_text_items(items: list[dict], lines: list[int] | None = None) -> list[TextItem]:
    """Validated dicts -> :class:`TextItem` (the default cloze form: ``prompt [MASK].``); ``lines``:
    each item's line in its file (default: 1, 2, ...), kept as ``meta["line"]``."""
    out = []
    lines = lines or list(range(1, len(items) + 1))
    for i, obj in enumerate(items):
        if "text" in obj:
            corrupted = obj.get("corrupted_text")
            out.append(TextItem(prompt=obj["text"], answer="", distractor="", corrupted_prompt=corrupted or "",
                                masked_prompt="", corrupted_masked_prompt="", kind="text",
                                meta={"line": lines[i], "has_corrupted": corrupted is not None}))
            continue
        corrupted = obj.get("corrupted_prompt")
        out.append(TextItem(
            prompt=obj["prompt"], answer=obj["answer"].strip(), distractor=obj["distractor"].strip(),
            corrupted_prompt=corrupted or "",
            masked_prompt=obj.get("masked_prompt") or f"{obj['prompt']} {MASK}.",
            corrupted_masked_prompt=obj.get("corrupted_masked_prompt") or "",
            meta={"line": lines[i], "has_corrupted": corrupted is not None},
        ))
    return out


UPLOAD_LINES_SUFFIX = ".lines.json"
"""Beside an uploaded dataset's stored file ``<id>.jsonl``, ``<id>.lines.json`` holds the upload's own
numbering: ``{"lines": [file line of each stored line], "rejected": [the upload's rejected lines],
"n_lines": lines in the uploaded file}`` (written by the service when the upload dropped or skipped
lines). The stored file keeps only the valid lines, so without it a stored line's number would not
be the one the upload answer gave."""


def upload_numbering(path: str | Path) -> dict | None:
    """The upload's numbering of a stored dataset (:data:`UPLOAD_LINES_SUFFIX`), or None."""
    side = Path(path).with_suffix(UPLOAD_LINES_SUFFIX)
    try:
        return json.loads(side.read_text())
    except (OSError, ValueError):
        return None


def dataset_lines(data: bytes | str, numbering: dict | None = None) -> tuple[list[tuple[int, dict]], list[dict], int]:
    """``(numbered items, rejected lines, lines in the file)``: :func:`numbered_lines`, renumbered to
    the uploaded file's lines and with the upload's rejected lines when ``numbering`` (an uploaded
    dataset's :func:`upload_numbering`) is given, so a local file and its upload read the same."""
    numbered, rejected = numbered_lines(data)
    if not numbering:
        return numbered, rejected, len(numbered) + len(rejected)
    lines = numbering["lines"]
    renumber = lambda n: lines[n - 1] if 0 < n <= len(lines) else n  # noqa: E731
    numbered = [(renumber(n), item) for n, item in numbered]
    rejected = [*numbering.get("rejected", []), *({**r, "line": renumber(r["line"])} for r in rejected)]
    return numbered, sorted(rejected, key=lambda r: r["line"]), int(numbering.get("n_lines") or 0) or len(lines)


def parse_items(data: bytes | str, source: str = "dataset", *, strict: bool = False,
                numbering: dict | None = None) -> list[TextItem]:
    """A JSONL text as text items: its valid lines, each with its line number (in the uploaded file,
    with an uploaded dataset's ``numbering``). Invalid lines are dropped (:func:`dropped_summary` says
    which), as an upload drops them; refused with them named when ``strict`` or when no line is valid."""
    numbered, rejected, _ = dataset_lines(data, numbering)
    if rejected and (strict or not numbered):
        first = "; ".join(f"line {r['line']}: {r['reason']}" for r in rejected[:3])
        more = f" (and {len(rejected) - 3} more)" if len(rejected) > 3 else ""
        raise DatasetError(f"{source}: {len(rejected)} invalid line{'s' if len(rejected) > 1 else ''}: {first}{more}",
                           field="dataset", fix=LINE_FIX)
    if not numbered:
        raise DatasetError(f"{source} is empty", field="dataset", fix="give at least one JSONL line")
    return to_text_items([item for _, item in numbered], [n for n, _ in numbered])


def load_items(path: str | Path, *, strict: bool = False) -> list[TextItem]:
    """A JSONL file as text items (:func:`parse_items`)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise DatasetError(f"dataset {path}: no such file", field="dataset", fix="pass the path of a JSONL file")
    try:
        return parse_items(p.read_bytes(), f"dataset {path}", strict=strict, numbering=upload_numbering(p))
    except DatasetTooLargeError as e:
        raise DatasetTooLargeError(f"dataset {path}: {e.message}", field="dataset", fix=e.fix) from None


def resolve_dataset(dataset: str, datasets_dir: str | Path | None = None) -> Path:
    """A dataset reference is a JSONL path, or an uploaded dataset id stored as ``<dir>/<id>.jsonl``
    (dir: ``datasets_dir``, else the active engine settings' ``datasets_dir``, circuitdiff.settings)."""
    p = Path(dataset).expanduser()
    if p.is_file():
        return p
    root = datasets_dir or current().datasets_dir
    if root and "/" not in dataset and not dataset.startswith("."):
        candidate = Path(root) / f"{dataset}.jsonl"
        if candidate.is_file():
            return candidate
    raise DatasetError(f"dataset {dataset!r}: no such file or uploaded dataset", field="dataset",
                       fix="upload it with POST /v1/datasets and pass the id, or give a JSONL path")
