"""/v1/models: the bundled zoo and the checkpoints under the allowed local roots."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from circuitdiff.catalogue import list_zoo

from ...auth import current_owner
from ...deps import get_settings_dep
from ...modelroots import list_local_models
from ...schemas import ModelEntry, ModelList
from ...settings import Settings

router = APIRouter(prefix="/v1/models", tags=["models"], dependencies=[Depends(current_owner)])


@router.get("", response_model=ModelList, summary="Models a comparison can name")
def list_models(settings: Settings = Depends(get_settings_dep)):
    zoo = [ModelEntry(kind="zoo", **m) for m in list_zoo()]
    local = [ModelEntry(**m) for m in list_local_models(settings.model_roots)]
    return ModelList(items=zoo + local, roots=[str(r) for r in settings.model_roots])
