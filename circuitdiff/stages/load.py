"""Stage ``load``: both models behind the adapter interface, and the spec resolved against them.

The memory plan sizes each model's scan at ``n_prompts`` before loading (circuitdiff.models.placement).
The spec is resolved here, once, with the models' ``model_type``: the ``paper`` preset's ablation
depends on the pair's layout (circuitdiff.spec.preset_ablation). The API resolves the same way where
it can know the types before loading; this is where a hub model it had not seen gets resolved.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..models import ModelAdapter, resolve_device
from ..models.placement import Workload
from ..scan.clean import BATCH_SIZE
from ..spec import ComparisonSpec
from ..vocabulary import ROLES
from .context import StageClock

Loader = Callable[..., ModelAdapter]


@dataclass(frozen=True)
class LoadedPair:
    spec: ComparisonSpec  # resolved against the pair's layout
    models: dict[str, ModelAdapter]
    model_types: dict[str, str]
    device: torch.device


def load_pair(spec: ComparisonSpec, loader: Loader, clock: StageClock) -> LoadedPair:
    """``loader(ref, device=, dtype=, field=, workload=) -> ModelAdapter`` (circuitdiff.models.load_model,
    or a worker's cache of loaded models)."""
    device = resolve_device(spec.device)
    models: dict[str, ModelAdapter] = {}
    for k, role in enumerate(ROLES):
        models[role] = loader(getattr(spec, role), device=device, dtype=spec.dtype, field=f"{role}.id",
                              workload=Workload(spec.n_prompts, batch_size=BATCH_SIZE))
        clock.tick(k + 1, 2)
    types = {r: models[r].hf_model.config.model_type for r in ROLES}
    return LoadedPair(spec.resolve(types), models, types, device)
