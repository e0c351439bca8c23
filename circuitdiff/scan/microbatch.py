"""Micro-batches sized from free memory, halved and retried on out-of-memory.

The exact scan runs many ablated copies of a batch through the blocks above a layer; how many rows
go through at once is chosen from the memory the device has free, and on CPU also capped by
the engine settings' ``scan_cpu_tokens`` (``CIRCUITDIFF_SCAN_CPU_TOKENS``, tokens per micro-batch,
default 8192: beyond it a bigger batch brings no speed on CPU, only cache misses). An out-of-memory error halves the size and retries the
same rows; every other error propagates.
"""

from __future__ import annotations

from typing import Callable

import torch

from ..models.functional import LayerStack
from ..models.placement import budget_cap, bytes_per_row, free_memory_bytes  # noqa: F401 (re-exported)
from ..settings import EngineSettings, current


def rows_per_microbatch(view: LayerStack, seq_len: int, device: torch.device, itemsize: int,
                        readout_bytes: int = 0, settings: EngineSettings | None = None) -> int:
    """Rows (sequences) that fit in a quarter of free memory while one block runs (plus
    ``readout_bytes`` per row for a metric that reads whole distributions), free memory read now
    (capped by the ``CIRCUITDIFF_MEMORY_BUDGET`` setting). On CPU also capped so a micro-batch stays
    cache-friendly; bigger brings no speed there. The scan records the size that ran. ``settings``:
    the engine settings (default: the active ones, circuitdiff.settings)."""
    settings = settings or current()
    per_row = bytes_per_row(view.d_model, view.d_mlp, view.n_heads, seq_len, itemsize) + readout_bytes
    free = free_memory_bytes(device)
    cap = budget_cap(settings)
    if cap is not None:
        free = min(free, cap)
    rows = max(1, free // 4 // max(per_row, 1))
    if device.type != "cuda":
        rows = min(rows, max(1, settings.scan_cpu_tokens // seq_len))
    return int(rows)


def _is_oom(e: BaseException) -> bool:
    if isinstance(e, torch.cuda.OutOfMemoryError):
        return True
    msg = str(e).lower()
    return isinstance(e, (RuntimeError, MemoryError)) and (
        "out of memory" in msg or "can't allocate memory" in msg or isinstance(e, MemoryError)
    )


def run_microbatched(n_rows: int, rows: int, fn: Callable[[slice], torch.Tensor]) -> tuple[torch.Tensor, int]:
    """Apply ``fn`` to consecutive row slices of at most ``rows``; on out-of-memory halve ``rows``
    and retry the slice. Returns the concatenated outputs and the size that worked."""
    outs, start = [], 0
    while start < n_rows:
        stop = min(n_rows, start + rows)
        try:
            outs.append(fn(slice(start, stop)))
        except (RuntimeError, MemoryError) as e:
            if not _is_oom(e) or rows == 1:
                raise
            rows = max(1, rows // 2)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            continue
        start = stop
    return torch.cat(outs), rows
