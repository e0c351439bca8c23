"""From a validated spec to a job: checks that need the disk (never weights) and the content key.

content key = sha256(canonical resolved spec + model fingerprints + dataset digest + engine
version). Fingerprints: zoo and local models hash their safetensors files (cached per path and
mtimes, so a resubmission does not re-read megabytes), hub models are ``id@revision``. Local paths
are rewritten to their real absolute path so the worker loads exactly what was checked.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from circuitdiff import ENGINE_VERSION
from circuitdiff.fingerprint import file_sha256
from circuitdiff.errors import MetricError
from circuitdiff.metrics import check_metric
from circuitdiff.spec import ComparisonSpec, ModelRef
from circuitdiff.tasks.custom import dataset_kind
from circuitdiff.catalogue import HUB_SHAPES, RANDOM, zoo_model, zoo_path
from circuitdiff.sizing import Workload, estimated_bytes
from jobs.content import content_key, weights_fingerprint
from jobs.settings import Settings
from jobs.store import JobStore

from . import datasets
from .modelroots import check_checkpoint, resolve_under_roots
from .problems import Problem


@dataclass(frozen=True)
class Prepared:
    spec: ComparisonSpec  # resolved; local paths made absolute and real
    fingerprints: dict[str, str]
    dataset_digest: str
    content_key: str


def _model(ref: ModelRef, role: str, settings: Settings) -> tuple[ModelRef, str]:
    """``role``: teacher, student or ``controls.<i>`` (the field path, as validation errors name it)."""
    field = f"{role}.id"
    if ref.kind == "zoo":
        name = ref.id[4:]
        if name in RANDOM:
            return ref, f"zoo-random:{name}@{ENGINE_VERSION}"  # generated from a fixed seed by the engine
        d = zoo_path(name)
        if not (d / "config.json").is_file():
            raise Problem.field("model_unavailable", field, f"zoo model {ref.id} is not built on this server")
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
            raise Problem.field("dataset_not_found", "dataset", f"no uploaded dataset {ds!r}")
        _check_metric(spec, datasets.kind_of(settings.datasets_dir, meta))
        return ds, "sha256:" + meta["sha256"]
    real = resolve_under_roots(ds, settings.model_roots, "dataset", want_dir=False)
    items, _, _ = datasets.valid_lines(datasets.read_local(real), field="dataset")  # the upload's rule
    _check_metric(spec, dataset_kind(items))
    return str(real), "sha256:" + file_sha256(real)


def _check_metric(spec: ComparisonSpec, kind: str) -> None:
    """The metric on this dataset's kind (circuitdiff.metrics.check_metric): refused now, not when a
    worker gets the job."""
    try:
        check_metric(spec.metric, kind)
    except MetricError as e:
        raise Problem.field(e.code, e.field or "metric", e.message, e.fix) from None


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
    controls = [attempt(_model, ref, f"controls.{i}", settings) for i, ref in enumerate(spec.controls)]
    dataset, digest = attempt(_dataset, spec, settings, owner)
    if problems:
        first = problems[0]
        errors = [e for p in problems for e in (p.errors or [])]
        raise Problem(first.code, "; ".join(p.detail for p in problems), status=first.status, errors=errors)
    # Resolved once, here, with the models' layout where it can be known before loading (zoo, local
    # checkpoints, catalogue.HUB_SHAPES); the record, the status and the result then show one spec.
    # A hub model not seen before leaves the paper preset's ablation pending: the worker fills it in.
    spec = spec.model_copy(update={"teacher": teacher, "student": student, "dataset": dataset,
                                   "controls": [ref for ref, _ in controls]}).resolve_known()
    fingerprints = {"teacher": fp_t, "student": fp_s, **{f"controls.{i}": fp for i, (_, fp) in enumerate(controls)}}
    return Prepared(spec, fingerprints, digest, content_key(spec, fingerprints, digest))


def too_many_queued(queued: int, settings: Settings, store: JobStore) -> Problem:
    """429 for a key at its queued limit (jobs.store's create refused it): the limit, how many are
    queued, and a Retry-After of about one job's time on the live workers (the next start frees a place)."""
    limit = settings.max_queued_per_key
    d = store.durations()
    mean = d["sum"] / d["count"] if d.get("count") else 30.0
    workers = max(1, len(store.workers_alive(settings.worker_stale_seconds)))
    retry = max(5, min(3600, round(mean / workers)))
    return Problem("too_many_queued",
                   f"this key has {queued} comparisons queued, its limit (CIRCUITDIFF_MAX_QUEUED_PER_KEY) is {limit}",
                   headers={"Retry-After": str(retry)}, extra={"limit": limit, "queued": queued})


def model_config(ref: ModelRef) -> dict[str, Any] | None:
    """The sizes in a model's config, where the API can read them without loading: a zoo model (its
    directory, or a random one's shape), a local checkpoint's ``config.json``, a hub model in
    ``catalogue.HUB_SHAPES``; None for any other hub model (its worker's memory plan decides)."""
    if ref.kind == "zoo":
        m = zoo_model(ref.id)
        if m.shape is not None:
            return {"model_type": "gpt2", **m.shape}
        path = zoo_path(m.name) / "config.json"
    elif ref.kind == "hub":
        return HUB_SHAPES.get(ref.id)
    else:
        path = Path(ref.id) / "config.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def choose_pool(spec: ComparisonSpec, settings: Settings, store: JobStore) -> str:
    """``gpu``, or ``multi`` for a job one of whose models does not fit the largest single GPU any live
    one-GPU worker has (its size estimated from the config: circuitdiff.sizing); 422
    ``needs_several_gpus`` when no worker over several GPUs is alive to take it. Without a live
    GPU worker (a CPU deployment, or none up yet) every job is ``gpu``: the worker's plan decides."""
    infos = store.worker_infos(settings.worker_stale_seconds)
    single = [max(w.device_capacity.values()) for w in infos if w.pool == "gpu" and w.device_capacity]
    if not single:
        return "gpu"
    largest = max(single)
    workload = Workload(spec.n_prompts)
    too_big = []
    for field, ref in [("teacher", spec.teacher), ("student", spec.student),
                       *((f"controls.{i}", r) for i, r in enumerate(spec.controls))]:
        config = model_config(ref)
        if config is not None and (need := estimated_bytes(config, spec.dtype, workload)) > largest:
            too_big.append((field, ref.id, need))
    if not too_big:
        return "gpu"
    if any(w.pool == "multi" for w in infos):
        return "multi"
    gib = lambda b: f"{b / 2**30:.1f} GiB"  # noqa: E731
    field, model_id, need = too_big[0]
    raise Problem.field("needs_several_gpus", f"{field}.id",
                        f"{model_id} needs about {gib(need)} (weights and scan) and the largest single GPU of a "
                        f"live worker offers {gib(largest)}; no worker over several GPUs is running")
