"""Datasets: upload a zip of images, or register a directory under a dataset root (admin);
list, show and delete them. Dataset analyses name one in their request (``dataset``)."""

from __future__ import annotations

import functools
import io
from typing import Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from PIL import Image

from api_schemas.datasets import (
    DatasetImage,
    DatasetImageList,
    DatasetInfo,
    DatasetList,
    DirectoryDataset,
)
from api_schemas.errors import ErrorBody
from engine.errors import InvalidInput, PayloadTooLarge, UnknownDatasetImage
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


_VERSION = r"^[0-9a-f]{1,64}$"


@router.get(
    "/{dataset}/images",
    response_model=DatasetImageList,
    responses=ERRORS,
    summary="A dataset's images: index, id, label and size; a page of them, or the ones "
    "named by id.",
)
def list_dataset_images(
    dataset: str,
    offset: int = Query(0, ge=0, examples=[0], description="The first image's index."),
    limit: int = Query(100, ge=1, le=10_000, examples=[100], description="Images at most."),
    id: list[str] | None = Query(
        None, max_length=1000, examples=[["3/0042.png"]],
        description="Image ids (the paths analyses report, e.g. a confusion cell's ids): "
        "these images, in this order, instead of a page. An id the dataset lacks is a 404.",
    ),
    version: str | None = Query(None, pattern=_VERSION, examples=["3f2a9c0d1b7e4a56"],
                                description="A version of the dataset (default: current)."),
    state: ServiceState = Depends(get_state),
    _: Principal = Depends(require_user),
) -> DatasetImageList:
    reader = state.rt.datasets.reader(dataset, version)
    index = reader.index
    if id is not None:
        pos = {str(r["path"]): i for i, r in enumerate(index)}
        missing = [x for x in id if x not in pos]
        if missing:
            raise UnknownDatasetImage(
                f"Dataset {reader.name!r} (version {reader.version}) has no image "
                f"{missing[0][:200]!r}. Name ids that GET /v1/datasets/{reader.name}/images "
                "lists (an analysis's ids belong to its dataset_version).",
                details={"dataset": reader.name, "missing": [m[:200] for m in missing[:20]]},
            )
        chosen = [pos[x] for x in id]
        start = 0
    else:
        chosen = list(range(min(offset, len(index)), min(offset + limit, len(index))))
        start = offset
    return DatasetImageList(
        dataset=reader.name, version=reader.version, count=len(index), offset=start,
        images=[DatasetImage(index=i, id=str(index[i]["path"]), label=index[i]["label"],
                             width=int(index[i]["width"]), height=int(index[i]["height"]))
                for i in chosen],
    )


#: PNG keeps these modes as they are; any other is converted (to RGBA if it has alpha).
_PNG_MODES = frozenset({"1", "L", "LA", "RGB", "RGBA", "I;16"})
_IMMUTABLE = "private, max-age=31536000, immutable"


def _png(raw: bytes, size: int | None) -> bytes:
    """An image's stored bytes as PNG; with ``size``, scaled so that its longer side is
    ``size`` (nearest-neighbour when enlarging, so an 8x8 digit stays crisp)."""
    with Image.open(io.BytesIO(raw)) as src:
        src.load()
        img: Image.Image = src
        if img.mode not in _PNG_MODES:
            alpha = "A" in img.getbands() or "transparency" in img.info
            img = img.convert("RGBA" if alpha else "RGB")
        if size is not None:
            w, h = img.size
            scale = size / max(w, h)
            target = (max(1, round(w * scale)), max(1, round(h * scale)))
            if target != (w, h):
                if scale >= 1 or img.mode in ("1", "I;16"):
                    img = img.resize(target, Image.Resampling.NEAREST)
                else:
                    img = img.resize(target, Image.Resampling.LANCZOS)
        out = io.BytesIO()
        img.save(out, format="PNG")
        return out.getvalue()


@router.get(
    "/{dataset}/images/{index}",
    response_class=Response,
    responses={**ERRORS, 200: {"content": {"image/png": {}},
                                "description": "The image as PNG."},
               304: {"description": "Not modified (If-None-Match held its ETag)."}},
    summary="One image of a dataset as PNG, optionally as a thumbnail.",
)
def get_dataset_image(
    dataset: str,
    index: int,
    request: Request,
    size: int | None = Query(None, ge=8, le=512, examples=[64],
                             description="A thumbnail whose longer side is this many "
                             "pixels (nearest-neighbour when enlarging)."),
    version: str | None = Query(None, pattern=_VERSION,
                                examples=["3f2a9c0d1b7e4a56"], description="A version of the "
                                "dataset (default: the current one). Its images never "
                                "change, so the answer may be cached for good."),
    state: ServiceState = Depends(get_state),
    _: Principal = Depends(require_user),
) -> Response:
    """Image ``index`` (0-based, in the dataset's index order: the order analyses report)
    of the dataset. The ETag is the version, the index and the size; send it back in
    If-None-Match for a 304."""
    reader = state.rt.datasets.reader(dataset, version)
    count = len(reader)
    if not 0 <= index < count:
        raise UnknownDatasetImage(
            f"Dataset {reader.name!r} has {count} images (indices 0 to {count - 1}); "
            f"there is no image {index}. Ask for an index in that range.",
            details={"dataset": reader.name, "index": index, "count": count},
        )
    etag = f'"{reader.version}-{index}-{size or 0}"'
    headers = {"ETag": etag, "Cache-Control": _IMMUTABLE if version else "private, no-cache"}
    inm = request.headers.get("if-none-match", "")
    if etag in [t.strip().removeprefix("W/") for t in inm.split(",")] or inm.strip() == "*":
        return Response(status_code=304, headers=headers)
    try:
        png = _png(reader.read(index), size)
    except (OSError, ValueError, Image.DecompressionBombError):
        # a registered directory's file that changed or vanished since (uploads are ours)
        raise UnknownDatasetImage(
            f"Image {index} of dataset {reader.name!r} ({reader.index[index]['path']!r}) can "
            "no longer be read: its file changed or vanished. Register the dataset again.",
            details={"dataset": reader.name, "index": index, "count": count},
        ) from None
    return Response(png, media_type="image/png", headers=headers)
