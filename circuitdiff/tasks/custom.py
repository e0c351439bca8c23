"""Custom datasets: JSONL, one ``{"prompt", "answer", "distractor", "corrupted_prompt"?,
"masked_prompt"?}`` object per line. Torch-free (the service validates uploads with it).

Answers are bare words, like the built-in tasks: the decoder form reads the first token of
``" " + answer`` after the prompt. A line that is not valid is a :class:`DatasetError` naming the
line; tokenizer-level problems (multi-token answers, length mismatches) are found later by the
task layer and reported per prompt.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import DatasetError
from .generate import MASK, TextItem

REQUIRED = ("prompt", "answer", "distractor")
OPTIONAL = ("corrupted_prompt", "masked_prompt", "corrupted_masked_prompt")
MAX_LINES = 5000
MAX_BYTES = 10 * 1024 * 1024


def parse_jsonl(text: str) -> list[TextItem]:
    items: list[TextItem] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DatasetError(f"dataset line {lineno}: not valid JSON ({e.msg})", field="dataset") from None
        if not isinstance(obj, dict):
            raise DatasetError(f"dataset line {lineno}: expected a JSON object", field="dataset")
        missing = [k for k in REQUIRED if not isinstance(obj.get(k), str) or not obj.get(k).strip()]
        if missing:
            raise DatasetError(f"dataset line {lineno}: missing or empty {', '.join(missing)}", field="dataset")
        unknown = sorted(set(obj) - set(REQUIRED) - set(OPTIONAL))
        if unknown:
            raise DatasetError(f"dataset line {lineno}: unknown keys {', '.join(unknown)}", field="dataset")
        for k in OPTIONAL:
            if k in obj and not isinstance(obj[k], str):
                raise DatasetError(f"dataset line {lineno}: {k} must be a string", field="dataset")
        prompt, answer, distractor = obj["prompt"], obj["answer"].strip(), obj["distractor"].strip()
        if answer == distractor:
            raise DatasetError(f"dataset line {lineno}: answer and distractor are the same", field="dataset")
        corrupted = obj.get("corrupted_prompt")
        masked = obj.get("masked_prompt") or f"{prompt} {MASK}."
        items.append(
            TextItem(
                prompt=prompt, answer=answer, distractor=distractor,
                corrupted_prompt=corrupted if corrupted is not None else "",
                masked_prompt=masked,
                corrupted_masked_prompt=obj.get("corrupted_masked_prompt") or "",
                meta={"line": lineno, "has_corrupted": corrupted is not None},
            )
        )
        if len(items) > MAX_LINES:
            raise DatasetError(f"dataset has more than {MAX_LINES} lines", field="dataset")
    if not items:
        raise DatasetError("dataset is empty", field="dataset")
    return items


def load_jsonl(path: str | Path) -> list[TextItem]:
    p = Path(path).expanduser()
    if not p.is_file():
        raise DatasetError(f"dataset {path}: no such file", field="dataset")
    if p.stat().st_size > MAX_BYTES:
        raise DatasetError(f"dataset {path}: larger than {MAX_BYTES // (1024 * 1024)} MiB", field="dataset")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DatasetError(f"dataset {path}: not UTF-8 text", field="dataset") from None
    return parse_jsonl(text)
