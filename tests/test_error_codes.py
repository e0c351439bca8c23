"""Error codes come from structure, never from English text: a spec error's code is its pydantic
error type, an engine error's is its class. Rewording every message leaves every code, field and
fix where it was, for the API's problem responses and for the error a failed job records."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

import circuitdiff.spec as spec_module
from circuitdiff.errors import (
    IncompatibleModelsError, ModelLoadError, TaskTokenizationError, UnknownModelError, UnknownTaskError,
)
from circuitdiff.spec import ComparisonSpec
from circuitdiff.tasks.custom import DatasetTooLargeError
from jobs.errors import engine_error
from service.problems import from_engine_error, validation_problem
from tests.service_fixtures import SMALL_SPEC

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
    assert (problem.code, problem.status) == (cls.code, cls.http_status)
    assert problem.errors == [{"field": "dataset", "message": REWORDED, "fix": problem.errors[0]["fix"], "code": cls.code}]
    record = engine_error(e)  # what a failed job records
    assert record == {"code": cls.code, "detail": REWORDED, "field": "dataset", "fix": problem.errors[0]["fix"]}
    assert record["fix"]  # never null, even when the engine gave none


def test_engine_fix_is_passed_on_unchanged():
    e = ModelLoadError("the checkpoint is broken", field="student.id", fix="save it again with save_pretrained()")
    assert engine_error(e)["fix"] == "save it again with save_pretrained()"
    assert from_engine_error(e).errors[0]["fix"] == "save it again with save_pretrained()"
