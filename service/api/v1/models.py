"""/v1/models: the bundled zoo and the checkpoints under the allowed local roots."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from circuitdiff.catalogue import list_zoo

from ...deps import SettingsDep, current_owner
from ...modelroots import list_local_models
from ...schemas import ModelEntry, ModelList

router = APIRouter(prefix="/v1/models", tags=["models"], dependencies=[Depends(current_owner)])


@router.get("", response_model=ModelList, summary="Models a comparison can name")
def list_models(settings: SettingsDep):
    zoo = [ModelEntry(kind="zoo", **m) for m in list_zoo()]
    local = [ModelEntry(**m) for m in list_local_models(settings.model_roots)]
    return ModelList(items=zoo + local, roots=[str(r) for r in settings.model_roots])
