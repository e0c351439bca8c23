"""Content-addressed activation store on disk (docs/design.md §Activation cache).

An entry is a directory ``<root>/<key>/`` holding safetensors files plus ``manifest.json``
(per-file sha256 and size, created / last-used times, free-form ``meta``). The key is a sha256 over
everything that determines the tensors (:func:`cache_key`), so an entry is never updated in place:
it is either there and complete, or absent.

Why each mechanism:
- Writes build the entry in a private temp directory under ``<root>/.tmp/`` and publish it with one
  ``os.rename`` of the whole directory. rename(2) onto an existing non-empty directory fails, so two
  processes writing the same key leave exactly one complete entry; the loser discards its copy.
- Reads hash every file before parsing it. A mismatch (bit rot, a truncated copy, a hand edit)
  raises :class:`CacheCorruptError` internally; the entry is removed and the read reports a miss,
  so the caller recomputes. A corrupt cache never fails a comparison.
- Removal (corruption or eviction) first renames the entry into ``.tmp/`` and only then deletes it,
  so a concurrent reader sees either the whole entry or nothing.
- Eviction is least-recently-used by total size above ``max_bytes``; a read refreshes the entry's
  ``last_used`` in its manifest (atomic ``os.replace``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from ..errors import CacheCorruptError
from ..settings import current

MANIFEST = "manifest.json"
TMP_DIR = ".tmp"

Tensors = dict[str, torch.Tensor]
Entry = dict[str, Tensors]  # file stem -> tensors stored in "<stem>.safetensors"


def default_cache_dir() -> Path:
    """The active engine settings' cache root (circuitdiff.settings: ``$CIRCUITDIFF_CACHE_DIR``, else
    ``$CIRCUITDIFF_DATA_DIR/cache``, else ``~/.cache/circuitdiff``)."""
    return current().cache_dir


def cache_key(
    *, model: str, dataset: str, hooks: Iterable[str], dtype: str, engine: str, extra: dict | None = None
) -> str:
    """sha256 of what determines an entry: model weights hash (or hub revision), dataset digest,
    the hook set / statistics computed, dtype and engine version (+ anything else in ``extra``)."""
    payload = {
        "model": model,
        "dataset": dataset,
        "hooks": sorted(hooks),
        "dtype": dtype,
        "engine": engine,
        "extra": extra or {},
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    corrupt: int = 0
    writes: int = 0
    lost_races: int = 0
    evictions: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class CachedEntry:
    tensors: Entry
    meta: dict[str, Any] = field(default_factory=dict)


class ActivationCache:
    def __init__(self, root: str | Path | None = None, max_bytes: int | None = None):
        """``root`` and ``max_bytes`` default to the active engine settings' (circuitdiff.settings)."""
        self.root = Path(root) if root is not None else current().cache_dir
        self.max_bytes = max_bytes if max_bytes is not None else current().cache_max_bytes
        self.stats = CacheStats()
        (self.root / TMP_DIR).mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ reads
    def get(self, key: str) -> CachedEntry | None:
        """The entry under ``key`` with every checksum verified, or None (miss). A corrupt entry is
        discarded and reported as a miss."""
        try:
            entry = self._read(key)
        except CacheCorruptError:
            self.stats.corrupt += 1
            self.discard(key)
            entry = None
        if entry is None:
            self.stats.misses += 1
        else:
            self.stats.hits += 1
        return entry

    def _read(self, key: str) -> CachedEntry | None:
        d = self.root / key
        try:
            manifest = json.loads((d / MANIFEST).read_text())
        except FileNotFoundError:
            return None  # absent, or removed by a concurrent eviction
        except (OSError, ValueError) as e:
            raise CacheCorruptError(f"unreadable manifest in cache entry {key}: {e}") from e
        try:
            files = manifest["files"]
            tensors: Entry = {}
            for name, info in files.items():
                data = (d / name).read_bytes()
                if len(data) != info["size"] or hashlib.sha256(data).hexdigest() != info["sha256"]:
                    raise CacheCorruptError(f"checksum mismatch for {name} in cache entry {key}")
                tensors[name.removesuffix(".safetensors")] = st_load(data)
        except FileNotFoundError:
            if not d.exists():
                return None  # evicted between the manifest read and the file read
            raise CacheCorruptError(f"cache entry {key} is missing a file") from None
        except (KeyError, TypeError, OSError) as e:
            raise CacheCorruptError(f"malformed cache entry {key}: {e}") from e
        self._touch(d, manifest)
        return CachedEntry(tensors=tensors, meta=manifest.get("meta", {}))

    def _touch(self, d: Path, manifest: dict) -> None:
        manifest["last_used"] = time.time()
        tmp = d / f".{MANIFEST}.{uuid.uuid4().hex}"
        try:
            tmp.write_text(json.dumps(manifest, sort_keys=True))
            os.replace(tmp, d / MANIFEST)
        except OSError:
            tmp.unlink(missing_ok=True)  # entry evicted meanwhile: nothing to refresh

    # ------------------------------------------------------------------ writes
    def put(self, key: str, tensors: Entry, meta: dict[str, Any] | None = None) -> bool:
        """Publish an entry atomically. Returns False when another writer published ``key`` first
        (its entry is kept; ours is discarded)."""
        tmp = Path(tempfile.mkdtemp(prefix=f"{key[:16]}.", dir=self.root / TMP_DIR))
        try:
            files = {}
            for stem, group in tensors.items():
                # safetensors refuses views and shared storage; cache entries are small, so copy
                data = st_save({k: v.detach().to("cpu").contiguous().clone() for k, v in group.items()})
                name = f"{stem}.safetensors"
                with open(tmp / name, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                files[name] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
            now = time.time()
            manifest = {"key": key, "files": files, "created": now, "last_used": now, "meta": meta or {}}
            (tmp / MANIFEST).write_text(json.dumps(manifest, sort_keys=True))
            try:
                os.rename(tmp, self.root / key)
            except OSError:
                if (self.root / key / MANIFEST).exists():
                    self.stats.lost_races += 1
                    return False
                raise
            self.stats.writes += 1
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        self.evict()
        return True

    # ------------------------------------------------------------------ removal
    def discard(self, key: str) -> None:
        d = self.root / key
        trash = self.root / TMP_DIR / f"del.{key[:16]}.{uuid.uuid4().hex}"
        try:
            os.rename(d, trash)
        except OSError:
            return  # already gone
        shutil.rmtree(trash, ignore_errors=True)

    def entries(self) -> list[tuple[str, float, int]]:
        """(key, last_used, size in bytes) of every published entry."""
        out = []
        for d in self.root.iterdir():
            if d.name == TMP_DIR or not d.is_dir():
                continue
            try:
                manifest = json.loads((d / MANIFEST).read_text())
                size = sum(int(f["size"]) for f in manifest["files"].values())
                out.append((d.name, float(manifest.get("last_used", 0.0)), size))
            except (OSError, ValueError, KeyError, TypeError):
                continue  # being removed, or corrupt: a read will discard it
        return out

    def total_bytes(self) -> int:
        return sum(size for _, _, size in self.entries())

    def evict(self) -> list[str]:
        """Remove least-recently-used entries until the total size is within ``max_bytes``."""
        entries = sorted(self.entries(), key=lambda e: e[1])
        total = sum(size for _, _, size in entries)
        evicted = []
        for key, _, size in entries:
            if total <= self.max_bytes:
                break
            self.discard(key)
            total -= size
            evicted.append(key)
        self.stats.evictions += len(evicted)
        return evicted
