"""Error codes and the engine's exception types. Importable without torch.

:data:`CODES` is the one table of every ``code`` the API can answer, in a problem+json response or
in a failed job's recorded error: its HTTP status and the fix given when the error itself names
none. The service builds every problem from it (``service.problems``: a code missing from the table
cannot be answered, and ``tests/service/test_error_codes.py`` finds every code the code base writes), and a
failed job's error takes its default fix from it (``jobs.errors``).

Every error a user can cause carries a stable ``code`` (never renamed: API surface), the spec
``field`` it concerns where there is one, and a ``fix`` hint. The exception classes below name their
code and nothing else: the HTTP status is the service's business, looked up here by code.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ErrorCode:
    code: str
    status: int  # the HTTP status of a problem with this code
    fix: str | None = None  # the fix when the error gives none; None: every raiser gives its own


DEFAULT_FIX = "read the detail and change the spec accordingly; if it names no cause, report the job id"
_ROWS = [
    # -- the engine's exceptions (the classes below) and the spec's field errors (circuitdiff.spec.spec_error,
    #    whose error type is the code): a submission the engine or the spec refuses
    ErrorCode("circuitdiff_error", 400),
    ErrorCode("invalid_spec", 422),
    ErrorCode("unknown_model", 422, "name a model listed by GET /v1/models, or a hub id that exists"),
    ErrorCode("invalid_model", 422),
    ErrorCode("model_load_failed", 422, "check that the checkpoint loads with transformers' from_pretrained "
                                        "(config.json, tokenizer files, .safetensors weights), or name another "
                                        "model (GET /v1/models)"),
    ErrorCode("incompatible_models", 422, "compare models that share a tokenizer, or give both a fast tokenizer "
                                          "(tokenizer.json)"),
    ErrorCode("unsupported_architecture", 422),
    ErrorCode("insufficient_memory", 422),
    ErrorCode("unknown_task", 422),
    ErrorCode("invalid_task_option", 422),
    ErrorCode("task_tokenization_failed", 422, "give prompts whose answer and distractor are single tokens for both "
                                               "models and whose clean and corrupted prompts tokenise to the same "
                                               "length"),
    ErrorCode("invalid_dataset", 422),
    ErrorCode("invalid_dataset_line", 422),  # an item of invalid_dataset's errors: one rejected line
    ErrorCode("empty_dataset", 422, "send JSONL, one item per line"),
    ErrorCode("dataset_too_large", 413),
    ErrorCode("invalid_metric", 422),
    ErrorCode("invalid_scan_option", 422),
    ErrorCode("invalid_circuits", 422),
    ErrorCode("invalid_component_id", 422),
    ErrorCode("invalid_result", 422),
    ErrorCode("cache_corrupt", 500),
    ErrorCode("cancelled", 409),
    # -- a failed job's recorded error (jobs.errors, worker/watching.py): answered inside a 200 body
    ErrorCode("internal_error", 500, "submit the comparison again; if it fails the same way, report the job id"),
    ErrorCode("worker_lost", 500, "try fewer prompts, a smaller dtype, or a machine with more memory"),
    ErrorCode("results_not_writable", 500, "the operator must make <data_dir>/results writable by the worker "
                                           "(mounted read-write, owned by its user, space left), then submit again"),
    ErrorCode("job_missing", 404),  # a watch's history entry whose job record is gone
    # -- the request itself (service.problems, service.bodylimit, service.auth, service.console)
    ErrorCode("invalid_json", 400),
    ErrorCode("invalid_http", 400, "send a well-formed HTTP/1.1 request: a numeric Content-Length, "
                                   "no CR or LF inside a header (service.http_server)"),
    ErrorCode("invalid_request", 422),
    ErrorCode("invalid_value", 422),
    ErrorCode("missing_field", 422),
    ErrorCode("unknown_field", 422),
    ErrorCode("unsupported_media_type", 415, "send the JSON body with `Content-Type: application/json` "
                                             "(curl: -H 'Content-Type: application/json')"),
    ErrorCode("body_too_large", 413, "send a smaller body (the limit is set by CIRCUITDIFF_MAX_BODY_BYTES / "
                                     "CIRCUITDIFF_MAX_UPLOAD_BYTES)"),
    ErrorCode("unauthorized", 401),
    ErrorCode("csrf_failed", 403, "reload the console page and send the form again"),  # service.console
    ErrorCode("not_found", 404),
    ErrorCode("method_not_allowed", 405),
    ErrorCode("http_error", 400),  # any other status Starlette raises: the problem keeps that status
    # -- what a submission names, checked on disk (service.submission, service.modelroots)
    ErrorCode("model_unavailable", 422, "run `make zoo`"),
    ErrorCode("path_traversal", 422),
    ErrorCode("path_outside_roots", 422),
    ErrorCode("path_not_found", 422),
    ErrorCode("not_a_checkpoint", 422, "save the model with save_pretrained()"),
    ErrorCode("unsupported_weights", 422, "save with save_pretrained(..., safe_serialization=True)"),
    ErrorCode("dataset_not_found", 422, "upload it with POST /v1/datasets"),  # GET /v1/datasets/{id}: 404
    # -- jobs and their files (service/api/v1/comparisons.py)
    ErrorCode("job_not_found", 404, "list yours with GET /v1/comparisons"),
    ErrorCode("idempotency_key_reused", 422, "send a new Idempotency-Key for a new request"),
    ErrorCode("job_finished", 409),
    ErrorCode("job_not_finished", 409),
    ErrorCode("job_failed", 409),
    ErrorCode("job_cancelled", 409),
    ErrorCode("artifact_not_found", 404, "list its files with GET /v1/comparisons/{id}/artifacts"),
    ErrorCode("artifact_gone", 410),
    # -- watches (service/api/v1/watches.py, watches.request)
    ErrorCode("invalid_checkpoint_source", 422),
    ErrorCode("watch_not_found", 404, "list yours with GET /v1/watches"),
    ErrorCode("unknown_baseline", 422, 'use "first", "previous", or a checkpoint the watched directory holds'),
    ErrorCode("checkpoint_refused", 422, "save the checkpoint with save_pretrained(path, safe_serialization=True)"),
    ErrorCode("watch_paused", 409),
    ErrorCode("watch_deleted", 409),
    ErrorCode("webhook_target_refused", 422, "give a public http(s) URL (private targets need "
                                             "CIRCUITDIFF_WEBHOOK_ALLOW_PRIVATE=true)"),
    # -- the service's own state
    ErrorCode("queue_unavailable", 503),
    ErrorCode("needs_several_gpus", 422, "start a worker over several GPUs (`CIRCUITDIFF_GPUS=0-3 make run`, or "
                                         "compose's worker-multi), or use fewer prompts or dtype bfloat16"),
    ErrorCode("too_many_queued", 429, "wait for some of your queued comparisons to start (Retry-After), or cancel "
                                      "some; the limit is CIRCUITDIFF_MAX_QUEUED_PER_KEY"),
    ErrorCode("redis_unavailable", 503),
    ErrorCode("not_ready", 503),
    # -- the command line's own (never an HTTP answer)
    ErrorCode("watch_command_failed", 400),
]
CODES: dict[str, ErrorCode] = {row.code: row for row in _ROWS}
assert len(CODES) == len(_ROWS), "a code is in the table twice"


def status_of(code: str) -> int:
    """The HTTP status of ``code``; KeyError for a code missing from :data:`CODES`."""
    if code not in CODES:
        raise KeyError(f"error code {code!r} is not in the table (circuitdiff.errors.CODES): add its row")
    return CODES[code].status


def default_fix(code: str) -> str:
    """The fix for an error of ``code`` that names none: the table's, else :data:`DEFAULT_FIX`."""
    row = CODES.get(code)  # lenient: a failed job's record must be written whatever its code
    return (row.fix if row else None) or DEFAULT_FIX


