"""RFC 9457 problem details: every error the API returns is ``application/problem+json``.

Each problem carries ``type``, ``title``, ``status``, ``detail`` and a stable ``code`` (API surface:
never rename one). Every code is a row of the one table, :data:`circuitdiff.errors.CODES`, which
gives its HTTP status and its default fix: a problem is built from its code, and one whose code is
missing from the table cannot be built. Validation problems add ``errors``: one item per bad field with its dotted path
(``task_options.members``, ``teacher.id``), the message and a ``fix``. Engine errors
(:class:`circuitdiff.errors.CircuitdiffError`) already carry code/field/fix and map one to one.
Users never see a traceback.
"""

from __future__ import annotations

import difflib
import logging
from functools import lru_cache
from http import HTTPStatus
from typing import Any, get_args

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from circuitdiff.client.wire import STATUSES
from circuitdiff.errors import CircuitdiffError, default_fix, status_of

from .methods import allow_header, allowed_methods

log = logging.getLogger("circuitdiff.service")
MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:circuitdiff:problem:"


class FieldError(BaseModel):
    field: str = Field(examples=["task_options.members"])
    message: str
    fix: str
    code: str


class ProblemDetail(BaseModel):
    """The body of every 4xx/5xx response."""

    type: str = Field(examples=["urn:circuitdiff:problem:unknown_task"])
    title: str
    status: int
    detail: str
    code: str
    errors: list[FieldError] | None = None
    instance: str | None = None


class Problem(Exception):
    """A problem+json answer with ``code``, whose status is the table's (``status`` overrides it
    where a route answers a code otherwise). A code missing from the table raises KeyError."""

    def __init__(
        self,
        code: str,
        detail: str,
        *,
        status: int | None = None,
        errors: list[dict] | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ):
        super().__init__(detail)
        self.status = status_of(code) if status is None else status
        self.code, self.detail = code, detail
        self.errors, self.headers, self.extra = errors, headers or {}, extra or {}

    @classmethod
    def field(cls, code: str, field: str, message: str, fix: str | None = None, *,
              status: int | None = None) -> "Problem":
        """One bad ``field``; ``fix`` defaults to the code's fix in the table."""
        fix = default_fix(code) if fix is None else fix
        return cls(code, f"{field}: {message}", status=status, errors=[_item(field, message, fix, code)])

    def with_headers(self, headers: dict[str, str]) -> "Problem":
        self.headers.update(headers)
        return self


def _item(field: str, message: str, fix: str, code: str) -> dict:
    return {"field": field, "message": message, "fix": fix, "code": code}


def problem_response(p: Problem, request: Request | None = None) -> JSONResponse:
    body: dict[str, Any] = {
        "type": TYPE_PREFIX + p.code,
        "title": HTTPStatus(p.status).phrase,
        "status": p.status,
        "detail": p.detail,
        "code": p.code,
    }
    if p.errors:
        body["errors"] = p.errors
    if request is not None:
        body["instance"] = request.url.path
    body.update(p.extra)
    return JSONResponse(body, status_code=p.status, media_type=MEDIA_TYPE, headers=p.headers)


# ------------------------------------------------------------------ pydantic errors -> field errors
# Codes come from the error's type, never from its message: circuitdiff.spec raises errors whose
# type is a stable code and whose ctx carries the fix (and, for model-level checks, the field);
# pydantic's own error types map through the tables below.
# Parameters whose values come from the API itself: the fix says where to get a good one.
FIELD_FIXES = {
    "cursor": "pass the `next_cursor` of the previous page unchanged (leave `cursor` out for the first page)",
    "status": f"use one of: {', '.join(STATUSES)}",
}
JSON_TYPES = ("application/json",)
_BUILTIN_CODES = {"json_invalid": "invalid_json", "extra_forbidden": "unknown_field", "missing": "missing_field"}


def _fix_for(field: str, etype: str, ctx: dict) -> str:
    if etype == "json_invalid":
        return "send a valid JSON object (Content-Type: application/json)"
    if etype == "missing":
        return f"add `{field}`"
    if etype == "extra_forbidden":
        guess = did_you_mean(field.rsplit(".", 1)[-1])
        if guess:
            return f"did you mean `{guess}`? (`{field}` is not a field; see the schema at /docs)"
        return f"remove `{field}`: the spec has no such field (see the ComparisonSpec schema at /docs)"
    if etype in ("greater_than_equal", "greater_than"):
        return f"give a value >= {ctx.get('ge', ctx.get('gt'))}"
    if etype in ("less_than_equal", "less_than"):
        return f"give a value <= {ctx.get('le', ctx.get('lt'))}"
    if etype == "literal_error":
        return f"use one of: {ctx.get('expected')}"
    if etype.startswith("int_"):
        return "give a whole number"
    if etype.startswith("float_"):
        return "give a number"
    if etype.startswith("bool_"):
        return "give true or false"
    if field in FIELD_FIXES:
        return FIELD_FIXES[field]
    if etype == "string_pattern_mismatch":
        return f"give a value matching the pattern {ctx.get('pattern')}"
    if etype == "string_too_long":
        return f"give at most {ctx.get('max_length')} characters"
    if etype == "string_too_short":
        return f"give at least {ctx.get('min_length')} characters"
    if etype.startswith("string_"):
        return "give a string"
    if etype in ("dict_type", "model_type", "model_attributes_type"):
        return "give a JSON object"
    return "see the request schema at /docs"


