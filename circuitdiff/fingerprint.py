"""Content identities, torch-free: weight-file hashes and dataset digests.

Used by the engine (results record what was compared) and by the service (a job's content key).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

WEIGHT_SUFFIXES = (".safetensors",)
_BUF = 1 << 20


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_BUF):
            h.update(chunk)
    return h.hexdigest()


def weights_sha256(model_dir: str | Path) -> str:
    """sha256 over (name, sha256) of every safetensors file in a checkpoint directory, sorted."""
    d = Path(model_dir)
    files = sorted(p for p in d.iterdir() if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES))
    if not files:
        raise FileNotFoundError(f"no .safetensors weight files in {d}")
    h = hashlib.sha256()
    for p in files:
        h.update(p.name.encode())
        h.update(file_sha256(p).encode())
    return h.hexdigest()


def bytes_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
