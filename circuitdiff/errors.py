"""Engine exception types.

Every error a user can cause carries a stable ``code`` (the service maps it to a problem+json
``code`` and HTTP status), the spec ``field`` it concerns where there is one, and a ``fix`` hint.
Importable without torch.
"""

from __future__ import annotations


class CircuitdiffError(Exception):
    """Base class. ``code`` is stable API surface: never rename one."""

    code = "circuitdiff_error"
    http_status = 400

    def __init__(self, message: str, *, field: str | None = None, fix: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        self.fix = fix

    def to_dict(self) -> dict:
        return {"code": self.code, "detail": self.message, "field": self.field, "fix": self.fix}


class SpecError(CircuitdiffError):
    code = "invalid_spec"
    http_status = 422


class UnknownModelError(CircuitdiffError):
    code = "unknown_model"
    http_status = 422


class ModelLoadError(CircuitdiffError):
    code = "model_load_failed"
    http_status = 422


class IncompatibleModelsError(CircuitdiffError):
    code = "incompatible_models"
    http_status = 422


class UnknownTaskError(CircuitdiffError):
    code = "unknown_task"
    http_status = 422


class DatasetError(CircuitdiffError):
    code = "invalid_dataset"
    http_status = 422


class MetricError(CircuitdiffError):
    """The job's metric cannot be computed on this dataset or model pair (circuitdiff.metrics)."""

    code = "invalid_metric"
    http_status = 422


class TaskTokenizationError(CircuitdiffError):
    """No usable prompt survived validation (single-token answers, equal clean/corrupted lengths)."""

    code = "task_tokenization_failed"
    http_status = 422

    def __init__(self, message: str, *, rejected: list[dict] | None = None, **kw):
        super().__init__(message, **kw)
        self.rejected = rejected or []


class CacheCorruptError(CircuitdiffError):
    code = "cache_corrupt"
    http_status = 500


class Cancelled(CircuitdiffError):
    """Raised by the pipeline when the caller's ``cancelled()`` turns true between components."""

    code = "cancelled"
    http_status = 409


class ComponentIdError(CircuitdiffError, ValueError):
    """A string that is not a component address (``L3H7`` / ``L3MLP`` / the authors' ``MLP3``)."""

    code = "invalid_component_id"
    http_status = 422


class UnsupportedArchitectureError(CircuitdiffError, TypeError):
    """An architecture some part of circuitdiff has no code for: no forward-hook layout (the loader
    turns it into a :class:`ModelLoadError`), or no functional view (the scans then run naive)."""

    code = "unsupported_architecture"
    http_status = 422


class InsufficientMemoryError(CircuitdiffError):
    """A model and its scan cannot fit in the memory the worker's devices have free, estimated before
    loading (circuitdiff.models.placement). Carries the bytes needed and available."""

    code = "insufficient_memory"
    http_status = 422

    def __init__(self, message: str, *, field: str | None = None, fix: str | None = None,
                 needed_bytes: int | None = None, available_bytes: int | None = None):
        super().__init__(message, field=field, fix=fix)
        self.needed_bytes = needed_bytes
        self.available_bytes = available_bytes

    def to_dict(self) -> dict:
        return {**super().to_dict(), "needed_bytes": self.needed_bytes, "available_bytes": self.available_bytes}