class CircuitdiffError(Exception):
    """Base class. ``code`` is stable API surface: never rename one."""

    code = "circuitdiff_error"

    def __init__(self, message: str, *, field: str | None = None, fix: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        self.fix = fix

    def to_dict(self) -> dict:
        return {"code": self.code, "detail": self.message, "field": self.field, "fix": self.fix}

    def fix_or_default(self) -> str:
        """Its own fix, else the default for its code: what a user is told to do, never empty."""
        return self.fix or default_fix(self.code)


class SpecError(CircuitdiffError):
    code = "invalid_spec"


class UnknownModelError(CircuitdiffError):
    code = "unknown_model"


class ModelLoadError(CircuitdiffError):
    code = "model_load_failed"


class IncompatibleModelsError(CircuitdiffError):
    code = "incompatible_models"


class UnknownTaskError(CircuitdiffError):
    code = "unknown_task"


class DatasetError(CircuitdiffError):
    code = "invalid_dataset"


class MetricError(CircuitdiffError):
    """The job's metric cannot be computed on this dataset or model pair (circuitdiff.metrics)."""

    code = "invalid_metric"


class TaskTokenizationError(CircuitdiffError):
    """No usable prompt survived validation (single-token answers, equal clean/corrupted lengths)."""

    code = "task_tokenization_failed"

    def __init__(self, message: str, *, rejected: list[dict] | None = None, **kw):
        super().__init__(message, **kw)
        self.rejected = rejected or []


class CacheCorruptError(CircuitdiffError):
    code = "cache_corrupt"


class Cancelled(CircuitdiffError):
    """Raised by the pipeline when the caller's ``cancelled()`` turns true between components."""

    code = "cancelled"


class ComponentIdError(CircuitdiffError, ValueError):
    """A string that is not a component address (``L3H7`` / ``L3MLP`` / the authors' ``MLP3``)."""

    code = "invalid_component_id"


class UnsupportedArchitectureError(CircuitdiffError, TypeError):
    """An architecture some part of circuitdiff has no code for: no forward-hook layout (the loader
    turns it into a :class:`ModelLoadError`), or no functional view (the scans then run naive)."""

    code = "unsupported_architecture"


class InsufficientMemoryError(CircuitdiffError):
    """A model and its scan cannot fit in the memory the worker's devices have free, estimated before
    loading (circuitdiff.models.placement). Carries the bytes needed and available."""

    code = "insufficient_memory"

    def __init__(self, message: str, *, field: str | None = None, fix: str | None = None,
                 needed_bytes: int | None = None, available_bytes: int | None = None):
        super().__init__(message, field=field, fix=fix)
        self.needed_bytes = needed_bytes
        self.available_bytes = available_bytes

    def to_dict(self) -> dict:
        return {**super().to_dict(), "needed_bytes": self.needed_bytes, "available_bytes": self.available_bytes}
