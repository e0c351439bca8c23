"""Model loading and the adapter interface every analysis uses (see adapter.py)."""

from .adapter import CAPTURES, Batch, Intervention, ModelAdapter, RunOutput
from .loading import load_model, resolve_device, resolve_dtype

__all__ = ["CAPTURES", "Batch", "Intervention", "ModelAdapter", "RunOutput", "load_model", "resolve_device", "resolve_dtype"]
