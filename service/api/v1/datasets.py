"""/v1/datasets: upload a custom JSONL task dataset (the id goes into a spec's `dataset` field), list
the caller's datasets, page through their items or download them."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import FileResponse

from ... import datasets
from ...deps import OwnerDep, SettingsDep, current_owner
from ...problems import Problem, ProblemDetail
from ...schemas import DatasetInfo, DatasetItems, DatasetList, ts

router = APIRouter(prefix="/v1/datasets", tags=["datasets"], dependencies=[Depends(current_owner)])
PROBLEM = {"model": ProblemDetail, "content": {"application/problem+json": {}}}
MAX_LISTED = datasets.MAX_LISTED
EXAMPLE_JSONL = ('{"prompt": "When Mary and John went to the store, John gave a drink to", "answer": " Mary", '
                 '"distractor": " John"}\n'
                 '{"prompt": "When Tom and Anna went to the park, Anna gave a ball to", "answer": " Tom", '
                 '"distractor": " Anna"}\n')


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
            "content": {"application/x-ndjson": {"schema": {"type": "string"}, "example": EXAMPLE_JSONL}},
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
    items, rejected, lines = datasets.valid_lines(body)  # 413 over the limits, 422 without a valid line
    meta = datasets.store(settings.datasets_dir, owner, items, rejected, len(body), lines)
    response.headers["Location"] = f"/v1/datasets/{meta['id']}"
    return _info(meta)


@router.get("", response_model=DatasetList, responses={401: PROBLEM}, summary="List your datasets")
def list_datasets(settings: SettingsDep, owner: OwnerDep):
    """The caller's datasets, newest upload first; another key's datasets are not listed."""
    return DatasetList(items=[_info(m) for m in datasets.list_meta(settings.datasets_dir, owner)])


def owned_dataset(dataset_id: str, settings: SettingsDep, owner: OwnerDep) -> dict:
    """The caller's metadata of the dataset; another key's dataset answers 404 just like a missing one."""
    meta = datasets.load_meta(settings.datasets_dir, owner, dataset_id)
    if meta is None:
        raise Problem.field("dataset_not_found", "dataset_id", f"no dataset {dataset_id!r}", status=404)
    return meta


@router.get("/{dataset_id}", response_model=DatasetInfo, responses={404: PROBLEM}, summary="A stored dataset")
def get_dataset(meta: dict = Depends(owned_dataset)):
    """The caller's latest upload of this dataset; another key's dataset answers 404."""
    return _info(meta)


@router.get("/{dataset_id}/items", response_model=DatasetItems, responses={404: PROBLEM, 422: PROBLEM},
            summary="A page of a dataset's items")
def get_items(settings: SettingsDep, meta: dict = Depends(owned_dataset), offset: int = Query(0, ge=0),
              limit: int = Query(50, ge=1, le=500)):
    """The items as stored (valid lines only, keys sorted), in upload order."""
    items = datasets.read_items(settings.datasets_dir, meta, offset, limit)
    more = offset + len(items) < meta["n_items"]
    return DatasetItems(items=items, offset=offset, total=meta["n_items"],
                        next_offset=offset + len(items) if more else None)


@router.get("/{dataset_id}/download", responses={200: {"content": {"application/x-ndjson": {}},
            "description": "the stored JSONL, as a file to save"}, 404: PROBLEM}, summary="Download a dataset")
def download(settings: SettingsDep, meta: dict = Depends(owned_dataset)):
    """The stored JSONL (valid lines, keys sorted): uploading it again gives the same id."""
    return FileResponse(datasets.items_path(settings.datasets_dir, meta), media_type="application/x-ndjson",
                        filename=f"{meta['id']}.jsonl", headers={"ETag": f'"{meta["sha256"]}"'})
