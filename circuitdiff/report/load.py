"""Reading a result for the report: a path, a dict or a ``ComparisonResult``, validated once."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import ValidationError

from ..errors import CircuitdiffError
from ..result import ComparisonResult


class ResultFileError(CircuitdiffError):
    """The input is not a readable ``result.json`` of a schema version this report understands."""

    code = "invalid_result"
    http_status = 422


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
    version = data.get("schema_version")
    if version != 1:
        raise ResultFileError(f"result schema_version {version!r} is not supported (this report reads version 1)",
                              field="schema_version")
    try:
        return ComparisonResult.model_validate(data)
    except ValidationError as exc:
        first = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in exc.errors()[:5])
        raise ResultFileError(f"not a valid result file ({exc.error_count()} errors): {first}") from None
