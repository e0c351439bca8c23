"""The sanitized error a failed job records: ``{code, detail, field, fix}``, never a traceback.

``code`` is the engine error's class attribute (stable API surface, never read from message text),
``field`` the spec field it concerns where there is one, and ``fix`` always says what to do: the
engine error's own fix, or the default fix of its code in the one table of codes
(:data:`circuitdiff.errors.CODES`), which the API's problem responses use too.
"""

from __future__ import annotations

from circuitdiff.errors import CircuitdiffError, default_fix


def engine_error(e: CircuitdiffError) -> dict:
    out = {"code": e.code, "detail": e.message, "field": e.field, "fix": e.fix_or_default()}
    for extra in ("needed_bytes", "available_bytes"):  # insufficient_memory: the numbers, not only words
        if getattr(e, extra, None) is not None:
            out[extra] = getattr(e, extra)
    return out


def internal_error(exc: BaseException) -> dict:
    return {
        "code": "internal_error",
        "detail": f"the engine failed unexpectedly ({type(exc).__name__}); the worker log has details",
        "field": None,
        "fix": default_fix("internal_error"),
    }


def worker_lost(max_attempts: int) -> dict:
    return {
        "code": "worker_lost",
        "detail": f"the job stopped its worker {max_attempts} times (out of memory or a crash); not retried",
        "field": None,
        "fix": default_fix("worker_lost"),
    }


def results_not_writable(detail: str) -> dict:
    """The worker could not write the job's files: the deployment's disk, not the comparison."""
    return {"code": "results_not_writable", "detail": detail, "field": None, "fix": default_fix("results_not_writable")}