@lru_cache(maxsize=1)
def known_fields() -> frozenset[str]:
    """Every field name a request body can hold: the comparison spec and the watch body, nested
    models included (what an unknown field is compared with)."""
    from circuitdiff.spec import ComparisonSpec
    from watches.request import WatchSpec

    names: set[str] = set()
    todo: list[type] = [ComparisonSpec, WatchSpec]
    seen: set[type] = set()
    while todo:
        model = todo.pop()
        if model in seen:
            continue
        seen.add(model)
        for name, f in model.model_fields.items():
            names.add(f.alias or name)
            for t in (f.annotation, *get_args(f.annotation), *(a for x in get_args(f.annotation) for a in get_args(x))):
                if isinstance(t, type) and issubclass(t, BaseModel):
                    todo.append(t)
    return frozenset(names)


def did_you_mean(name: str) -> str | None:
    """The known field an unknown one was probably meant to be (``prompts`` -> ``n_prompts``)."""
    close = difflib.get_close_matches(name, sorted(known_fields()), n=1, cutoff=0.75)
    return close[0] if close else None


def field_errors(errors: list[dict], *, strip_body: bool) -> list[dict]:
    out = []
    for e in errors:
        loc = [str(x) for x in e.get("loc", ())]
        if loc[:1] == ["body"] and strip_body or loc[:1] in (["query"], ["path"], ["header"], ["cookie"]):
            loc = loc[1:]  # the field's own name: `teacher.id`, `limit`, `idempotency-key`
        etype = e.get("type", "")
        ctx = e.get("ctx") or {}
        message = str(e.get("msg", "invalid")).removeprefix("Value error, ")
        if isinstance(ctx.get("field"), str):  # a model-level check names the field it concerns
            loc.append(ctx["field"])
        field = "body" if etype == "json_invalid" else (".".join(loc) or "body")
        if isinstance(ctx.get("fix"), str):  # a circuitdiff spec error: its type is the stable code
            code, fix = etype, ctx["fix"]
        else:
            code, fix = _BUILTIN_CODES.get(etype, "invalid_value"), _fix_for(field, etype, ctx)
        out.append(_item(field, message, fix, code))
    return out


def validation_problem(errors: list[dict], *, strip_body: bool = True) -> Problem:
    items = field_errors(errors, strip_body=strip_body)
    detail = "; ".join(f"{i['field']}: {i['message']}" for i in items)
    code = items[0]["code"] if items else "invalid_request"
    return Problem(code, detail, errors=items)


def validated(model: Any, data: Any) -> Any:
    """``model.model_validate(data)``, its ValidationError raised as the API answers a bad body
    (:func:`validation_problem`: field, message, fix, code), for callers that build the body
    themselves, such as the console's forms."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise validation_problem(list(e.errors()), strip_body=False) from None


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def wrong_content_type(content_type: str) -> Problem:
    return Problem.field(
        "unsupported_media_type", "Content-Type",
        f"the body was sent as {content_type.split(';', 1)[0].strip() or 'no type'}, so it was not read as JSON",
    )


def unparsable_body(cause: BaseException | None) -> Problem:
    """FastAPI's one "error parsing the body" (400) for a body that is not JSON text, made specific."""
    if isinstance(cause, UnicodeDecodeError):
        message = f"the body is not UTF-8 text (byte {cause.start})"
        fix = "send JSON encoded as UTF-8"
    elif isinstance(cause, RecursionError):
        message = "the JSON is nested too deeply to read"
        fix = "send a JSON object nested as the request schema says (see /docs)"
    else:
        message = "the body could not be read as JSON"
        fix = "send a valid JSON object (Content-Type: application/json)"
    return Problem.field("invalid_json", "body", message, fix)


def from_engine_error(e: CircuitdiffError) -> Problem:
    """The error's class gives the code (and the table its status); its field and fix, the ``errors`` item."""
    errors = [_item(e.field, e.message, e.fix_or_default(), e.code)] if e.field else None
    return Problem(e.code, e.message, errors=errors)


def install(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem):
        return problem_response(exc, request)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        errors = list(exc.errors())
        content_type = request.headers.get("content-type")
        if content_type and not _is_json(content_type) and any(tuple(e.get("loc", ()))[:1] == ("body",) for e in errors):
            return problem_response(wrong_content_type(content_type), request)
        return problem_response(validation_problem(errors), request)

    @app.exception_handler(CircuitdiffError)
    async def _engine(request: Request, exc: CircuitdiffError):
        return problem_response(from_engine_error(exc), request)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        if exc.status_code == 400 and exc.detail == "There was an error parsing the body":
            return problem_response(unparsable_body(exc.__cause__), request)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:  # every route on the path, not only the one Starlette matched
            methods = allowed_methods(request.app.router, request.scope)
            headers["Allow"] = allow_header(methods)
            detail = f"{request.method} is not allowed on {request.url.path}; allowed: {allow_header(methods)}"
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no route for {request.method} {request.url.path}"
        return problem_response(Problem(code, detail, status=exc.status_code, headers=headers), request)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(Problem("internal_error", "the server failed unexpectedly; see its log"), request)
