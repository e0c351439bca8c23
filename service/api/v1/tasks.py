"""/v1/tasks: the built-in tasks and their options (what `task` and `task_options` accept)."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from circuitdiff import catalogue

from ...deps import current_owner
from ...schemas import TaskEntry, TaskList

router = APIRouter(prefix="/v1/tasks", tags=["tasks"], dependencies=[Depends(current_owner)])


@router.get("", response_model=TaskList, summary="Built-in tasks and their options")
def list_tasks():
    return TaskList(items=[TaskEntry(**t) for t in catalogue.list_tasks()])
