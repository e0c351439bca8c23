"""Custom datasets: uploaded lines stored content-addressed.

The upload route validates with the engine's one validator, :func:`circuitdiff.tasks.custom.validate_lines`
(the CLI and the engine use it too, with the same limits), so an upload the engine cannot run is
refused before anything is stored, with the limit named. Valid lines are re-serialised canonically (sorted keys), so the id depends on the items and not on
whitespace; rejected lines come back with their line number, field and reason. Files are written
to a temp name and renamed, the metadata last, so a reader never sees half a dataset. The worker
resolves an id to ``<datasets_dir>/<id>.jsonl`` (``circuitdiff.tasks.custom.resolve_dataset``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from pathlib import Path

from circuitdiff.tasks.custom import dataset_kind, validate_lines

ID_RE = re.compile(r"^ds_[0-9a-f]{24}$")


def dataset_id(sha256: str) -> str:
    return "ds_" + sha256[:24]


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
        "kind": dataset_kind(items),
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


def kind_of(datasets_dir: Path, meta: dict) -> str:
    """``answers`` or ``text``; uploads stored before the field existed are read once to tell."""
    if "kind" in meta:
        return meta["kind"]
    items, _ = validate_lines((datasets_dir / f"{meta['id']}.jsonl").read_bytes())
    return dataset_kind(items)


def load_meta(datasets_dir: Path, did: str) -> dict | None:
    if not ID_RE.match(did):
        return None
    p = datasets_dir / f"{did}.json"
    return json.loads(p.read_text()) if p.is_file() else None
