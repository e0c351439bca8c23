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

from circuitdiff.tasks.custom import dataset_kind, validate_lines

ID_RE = re.compile(r"^ds_[0-9a-f]{24}$")
LEGACY_OWNER = "local"  # datasets stored before owners existed (``<id>.json``) belong to the open API's owner


def dataset_id(sha256: str) -> str:
    return "ds_" + sha256[:24]


def _meta_path(datasets_dir: Path, owner: str, did: str) -> Path:
    return datasets_dir / "owners" / owner / f"{did}.json"


def store(datasets_dir: Path, owner: str, items: list[dict], rejected: list[dict], original_bytes: int) -> dict:
    """Write the canonical JSONL (once per content) and this upload's metadata for ``owner``."""
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
