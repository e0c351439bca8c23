"""A job's content identity, shared by the API (submissions) and the worker (watch checks).

content key = sha256(canonical resolved spec + model fingerprints + dataset digest + engine
version): two requests with the same key compute the same result, so the second gets the first's
job. Weight fingerprints are ``weights_sha256`` of a checkpoint's safetensors files, cached per
(path, name/size/mtime/ctime of each weight file) so a resubmission or a watch tick does not re-read
megabytes; a file rewritten in place changes its ctime and is hashed again.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from pathlib import Path

from circuitdiff import ENGINE_VERSION
from circuitdiff.fingerprint import WEIGHT_SUFFIXES, weights_sha256
from circuitdiff.catalogue import RANDOM, zoo_path
from circuitdiff.spec import ComparisonSpec, ModelRef

_FP_CACHE: OrderedDict[tuple, str] = OrderedDict()
_FP_LOCK = threading.Lock()
_FP_CACHE_SIZE = 256


def weights_stamp(model_dir: Path) -> tuple:
    """(name, size, mtime, ctime) of each weight file: what must change for the weights to change
    (ctime too: a copy that keeps the old mtime still moves it)."""
    return tuple(
        (p.name, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        for p in sorted(model_dir.iterdir())
        if p.name.endswith(WEIGHT_SUFFIXES) and (st := p.stat())
    )


def weights_fingerprint(model_dir: Path) -> str:
    """``weights_sha256`` cached by (path, :func:`weights_stamp`)."""
    key = (str(model_dir), weights_stamp(model_dir))
    with _FP_LOCK:
        if key in _FP_CACHE:
            _FP_CACHE.move_to_end(key)
            return _FP_CACHE[key]
    sha = weights_sha256(model_dir)
    with _FP_LOCK:
        _FP_CACHE[key] = sha
        while len(_FP_CACHE) > _FP_CACHE_SIZE:
            _FP_CACHE.popitem(last=False)
    return sha


def content_key(spec: ComparisonSpec, fingerprints: dict[str, str], dataset_digest: str) -> str:
    h = hashlib.sha256()
    for part in (spec.canonical_json(), json.dumps(fingerprints, sort_keys=True), dataset_digest, ENGINE_VERSION):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def model_fingerprint(ref: ModelRef) -> str:
    """The fingerprint of an already validated model reference, as a submission records it."""
    if ref.kind == "zoo":
        name = ref.id[4:]
        if name in RANDOM:
            return f"zoo-random:{name}@{ENGINE_VERSION}"  # generated from a fixed seed by the engine
        return "sha256:" + weights_fingerprint(zoo_path(name))
    if ref.kind == "hub":
        return f"hub:{ref.id}@{ref.revision or 'main'}"
    return "sha256:" + weights_fingerprint(Path(ref.id))
