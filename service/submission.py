"""From a validated spec to a job: checks that need the disk (never weights) and the content key.

content key = sha256(canonical resolved spec + model fingerprints + dataset digest + engine
version). Fingerprints: zoo and local models hash their safetensors files (cached per path and
mtimes, so a resubmission does not re-read megabytes), hub models are ``id@revision``. Local paths
are rewritten to their real absolute path so the worker loads exactly what was checked.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from circuitdiff import ENGINE_VERSION
from circuitdiff.fingerprint import WEIGHT_SUFFIXES, file_sha256, weights_sha256
from circuitdiff.metrics import METRIC_FIX, METRICS
from circuitdiff.spec import ComparisonSpec, ModelRef
from circuitdiff.tasks.custom import dataset_kind, validate_lines
from circuitdiff.catalogue import RANDOM, zoo_path
from jobs.settings import Settings

from . import datasets
from .modelroots import check_checkpoint, resolve_under_roots
from .problems import Problem

_FP_CACHE: OrderedDict[tuple, str] = OrderedDict()
_FP_LOCK = threading.Lock()
_FP_CACHE_SIZE = 256


@dataclass(frozen=True)
class Prepared:
    spec: ComparisonSpec  # local paths made absolute and real
    fingerprints: dict[str, str]
    dataset_digest: str
    content_key: str


def weights_fingerprint(model_dir: Path) -> str:
    """``weights_sha256`` cached by (path, name/size/mtime of each weight file)."""
    stamp = tuple(
        (p.name, st.st_size, st.st_mtime_ns)
        for p in sorted(model_dir.iterdir())
        if p.name.endswith(WEIGHT_SUFFIXES) and (st := p.stat())
    )
    key = (str(model_dir), stamp)
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


def _model(ref: ModelRef, role: str, settings: Settings) -> tuple[ModelRef, str]:
    field = f"{role}.id"
    if ref.kind == "zoo":
        name = ref.id[4:]
        if name in RANDOM:
            return ref, f"zoo-random:{name}@{ENGINE_VERSION}"  # generated from a fixed seed by the engine
        d = zoo_path(name)
        if not (d / "config.json").is_file():
            raise Problem.field(
                422, "model_unavailable", field, f"zoo model {ref.id} is not built on this server", "run `make zoo`"
            )
        return ref, "sha256:" + weights_fingerprint(d)
    if ref.kind == "hub":
        return ref, f"hub:{ref.id}@{ref.revision or 'main'}"
    real = resolve_under_roots(ref.id, settings.model_roots, field, want_dir=True)
    check_checkpoint(real, field)
    return ModelRef(id=str(real)), "sha256:" + weights_fingerprint(real)


def _dataset(spec: ComparisonSpec, settings: Settings, owner: str) -> tuple[str | None, str]:
    if spec.dataset is None:
        return None, f"builtin:{spec.task}"  # generated from (task, options, seed, n): all in the spec
    ds = spec.dataset
    if ds.startswith("ds_"):
        meta = datasets.load_meta(settings.datasets_dir, owner, ds)  # another key's dataset: not found
        if meta is None:
            raise Problem.field(
                422, "dataset_not_found", "dataset", f"no uploaded dataset {ds!r}", "upload it with POST /v1/datasets"
            )
        _check_metric(spec, datasets.kind_of(settings.datasets_dir, meta))
        return ds, "sha256:" + meta["sha256"]
    real = resolve_under_roots(ds, settings.model_roots, "dataset", want_dir=False)
    _check_metric(spec, dataset_kind(validate_lines(real.read_bytes())[0]))
    return str(real), "sha256:" + file_sha256(real)


def _check_metric(spec: ComparisonSpec, kind: str) -> None:
    """An answer metric cannot run a plain-text dataset: refused now, not when a worker gets the job."""
    if kind == "text" and METRICS[spec.metric].needs_answer:
        raise Problem.field(422, "invalid_metric", "metric",
                            f"{spec.metric} reads an answer token and dataset {spec.dataset!r} is plain text", METRIC_FIX)


def prepare(spec: ComparisonSpec, settings: Settings, owner: str) -> Prepared:
    """``owner``: the caller, whose uploaded datasets the spec may name."""
    # Check all three parts and report every bad field at once, not one per round trip.
    problems: list[Problem] = []

    def attempt(fn, *args):
        try:
            return fn(*args)
        except Problem as p:
            problems.append(p)
            return None, ""

    teacher, fp_t = attempt(_model, spec.teacher, "teacher", settings)
    student, fp_s = attempt(_model, spec.student, "student", settings)
    dataset, digest = attempt(_dataset, spec, settings, owner)
    if problems:
        first = problems[0]
        errors = [e for p in problems for e in (p.errors or [])]
        raise Problem(first.status, first.code, "; ".join(p.detail for p in problems), errors=errors)
    spec = spec.model_copy(update={"teacher": teacher, "student": student, "dataset": dataset})
    fingerprints = {"teacher": fp_t, "student": fp_s}
    h = hashlib.sha256()
    for part in (spec.canonical_json(), json.dumps(fingerprints, sort_keys=True), digest, ENGINE_VERSION):
        h.update(part.encode())
        h.update(b"\0")
    return Prepared(spec, fingerprints, digest, h.hexdigest())
