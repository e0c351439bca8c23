"""Reading a result for the report: a path, a dict or a ``ComparisonResult``, validated once; results
of every earlier schema version are upgraded first (circuitdiff.result.upgrade), so they still render."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import ValidationError

from ..errors import CircuitdiffError
from ..result import ComparisonResult, upgrade


class ResultFileError(CircuitdiffError):
    """The input is not a readable ``result.json`` of a schema version this report understands."""

    code = "invalid_result"


def load_result(source: str | Path | dict | ComparisonResult) -> ComparisonResult:
    if isinstance(source, ComparisonResult):
        return source
    if isinstance(source, (str, Path)):
        path = Path(source)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ResultFileError(f"no such result file: {path}", fix="pass the result.json a comparison wrote") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ResultFileError(f"{path} is not a JSON result file: {exc}") from None
    else:
        data = source
    if not isinstance(data, dict):
        raise ResultFileError("a result must be a JSON object")
    try:
        data = upgrade(data)
    except ValueError as exc:
        raise ResultFileError(str(exc), field="schema_version",
                              fix="render it with the circuitdiff version that wrote it") from None
    try:
        return ComparisonResult.model_validate(data)
    except ValidationError as exc:
        first = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in exc.errors()[:5])
        raise ResultFileError(f"not a valid result file ({exc.error_count()} errors): {first}") from None
