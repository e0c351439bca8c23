"""Will a model and its scan fit, in which dtype, on which devices: decided from the config alone,
before any weight is loaded (issue #14 §3).

Estimate, in bytes, for one model of a comparison:

- ``weights`` = parameters x the dtype's size. Parameters are counted exactly by building the
  architecture on PyTorch's ``meta`` device (shapes only, no memory, no weights read).
- ``activations`` = what the exact scan keeps for the model: the clean and the corrupted pass, per
  layer the residual stream before and after attention, the per-head output ``z`` and the MLP output,
  for every prompt and position; plus one micro-batch (at least one row) of the blocks above a layer
  (:func:`bytes_per_row`, the unit the exact scan's micro-batches are sized in); plus one forward's float32 logits over the
  vocabulary for a batch of :data:`circuitdiff.scan.clean.BATCH_SIZE` prompts (the naive pass).

Available memory: per visible device, what is free (CUDA ``mem_get_info``; CPU ``MemAvailable``),
capped by the engine settings' ``memory_budget`` (``CIRCUITDIFF_MEMORY_BUDGET``, bytes per device,
``24GiB`` / ``512MB`` / a plain number; circuitdiff.settings) when it is set: a worker that shares its GPUs says so there, and tests fake a small machine
with it (tests/engine/test_placement.py).

Placement: the whole model on one device when weights + activations fit there. Otherwise, on a
worker with several GPUs, the decoder layers are spread over them in order, filling each GPU's free
memory; everything else (embeddings, final norm, unembedding, the rotary table) stays with the first
GPU, where the scans gather activations and influences, so its share of layers is what is left after
those and the activations. This map is handed to ``from_pretrained(device_map=...)`` (it needs the
``accelerate`` package, imported only there). When nothing fits, :class:`InsufficientMemoryError`
(``code: "insufficient_memory"``) names the bytes needed and available and what to change.

``dtype: "auto"``: float32 for models up to :data:`~circuitdiff.vocabulary.BF16_ABOVE_PARAMS`
parameters, bfloat16 above (the authors ran the 8B pair in bfloat16).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from ..errors import InsufficientMemoryError
from ..settings import EngineSettings, current, parse_bytes  # noqa: F401 (parse_bytes re-exported)
from ..sizing import (DEFAULT_SEQ_LEN, ITEMSIZE, Workload, activation_bytes, bytes_per_row,  # noqa: F401 (re-exported)
                      choose_dtype)


@dataclass
class MemoryPlan:
    """The decision for one model; recorded in the result's ``models[role].placement``."""

    dtype: str
    n_params: int
    weight_bytes: int
    activation_bytes: int
    needed_bytes: int
    available_bytes: dict[str, int]  # device -> free bytes the plan saw (after the budget cap)
    devices: list[str]  # where weights go, first = where the scans gather
    device_map: dict[str, str] | None = None  # HF module name -> device, for weights over several GPUs
    layers_per_device: dict[str, int] = field(default_factory=dict)

    def to_info(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("device_map")
        return d


def free_memory_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 * 2**30


def budget_cap(settings: EngineSettings | None = None) -> int | None:
    """Bytes per device a job may plan to use: ``settings.memory_budget`` (default: the active engine
    settings', circuitdiff.settings); None = what each device has free."""
    return (settings or current()).memory_budget


def available_memory(device: torch.device, settings: EngineSettings | None = None) -> dict[str, int]:
    """Free bytes per device a model may use: every visible GPU for ``cuda``, the host for ``cpu``;
    each capped by the engine settings' memory budget (default: the active settings)."""
    if device.type == "cuda":
        devs = [torch.device("cuda", i) for i in range(torch.cuda.device_count())]
        if device.index is not None:
            devs = [device]
    else:
        devs = [device]
    cap = budget_cap(settings)
    return {str(d): min(free_memory_bytes(d), cap) if cap is not None else free_memory_bytes(d) for d in devs}


def meta_model(config: Any) -> torch.nn.Module:
    """The architecture on the meta device: shapes without memory."""
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM

    from ..architectures import family_of_model_type

    auto = AutoModelForMaskedLM if family_of_model_type(config.model_type) == "masked" else AutoModelForCausalLM
    with torch.device("meta"):
        return auto.from_config(config)


def plan_memory(config: Any, dtype: str, workload: Workload, available: dict[str, int], *,
                field: str = "model", model_id: str = "model") -> MemoryPlan:
    """Decide dtype and placement for ``config`` on the devices in ``available`` (device -> free bytes,
    first = home); raise :class:`InsufficientMemoryError` when it cannot fit."""
    model = meta_model(config)
    n_params = sum(p.numel() for p in model.parameters())
    dt = choose_dtype(dtype, n_params)
    size = ITEMSIZE[dt]
    weights = sum(p.numel() for p in model.parameters()) * size + sum(b.numel() for b in model.buffers()) * 4
    acts = activation_bytes(config, workload, size)
    needed = weights + acts
    devices = list(available)
    home = devices[0]
    plan = MemoryPlan(dt, n_params, weights, acts, needed, dict(available), [home])
    if needed <= available[home]:
        return plan
    if len(devices) > 1 and all(d.startswith("cuda") for d in devices):
        spread = _spread_layers(model, size, acts, available)
        if spread is not None:
            plan.device_map, plan.layers_per_device = spread
            plan.devices = [d for d in devices if plan.layers_per_device.get(d)] or [home]
            return plan
    total = sum(available.values())
    gib = lambda b: f"{b / 2**30:.2f} GiB"  # noqa: E731
    fixes = [f"use fewer prompts (n_prompts={workload.n_prompts}: activations take {gib(acts)})"]
    if size > 2:
        fixes.append(f"use dtype bfloat16 (halves the {gib(weights)} of weights)")
    fixes.append(f"use a worker with more GPUs or more free memory (visible: {', '.join(devices)})")
    raise InsufficientMemoryError(
        f"{model_id} does not fit: it needs {needed} bytes ({gib(needed)}: weights {gib(weights)} in {dt} + scan "
        f"activations {gib(acts)}) and {total} bytes ({gib(total)}) are available on {', '.join(devices)}",
        field=field, fix="; or ".join(fixes), needed_bytes=needed, available_bytes=total,
    )


def _layer_list(model: torch.nn.Module) -> tuple[str, torch.nn.ModuleList] | None:
    n = getattr(model.config, "num_hidden_layers", None) or getattr(model.config, "n_layer", None)
    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.ModuleList) and len(mod) == n:
            return name, mod
    return None


