"""Custom datasets: uploaded lines stored content-addressed, owned by the key that uploaded them.

The upload route validates with the engine's one validator, :func:`circuitdiff.tasks.custom.validate_lines`
(the CLI and the engine use it too, with the same limits), so an upload the engine cannot run is
refused before anything is stored, with the limit named. Valid lines are re-serialised canonically
(sorted keys), so the id depends on the items and not on whitespace; rejected lines come back with
their line number, field and reason.

Layout under ``datasets_dir``: the items at ``<id>.jsonl`` (shared by every owner who uploaded the
same items; the worker resolves an id there, ``circuitdiff.tasks.custom.resolve_dataset``), and
one metadata file per owner at ``owners/<owner>/<id>.json``. That file describes the owner's latest
upload of those items (its rejected lines, its size, its time), so each answer describes the request
it answers, and another key's dataset does not exist for the caller (404, like jobs). Files are
written to a temp name and renamed, the metadata last, so a reader never sees half a dataset.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from pathlib import Path

from circuitdiff.errors import default_fix
from circuitdiff.tasks.custom import (LINE_FIX, MAX_BYTES, UPLOAD_LINES_SUFFIX, DatasetTooLargeError, dataset_kind,
                                      numbered_lines, validate_lines)

from .problems import Problem

ID_RE = re.compile(r"^ds_[0-9a-f]{24}$")
LEGACY_OWNER = "local"  # datasets stored before owners existed (``<id>.json``) belong to the open API's owner


MAX_LISTED = 50  # rejected lines listed in a problem or an answer


def _field(prefix: str, r: dict) -> str:
    """Where a rejected line is: ``lines[3].answer`` in an upload's body, ``dataset.lines[3].answer``
    for a file a spec names."""
    if not r["line"]:
        return prefix
    where = f"lines[{r['line']}]" + ("" if r["field"] == "line" else f".{r['field']}")
    return where if prefix == "body" else f"{prefix}.{where}"


def valid_lines(data: bytes, field: str = "body") -> tuple[list[dict], list[dict], list[int]]:
    """The one rule for a dataset the service is given, uploaded (``field`` ``body``) or named by a
    local path in a spec (``field`` ``dataset``): the engine's validator, and no valid line is a 422
    problem listing the rejected lines, before anything is stored or queued. Returns the valid items,
    the rejected lines and each valid item's line in ``data`` (1-based, as the rejected ones)."""
    try:
        numbered, rejected = numbered_lines(data)
        items = [item for _, item in numbered]
    except DatasetTooLargeError as e:
        raise Problem.field(e.code, field, e.message, e.fix) from None
    if not items:
        errors = [
            {"field": _field(field, r), "message": r["reason"], "fix": LINE_FIX, "code": "invalid_dataset_line"}
            for r in rejected[:MAX_LISTED]
        ] or [{"field": field, "message": "the dataset has no lines", "fix": default_fix("empty_dataset"),
               "code": "empty_dataset"}]
        raise Problem("invalid_dataset", f"no valid line in the dataset ({len(rejected)} rejected)", errors=errors)
    return items, rejected, [n for n, _ in numbered]


def read_local(path: Path, field: str = "dataset") -> bytes:
    """A dataset file named by path, read only when it is within the limit (checked on its size
    before reading, and again while reading, should it grow in between): a multi-GB file costs the
    API one ``stat``, not its memory."""
    too_large = (f"{path.name} is over {MAX_BYTES:,} bytes ({MAX_BYTES // 2**20} MiB), the most a dataset may hold",
                 f"name a JSONL file under {MAX_BYTES // 2**20} MiB")
    if path.stat().st_size > MAX_BYTES:
        raise Problem.field("dataset_too_large", field, *too_large)
    chunks, size = [], 0
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            size += len(chunk)
            if size > MAX_BYTES:
                raise Problem.field("dataset_too_large", field, *too_large)
            chunks.append(chunk)
    return b"".join(chunks)


def dataset_id(sha256: str) -> str:
    return "ds_" + sha256[:24]


