"""The sanitized error a failed job records: ``{code, detail, field, fix}``, never a traceback.

``code`` is the engine error's class attribute (stable API surface, never read from message text),
``field`` the spec field it concerns where there is one, and ``fix`` always says what to do: the
engine error's own fix, or, for an error the engine raises without one, the advice for its code
(:data:`FIX_BY_CODE`). The API's problem responses use the same :func:`fix_for`.
"""

from __future__ import annotations

from circuitdiff.errors import CircuitdiffError

FIX_BY_CODE = {
    "model_load_failed": "check that the checkpoint loads with transformers' from_pretrained (config.json, "
                         "tokenizer files, .safetensors weights), or name another model (GET /v1/models)",
    "unknown_model": "name a model listed by GET /v1/models, or a hub id that exists",
    "task_tokenization_failed": "give prompts whose answer and distractor are single tokens for both models and "
                                "whose clean and corrupted prompts tokenise to the same length",
    "incompatible_models": "compare models that share a tokenizer, or give both a fast tokenizer (tokenizer.json)",
}
DEFAULT_FIX = "read the detail and change the spec accordingly; if it names no cause, report the job id"


def fix_for(e: CircuitdiffError) -> str:
    return e.fix or FIX_BY_CODE.get(e.code, DEFAULT_FIX)


def engine_error(e: CircuitdiffError) -> dict:
    out = {"code": e.code, "detail": e.message, "field": e.field, "fix": fix_for(e)}
    for extra in ("needed_bytes", "available_bytes"):  # insufficient_memory: the numbers, not only words
        if getattr(e, extra, None) is not None:
            out[extra] = getattr(e, extra)
    return out


def internal_error(exc: BaseException) -> dict:
    return {
        "code": "internal_error",
        "detail": f"the engine failed unexpectedly ({type(exc).__name__}); the worker log has details",
        "field": None,
        "fix": "submit the comparison again; if it fails the same way, report the job id",
    }


def worker_lost(max_attempts: int) -> dict:
    return {
        "code": "worker_lost",
        "detail": f"the job stopped its worker {max_attempts} times (out of memory or a crash); not retried",
        "field": None,
        "fix": "try fewer prompts, a smaller dtype, or a machine with more memory",
    }