def _spread_layers(model, size: int, acts: int, available: dict[str, int]):
    """Greedy, in layer order: each GPU takes layers while they fit; the first GPU also holds every
    non-layer module and the activations. Returns (device_map, layers per device) or None."""
    found = _layer_list(model)
    if found is None:
        return None
    prefix, layers = found
    layer_bytes = [sum(p.numel() for p in layer.parameters()) * size for layer in layers]
    rest = sum(p.numel() for p in model.parameters()) * size - sum(layer_bytes)
    devices = list(available)
    room = dict(available)
    room[devices[0]] -= rest + acts
    if room[devices[0]] < 0:
        return None
    device_map: dict[str, str] = {}
    counts = {d: 0 for d in devices}
    k = 0
    for i, b in enumerate(layer_bytes):
        while k < len(devices) and room[devices[k]] < b:
            k += 1
        if k == len(devices):
            return None
        room[devices[k]] -= b
        counts[devices[k]] += 1
        device_map[f"{prefix}.{i}"] = devices[k]
    layer_names = {f"{prefix}.{i}" for i in range(len(layers))}
    for name, _ in model.named_children():
        _assign_rest(model, name, prefix, layer_names, devices[0], device_map)
    return device_map, counts


def _assign_rest(model, name: str, prefix: str, layer_names: set[str], home: str, device_map: dict[str, str]):
    """Every module outside the layer list goes to ``home`` (recursing into the layer list's parents)."""
    if name == prefix or name in layer_names:
        return
    if prefix.startswith(name + "."):
        for child, _ in model.get_submodule(name).named_children():
            _assign_rest(model, f"{name}.{child}", prefix, layer_names, home, device_map)
        return
    device_map[name] = home


def check_activations(config: Any, dtype: torch.dtype, workload: Workload, device: torch.device, *,
                      field: str, model_id: str, settings: EngineSettings | None = None) -> int:
    """After the task is tokenised (real length): do this model's scan activations still fit in what
    its home device has free now? Returns the bytes estimated; raises InsufficientMemoryError."""
    size = torch.empty((), dtype=dtype).element_size()
    acts = activation_bytes(config, workload, size)
    free = available_memory(device, settings)
    home = str(device) if str(device) in free else next(iter(free))
    if acts > free[home]:
        gib = acts / 2**30
        raise InsufficientMemoryError(
            f"{model_id}: the scan's activations need {acts} bytes ({gib:.2f} GiB) for {workload.n_prompts} prompts "
            f"of {workload.seq_len} tokens and {free[home]} bytes are free on {home}",
            field="n_prompts", fix="use fewer prompts, dtype bfloat16, or a worker with more free memory",
            needed_bytes=acts, available_bytes=free[home],
        )
    return acts
