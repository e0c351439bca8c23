"""The worker's door to the engine: ``run_comparison`` plus a small LRU of loaded models.

Loading a model (reading weights, booting the transformer_lens bridge) costs more than a small
comparison, and a team usually compares many students against one teacher, so the worker keeps
the last ``model_cache_size`` loaded adapters across jobs and hands them to the engine through its
``loader`` hook. Only this module imports the engine (and with it torch).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

from circuitdiff.settings import EngineSettings, use
from jobs.settings import get_settings
from jobs.store import model_name


class ModelLRU:
    """Loaded adapters keyed by (model id, revision, device, dtype); least recently used evicted."""

    def __init__(self, size: int):
        self.size = size
        self._items: OrderedDict[tuple, Any] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def loaded(self) -> list[str]:
        """The models held, least recently used first, as ``id`` or ``id@revision``."""
        with self._lock:
            keys = list(self._items)
        return [model_name(k[0], k[1]) for k in keys]

    def get_or_load(self, key: tuple, load: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self.hits += 1
                return self._items[key]
        model = load()
        with self._lock:
            self.misses += 1
            if self.size > 0:
                self._items[key] = model
                while len(self._items) > self.size:
                    self._items.popitem(last=False)
        return model


_models: ModelLRU | None = None


def models() -> ModelLRU:
    global _models
    if _models is None:
        _models = ModelLRU(get_settings().model_cache_size)
    return _models


def cached_loader(ref, device="cpu", dtype="float32", field="model", workload=None):
    """Drop-in for ``circuitdiff.models.load_model`` that reuses adapters loaded by earlier jobs.

    Local and zoo directories are keyed with their weights' mtimes too, so a checkpoint
    overwritten in place is loaded again rather than served stale.
    """
    from circuitdiff.models.loading import load_model

    rid = getattr(ref, "id", ref)
    rev = getattr(ref, "revision", None)
    key = (rid, rev, str(device), str(dtype), _stamp(rid))
    # the workload only sizes the memory check before loading; a loaded model serves any workload (the
    # pipeline checks the scan's activations again once the task is tokenised)
    return models().get_or_load(key, lambda: load_model(ref, device=device, dtype=dtype, field=field,
                                                         workload=workload))


def _stamp(rid: str) -> tuple:
    path: Path | None = None
    if rid.startswith("zoo:"):
        from circuitdiff.catalogue import TRAINED, zoo_path

        path = zoo_path(rid[4:]) if rid[4:] in TRAINED else None
    elif rid.startswith("/"):
        path = Path(rid)
    if path is None or not path.is_dir():
        return ()
    return tuple(sorted((p.name, p.stat().st_mtime_ns) for p in path.iterdir() if p.suffix == ".safetensors"))


def _no_progress_bars() -> None:
    """Weight-loading bars belong on a terminal; in the worker's log they were noise at WARNING.
    The job's own progress is in its record."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def scan_one(spec, role: str, *, cancelled, settings: EngineSettings) -> str:
    """One model's side of a split comparison into the shared activation cache
    (``circuitdiff.pipeline.scan_one_model``), with the worker's hooks and settings as :func:`run`."""
    from circuitdiff.pipeline import scan_one_model

    _no_progress_bars()
    with use(settings):
        return scan_one_model(spec, role, None, cancelled, datasets_dir=str(settings.datasets_dir),
                              loader=cached_loader, cache=str(settings.cache_dir))


def run(spec, *, progress, cancelled, settings: EngineSettings, resolved=None, before_scan=None):
    """``run_comparison`` with the worker's hooks and engine settings (``Settings.engine``): uploaded
    datasets resolve under ``settings.datasets_dir`` (the spec keeps the dataset id), models come from
    the LRU, activations are cached under the data dir so every worker sharing the volume reuses
    them; the memory budget and micro-batch sizes below the pipeline read ``settings`` too.
    ``resolved(spec)``: the spec resolved against the loaded models, before any scan."""
    from circuitdiff.pipeline import run_comparison

    _no_progress_bars()
    with use(settings):
        return run_comparison(spec, progress, cancelled, datasets_dir=str(settings.datasets_dir),
                              loader=cached_loader, cache=str(settings.cache_dir), resolved=resolved,
                              before_scan=before_scan)
