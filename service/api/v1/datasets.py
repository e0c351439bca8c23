"""/v1/datasets: upload a custom JSONL task dataset; the id goes into a spec's `dataset` field."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from ... import datasets
from ...deps import OwnerDep, SettingsDep, current_owner
from ...problems import Problem, ProblemDetail
from ...schemas import DatasetInfo, ts

router = APIRouter(prefix="/v1/datasets", tags=["datasets"], dependencies=[Depends(current_owner)])
PROBLEM = {"model": ProblemDetail, "content": {"application/problem+json": {}}}
MAX_LISTED = datasets.MAX_LISTED


def _info(meta: dict) -> DatasetInfo:
    return DatasetInfo(**{**meta, "rejected": meta["rejected"][:MAX_LISTED], "created_at": ts(meta["created_at"])})


@router.post(
    "",
    status_code=201,
    response_model=DatasetInfo,
    responses={413: PROBLEM, 422: PROBLEM},
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": 'JSONL: one object per line, either {"text", "corrupted_text"?} (plain text, for '
            'metrics kl and loss) or {"prompt", "answer", "distractor", '
            '"corrupted_prompt"?, "masked_prompt"?, "corrupted_masked_prompt"?}',
            "content": {"application/x-ndjson": {"schema": {"type": "string"}}},
        }
    },
    summary="Upload a custom dataset",
)
async def upload(request: Request, response: Response, settings: SettingsDep, owner: OwnerDep):
    """Validated line by line; valid lines are stored content-addressed (the same items get the
    same id) and this upload's rejected lines are listed with the reason. The dataset belongs to
    the calling key: another key neither reads it nor names it in a comparison. No valid line: 422; more lines or
    bytes than a comparison can use: 413 naming the limit; either way nothing is stored."""
    body = await request.body()
    items, rejected = datasets.valid_lines(body)  # 413 over the limits, 422 without a valid line
    meta = datasets.store(settings.datasets_dir, owner, items, rejected, len(body))
    response.headers["Location"] = f"/v1/datasets/{meta['id']}"
    return _info(meta)


@router.get("/{dataset_id}", response_model=DatasetInfo, responses={404: PROBLEM}, summary="A stored dataset")
def get_dataset(dataset_id: str, settings: SettingsDep, owner: OwnerDep):
    """The caller's latest upload of this dataset; another key's dataset answers 404."""
    meta = datasets.load_meta(settings.datasets_dir, owner, dataset_id)
    if meta is None:
        raise Problem.field("dataset_not_found", "dataset_id", f"no dataset {dataset_id!r}", status=404)
    return _info(meta)
