"""Which prompts a task name and its options stand for. Torch-free.

Built-in tasks draw from the generators' ``eval`` split (held out from the zoo's training corpus);
``custom`` reads a JSONL file (:mod:`circuitdiff.tasks.custom`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import DatasetError, UnknownTaskError
from ..spec import TASKS
from . import generate
from .custom import load_jsonl
from .generate import TextItem

DATASETS_DIR_ENV = "CIRCUITDIFF_DATASETS_DIR"


def list_tasks() -> list[dict[str, Any]]:
    return [{"name": k, "description": v["description"], "options": v["options"]} for k, v in TASKS.items()]


def task_items(
    task: str, options: dict[str, Any], n: int, seed: int, dataset: str | None = None,
    datasets_dir: str | Path | None = None,
) -> list[TextItem]:
    """The text items of a task: ``n`` generated prompts, or the first ``n`` lines of a dataset."""
    if task == "ioi":
        return generate.ioi_items(n, seed=seed, split="eval", templates=options.get("templates", "mixed"))
    if task == "sequence":
        return generate.sequence_items(
            n, seed=seed, split="eval", members=options.get("members", "numerals"), frame=options.get("frame", "done")
        )
    if task == "qa":
        return generate.qa_items(n, seed=seed, split="eval", facts=options.get("facts", "zoo"))
    if task == "custom":
        if not dataset:
            raise DatasetError("the custom task needs a dataset", field="dataset")
        return load_jsonl(resolve_dataset(dataset, datasets_dir))[:n]
    raise UnknownTaskError(f"unknown task {task!r}; available: {', '.join(TASKS)}", field="task")


def resolve_dataset(dataset: str, datasets_dir: str | Path | None = None) -> Path:
    """A dataset reference is a JSONL path, or an uploaded dataset id stored as ``<dir>/<id>.jsonl``
    (dir: ``datasets_dir`` or $CIRCUITDIFF_DATASETS_DIR, set by the service/worker)."""
    p = Path(dataset).expanduser()
    if p.is_file():
        return p
    root = datasets_dir or os.environ.get(DATASETS_DIR_ENV)
    if root and "/" not in dataset and not dataset.startswith("."):
        candidate = Path(root) / f"{dataset}.jsonl"
        if candidate.is_file():
            return candidate
    raise DatasetError(f"dataset {dataset!r}: no such file or uploaded dataset", field="dataset")
