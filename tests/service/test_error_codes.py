"""Error codes come from structure, never from English text: a spec error's code is its pydantic
error type, an engine error's is its class. Rewording every message leaves every code, field and
fix where it was, for the API's problem responses and for the error a failed job records.

Every code is a row of one table (circuitdiff.errors.CODES: code, HTTP status, default fix): a
problem cannot be built with a code missing from it, and every code the code base writes is in it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from pydantic import ValidationError

import circuitdiff.spec as spec_module
from circuitdiff.client.wire import STATUSES
from circuitdiff.errors import (
    CODES, IncompatibleModelsError, ModelLoadError, TaskTokenizationError, UnknownModelError, UnknownTaskError,
    status_of,
)
from circuitdiff.spec import ComparisonSpec
from circuitdiff.tasks.custom import DatasetTooLargeError
from jobs.errors import engine_error
from jobs.store import JobRecord
from service.problems import _BUILTIN_CODES, Problem, from_engine_error, validation_problem
from tests.service_fixtures import SMALL_SPEC

REPO = Path(__file__).resolve().parents[2]

REWORDED = "a message rewritten from scratch: unknown_model dataset_too_large"

SPEC_CASES = [
    ({"task": "ioi-typo"}, "task", "unknown_task"),
    ({"teacher": "zoo:nope"}, "teacher.id", "unknown_model"),
    ({"task": "sequence", "task_options": {"members": 7}}, "task_options.members", "invalid_task_option"),
    ({"student": {"id": "zoo:gpt-student", "revision": "v1"}}, "student.revision", "invalid_model"),
]


def _problem(spec: dict):
    with pytest.raises(ValidationError) as info:
        ComparisonSpec.model_validate(spec)
    return validation_problem(info.value.errors())


@pytest.mark.parametrize("override, field, code", SPEC_CASES, ids=[c[2] for c in SPEC_CASES])
def test_spec_error_codes_survive_rewording(monkeypatch, override, field, code):
    before = _problem({**SMALL_SPEC, **override})
    original = spec_module.spec_error
    monkeypatch.setattr(spec_module, "spec_error",
                        lambda c, message, fix, field=None: original(c, REWORDED, fix, field))
    after = _problem({**SMALL_SPEC, **override})
    [item] = [e for e in after.errors if e["field"] == field]
    assert item["message"] == REWORDED  # the rewording reached the response ...
    assert item["code"] == code and after.code == before.code == code  # ... and changed no code
    assert item["fix"] == next(e for e in before.errors if e["field"] == field)["fix"]


ENGINE_ERRORS = [DatasetTooLargeError, ModelLoadError, UnknownModelError, UnknownTaskError, TaskTokenizationError,
                 IncompatibleModelsError]


@pytest.mark.parametrize("cls", ENGINE_ERRORS, ids=[c.code for c in ENGINE_ERRORS])
def test_engine_error_code_comes_from_its_class(cls):
    e = cls(REWORDED, field="dataset")  # no fix given, as several engine errors are raised
    problem = from_engine_error(e)
    assert (problem.code, problem.status) == (cls.code, status_of(cls.code))
    assert problem.errors == [{"field": "dataset", "message": REWORDED, "fix": problem.errors[0]["fix"], "code": cls.code}]
    record = engine_error(e)  # what a failed job records
    assert record == {"code": cls.code, "detail": REWORDED, "field": "dataset", "fix": problem.errors[0]["fix"]}
    assert record["fix"]  # never null, even when the engine gave none


def test_engine_fix_is_passed_on_unchanged():
    e = ModelLoadError("the checkpoint is broken", field="student.id", fix="save it again with save_pretrained()")
    assert engine_error(e)["fix"] == "save it again with save_pretrained()"
    assert from_engine_error(e).errors[0]["fix"] == "save it again with save_pretrained()"


# ------------------------------------------------------------------ the one table of codes
def _codes_written(path: Path) -> set[tuple[str, int]]:
    """(code, line) of every code ``path`` writes: a class's ``code = "..."``, ``spec_error("...")``,
    ``Problem("...")`` / ``Problem.field("...")``, a ``{"code": "..."}`` item, and the strings a
    ``code = ...`` assignment picks from (dict values and defaults, not keys or subscripts)."""
    out: set[tuple[str, int]] = set()

    def strings(node: ast.AST) -> None:
        skip = set()
        for n in ast.walk(node):
            if isinstance(n, ast.Dict):
                skip.update(id(k) for k in n.keys if k is not None)
            elif isinstance(n, ast.Subscript):
                skip.add(id(n.slice))
        for n in ast.walk(node):
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in skip:
                out.add((n.value, n.lineno))

    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Assign):
            names = [t for t in node.targets if isinstance(t, ast.Name)]
            names += [e for t in node.targets if isinstance(t, ast.Tuple) for e in t.elts if isinstance(e, ast.Name)]
            if any(n.id == "code" for n in names):
                value = node.value.elts[0] if isinstance(node.value, ast.Tuple) else node.value
                strings(value)
        elif isinstance(node, ast.Call):
            f = node.func
            name = f.id if isinstance(f, ast.Name) else f"{f.value.id}.{f.attr}" if (
                isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name)) else ""
            if name in ("spec_error", "Problem", "Problem.field") and node.args:
                arg = node.args[0]
                if isinstance(arg, ast.Constant):
                    out.add((arg.value, arg.lineno))
                else:
                    strings(arg)
        elif isinstance(node, ast.Dict):
            for k, v in zip(node.keys, node.values):
                if isinstance(k, ast.Constant) and k.value == "code" and isinstance(v, ast.Constant):
                    out.add((v.value, v.lineno))
    return out


def test_every_code_the_code_base_writes_is_in_the_table():
    found = {}
    for package in ("circuitdiff", "jobs", "watches", "service", "worker"):
        for path in sorted((REPO / package).rglob("*.py")):
            if path.parts[-2] == "client" and path.name != "watch_cli.py":
                continue  # the client reads codes, it answers none
            for code, line in _codes_written(path):
                found.setdefault(code, f"{path.relative_to(REPO)}:{line}")
    found.update({c: "service/problems.py _BUILTIN_CODES" for c in _BUILTIN_CODES.values()})
    # the scan finds what it must: codes of each kind of source
    assert {"unknown_model", "invalid_checkpoint_source", "dataset_too_large", "job_not_found", "job_failed",
            "http_error", "invalid_request", "worker_lost", "job_missing", "invalid_dataset_line"} <= set(found)
    missing = {c: where for c, where in found.items() if c not in CODES}
    assert not missing, f"codes missing from circuitdiff.errors.CODES: {missing}"
    assert not set(CODES) - set(found), f"rows of the table no code writes: {sorted(set(CODES) - set(found))}"


def test_a_problem_cannot_be_built_with_a_code_missing_from_the_table():
    with pytest.raises(KeyError, match="not in the table"):
        Problem("no_such_code", "detail")
    with pytest.raises(KeyError, match="not in the table"):
        Problem.field("no_such_code", "field", "message", "fix")


def test_the_table_gives_status_and_default_fix():
    p = Problem.field("job_not_found", "job_id", "no comparison 'j1'")
    assert p.status == 404 and p.errors[0]["fix"] == CODES["job_not_found"].fix
    assert Problem("dataset_not_found", "x").status == 422  # a spec naming a missing dataset ...
    assert Problem.field("dataset_not_found", "dataset_id", "x", status=404).status == 404  # ... the GET of one
    assert validation_problem([{"type": "json_invalid", "loc": ("body",), "msg": "bad"}]).status == 400


@pytest.mark.parametrize("status", STATUSES)
def test_every_unfinished_or_failed_status_has_a_result_problem(status):
    """The dynamic codes of GET .../result: one per status other than succeeded, each in the table."""
    from service.api.v1.comparisons import _require_succeeded

    job = JobRecord(id="j1", status=status, spec={}, content_key="k", created_at=0.0)
    if status == "succeeded":
        _require_succeeded(job)
        return
    with pytest.raises(Problem) as info:
        _require_succeeded(job)
    assert info.value.status == 409 and info.value.code in CODES
