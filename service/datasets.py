"""Custom datasets: JSONL uploads validated line by line and stored content-addressed.

A line is a JSON object with non-empty string fields ``prompt``, ``answer``, ``distractor`` and
optionally ``corrupted_prompt``, ``masked_prompt``, ``corrupted_masked_prompt``. Valid lines are
re-serialised canonically (sorted keys), so the id depends on the items and not on whitespace;
rejected lines come back with their line number, field and reason. Files are written to a temp
name and renamed, so a reader never sees half a dataset. The worker resolves an id to its file.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from pathlib import Path

REQUIRED = ("prompt", "answer", "distractor")
OPTIONAL = ("corrupted_prompt", "masked_prompt", "corrupted_masked_prompt")
ID_RE = re.compile(r"^ds_[0-9a-f]{24}$")
MAX_LINES = 100_000


def dataset_id(sha256: str) -> str:
    return "ds_" + sha256[:24]


def validate_lines(data: bytes) -> tuple[list[dict], list[dict]]:
    """(items, rejected); rejected: ``{line, field, reason}`` with 1-based line numbers."""
    items, rejected = [], []
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        return [], [{"line": 0, "field": "body", "reason": f"not UTF-8 text ({e.reason} at byte {e.start})"}]
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if n > MAX_LINES:
            rejected.append({"line": n, "field": "body", "reason": f"more than {MAX_LINES} lines"})
            break
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            rejected.append({"line": n, "field": "line", "reason": f"not valid JSON ({e.msg} at column {e.colno})"})
            continue
        if not isinstance(obj, dict):
            rejected.append({"line": n, "field": "line", "reason": "not a JSON object"})
            continue
        problem = _check_item(obj)
        if problem:
            rejected.append({"line": n, **problem})
        else:
            items.append({k: obj[k] for k in (*REQUIRED, *OPTIONAL) if k in obj})
    return items, rejected


def _check_item(obj: dict) -> dict | None:
    for k in REQUIRED:
        if k not in obj:
            return {"field": k, "reason": f"missing required field {k!r}"}
    for k in (*REQUIRED, *OPTIONAL):
        if k in obj and (not isinstance(obj[k], str) or not obj[k].strip()):
            return {"field": k, "reason": f"{k!r} must be a non-empty string"}
    extra = sorted(set(obj) - set(REQUIRED) - set(OPTIONAL))
    if extra:
        return {"field": extra[0], "reason": f"unknown field {extra[0]!r} (allowed: {', '.join(REQUIRED + OPTIONAL)})"}
    if obj["answer"] == obj["distractor"]:
        return {"field": "distractor", "reason": "distractor equals the answer"}
    return None


def store(datasets_dir: Path, items: list[dict], rejected: list[dict], original_bytes: int) -> dict:
    """Write the canonical JSONL and its metadata; an identical upload maps to the same id."""
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
    }
    datasets_dir.mkdir(parents=True, exist_ok=True)
    path, meta_path = datasets_dir / f"{did}.jsonl", datasets_dir / f"{did}.json"
    if not meta_path.exists():
        _atomic_write(path, body)
        _atomic_write(meta_path, json.dumps(meta, sort_keys=True).encode())  # meta last: marks complete
    return json.loads(meta_path.read_text())


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def load_meta(datasets_dir: Path, did: str) -> dict | None:
    if not ID_RE.match(did):
        return None
    p = datasets_dir / f"{did}.json"
    return json.loads(p.read_text()) if p.is_file() else None

