"""Datasets: upload a zip of images, or register a directory under a dataset root (admin);
list, show and delete them. Dataset analyses name one in their request (``dataset``)."""

from __future__ import annotations

import functools
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool

from api_schemas.datasets import DatasetInfo, DatasetList, DirectoryDataset
from api_schemas.errors import ErrorBody
from engine.errors import InvalidInput, PayloadTooLarge
from service.auth import AUTH_RESPONSES, Principal, require_admin, require_user
from service.inputs import read_body, validate_as
from service.state import ServiceState, get_state

router = APIRouter(prefix="/v1/datasets", tags=["datasets"], responses=AUTH_RESPONSES)

ERRORS: dict[int | str, dict[str, Any]] = {
    403: {"model": ErrorBody},
    404: {"model": ErrorBody},
    409: {"model": ErrorBody},
    413: {"model": ErrorBody},
    422: {"model": ErrorBody},
}

_UPLOAD_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file", "name"],
                    "properties": {
                        "file": {"type": "string", "format": "binary",
                                 "description": "A zip of images: a folder per class "
                                 "labels them, or an index (CSV path,label or JSON)."},
                        "name": {"type": "string"},
                        "index": {"type": "string", "description": "The index's path in "
                                  "the zip (default: index.csv or index.json at its root)."},
                        "strict": {"type": "boolean", "description": "Refuse the whole "
                                   "upload if a file is not an image."},
                        "description": {"type": "string"},
                    },
                }
            },
            "application/json": {"schema": DirectoryDataset.model_json_schema()},
        },
    }
}


def _flag(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    value = str(raw).strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("", "0", "false", "no", "off"):
        return False
    raise InvalidInput(f"`strict` must be true or false, not {value[:20]!r}.",
                       details={"field": "strict"})


@router.post(
    "",
    response_model=DatasetInfo,
    status_code=201,
    summary="Register a dataset: a zip upload (multipart), or a directory under a dataset "
    "root (JSON {name, path}).",
    responses=ERRORS,
    openapi_extra=_UPLOAD_DOC,
)
async def add_dataset(
    request: Request,
    state: ServiceState = Depends(get_state),
    _: Principal = Depends(require_admin),
) -> DatasetInfo:
    fields, data = await read_body(request)
    store = state.rt.datasets
    if data is None:
        if "name" in fields and "path" in fields:
            req = validate_as(DirectoryDataset, fields, what="Invalid dataset directory")
            return await run_in_threadpool(
                functools.partial(store.add_directory, req.name, req.path, index=req.index,
                                  strict=req.strict, description=req.description)
            )
        raise InvalidInput(
            "Send multipart/form-data with a zip in a 'file' part and a 'name' field, or "
            'JSON {"name": ..., "path": ...} to register a directory under a dataset root.',
            details={"field": "file"},
        )
    limit = state.rt.settings.max_dataset_upload_bytes
    if len(data) > limit:
        raise PayloadTooLarge(f"The archive exceeds {limit} bytes. Send a smaller one.",
                              details={"limit": limit})
    name = fields.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidInput("The 'name' field is missing. Name the dataset.",
                           details={"field": "name"})
    index = fields.get("index")
    return await run_in_threadpool(
        functools.partial(
            store.add_zip, name, data,
            index=str(index) if index else None,
            strict=_flag(fields.get("strict", False)),
            description=str(fields.get("description", ""))[:2000],
        )
    )


@router.get("", response_model=DatasetList, summary="List registered datasets.")
def list_datasets(
    state: ServiceState = Depends(get_state), _: Principal = Depends(require_user)
) -> DatasetList:
    return DatasetList(datasets=state.rt.datasets.all())


@router.get("/{dataset}", response_model=DatasetInfo, responses=ERRORS,
            summary="A dataset's record: version, counts, classes, image sizes.")
def get_dataset(
    dataset: str, state: ServiceState = Depends(get_state), _: Principal = Depends(require_user)
) -> DatasetInfo:
    return state.rt.datasets.get(dataset)


@router.delete("/{dataset}", status_code=204, responses=ERRORS,
               summary="Delete a dataset and its versions (not a built-in one).")
def delete_dataset(
    dataset: str, state: ServiceState = Depends(get_state), _: Principal = Depends(require_admin)
) -> Response:
    state.rt.datasets.delete(dataset)
    return Response(status_code=204)
