"""What every stage of a comparison reads: the resolved spec, the loaded pair, the stage clock.

:class:`StageClock` times the stages, reports ``progress(stage, done, total)`` and polls
``cancelled()`` before each stage (a cancelled run stops with :class:`~circuitdiff.errors.Cancelled`).
:class:`RunContext` is built once the pair is loaded and the spec resolved, and is not changed
afterwards except for ``warnings``, which the stages append to in stage order.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from ..cache.pipeline_cache import PipelineCache
from ..models import ModelAdapter
from ..spec import ComparisonSpec
from ..vocabulary import ROLES

Progress = Callable[[str, int, int], None]
Cancel = Callable[[], bool]


class StageClock:
    """Stage bookkeeping: timings, progress ticks and the cancel check between stages."""

    def __init__(self, progress: Progress | None, cancelled: Cancel | None):
        self.progress, self.cancelled = progress, cancelled
        self.timings: dict[str, float] = {}
        self.current = ""
        self.t0 = time.perf_counter()

    @contextlib.contextmanager
    def stage(self, name: str):
        from ..errors import Cancelled

        if self.cancelled is not None and self.cancelled():
            raise Cancelled(f"cancelled before stage {name}")
        self.current = name
        self.tick_stage(name, 0, 1)
        start = time.perf_counter()
        yield
        self.timings[name] = round(time.perf_counter() - start, 4)
        self.timings["total"] = round(time.perf_counter() - self.t0, 4)

    def tick(self, done: int, total: int) -> None:
        self.tick_stage(self.current, done, total)

    def tick_stage(self, stage: str, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(stage, done, total)


@dataclass
class RunContext:
    """One comparison's fixed inputs. ``spec`` is resolved (every preset field explicit);
    ``models[role]`` the loaded adapters; ``model_types[role]`` their ``config.json`` model_type."""

    spec: ComparisonSpec
    models: dict[str, ModelAdapter]
    model_types: dict[str, str]
    device: torch.device
    clock: StageClock
    cache: PipelineCache
    datasets_dir: str | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def teacher(self) -> ModelAdapter:
        return self.models["teacher"]

    @property
    def student(self) -> ModelAdapter:
        return self.models["student"]

    @property
    def families(self) -> dict[str, str]:
        return {r: self.models[r].family for r in ROLES}


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    # Same numbers on every run of a spec: deterministic kernels where they exist (warn, don't fail,
    # on ops that have none), no cuDNN autotuning.
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
