"""Accept torch tensors or numpy arrays (or nested lists) without importing torch here."""

from __future__ import annotations

from typing import Any

import numpy as np

# What the analysis functions accept: a numpy array, a torch tensor (any device/dtype), or lists.
ArrayLike = Any


def to_numpy(x: ArrayLike, dtype: type = np.float64) -> np.ndarray:
    """A float64 (by default) numpy copy/view of ``x``; torch tensors are detached and moved to CPU."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch.Tensor, without importing torch
        x = x.detach().cpu()
        if str(x.dtype) == "torch.bfloat16":  # numpy has no bfloat16
            x = x.float()
        x = x.numpy()
    return np.asarray(x, dtype=dtype)