def _meta_path(datasets_dir: Path, owner: str, did: str) -> Path:
    return datasets_dir / "owners" / owner / f"{did}.json"


def store(datasets_dir: Path, owner: str, items: list[dict], rejected: list[dict], original_bytes: int,
          lines: list[int] | None = None) -> dict:
    """Write the canonical JSONL (once per content), the upload's line numbering beside it when the
    stored lines are not the uploaded file's lines 1..n (circuitdiff.tasks.custom.UPLOAD_LINES_SUFFIX:
    a job then names rejected items by the uploaded file's lines, as this upload's answer does), and
    this upload's metadata for ``owner``."""
    body = "".join(json.dumps(i, sort_keys=True, ensure_ascii=False) + "\n" for i in items).encode()
    sha = hashlib.sha256(body).hexdigest()
    did = dataset_id(sha)
    meta = {
        "id": did,
        "sha256": sha,
        "n_items": len(items),
        "n_rejected": len(rejected),
        "rejected": rejected,
        "bytes": len(body),
        "uploaded_bytes": original_bytes,
        "created_at": time.time(),
        "kind": dataset_kind(items),
    }
    path, meta_path = datasets_dir / f"{did}.jsonl", _meta_path(datasets_dir, owner, did)
    meta_path.parent.mkdir(parents=True, exist_ok=True)
    if not path.is_file():
        _atomic_write(path, body)
    side = path.with_suffix(UPLOAD_LINES_SUFFIX)
    lines = lines or list(range(1, len(items) + 1))
    if lines != list(range(1, len(items) + 1)) or rejected:  # the latest upload of this content numbers it
        _atomic_write(side, json.dumps({"lines": lines, "rejected": rejected,
                                        "n_lines": len(lines) + len(rejected)}).encode())
    else:
        side.unlink(missing_ok=True)
    _atomic_write(meta_path, json.dumps(meta, sort_keys=True).encode())  # meta last: marks complete
    return meta


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def kind_of(datasets_dir: Path, meta: dict) -> str:
    """``answers`` or ``text``; uploads stored before the field existed are read once to tell."""
    if "kind" in meta:
        return meta["kind"]
    items, _ = validate_lines((datasets_dir / f"{meta['id']}.jsonl").read_bytes())
    return dataset_kind(items)


def load_meta(datasets_dir: Path, owner: str, did: str) -> dict | None:
    """The owner's metadata for dataset ``did``; None when the owner never uploaded it."""
    if not ID_RE.match(did):
        return None
    p = _meta_path(datasets_dir, owner, did)
    if not p.is_file() and owner == LEGACY_OWNER:
        p = datasets_dir / f"{did}.json"
    return json.loads(p.read_text()) if p.is_file() and (datasets_dir / f"{did}.jsonl").is_file() else None


def list_meta(datasets_dir: Path, owner: str) -> list[dict]:
    """Every dataset ``owner`` uploaded, newest upload first (the open API's owner also sees the
    datasets stored before owners existed)."""
    paths = list((datasets_dir / "owners" / owner).glob("ds_*.json"))
    if owner == LEGACY_OWNER:
        mine = {p.stem for p in paths}
        paths += [p for p in datasets_dir.glob("ds_*.json") if p.stem not in mine]
    metas = []
    for p in paths:
        meta = load_meta(datasets_dir, owner, p.stem)
        if meta is not None:
            metas.append(meta)
    return sorted(metas, key=lambda m: (-m["created_at"], m["id"]))


def items_path(datasets_dir: Path, meta: dict) -> Path:
    """The canonical JSONL of a dataset (one object per line, keys sorted), as the worker reads it."""
    return datasets_dir / f"{meta['id']}.jsonl"


def read_items(datasets_dir: Path, meta: dict, offset: int, limit: int) -> list[dict]:
    """Items ``offset`` .. ``offset + limit`` (0-based, in upload order)."""
    out = []
    with items_path(datasets_dir, meta).open("rb") as f:
        for i, line in enumerate(f):
            if i >= offset + limit:
                break
            if i >= offset:
                out.append(json.loads(line))
    return out
