from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool

from api_schemas.errors import ErrorBody
from api_schemas.modalities.tabular import TabularManifest
from api_schemas.models import (
    MANIFESTS,
    AnyManifest,
    ImageManifest,
    ModelInfo,
    ModelList,
    Prediction,
    PredictRequest,
    PredictResponse,
)
from engine.errors import InvalidInput, InvalidManifest, PayloadTooLarge, UnsupportedModality
from engine.modalities.image import decode_image, prepare_image
from engine.modalities.tabular_sample import with_statistics
from engine.models.runtime import softmax
from engine.models.store import MANIFEST_HINT
from service.auth import AUTH_RESPONSES, Principal, require_admin, require_user
from service.inputs import (
    FilePart,
    decode_base64_image,
    loads_json,
    read_body,
    validate_as,
    validate_with,
)
from service.state import ServiceState, get_state

router = APIRouter(prefix="/v1/models", tags=["models"], responses=AUTH_RESPONSES)

ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody},
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
                    "required": ["file", "manifest"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "training": {
                            "type": "string",
                            "format": "binary",
                            "description": "Tabular models: a training sample (CSV with a "
                            "header of the feature names, or Parquet) whose statistics are "
                            "kept with the model version.",
                        },
                        "manifest": {
                            "type": "string",
                            "description": "ModelManifest as JSON.",
                            "example": '{"name": "tiny", "layout": "NCHW", '
                            '"input_size": [32, 32], "labels": ["a", "b"]}',
                        },
                    },
                }
            }
        },
    }
}


@router.get(
    "",
    response_model=ModelList,
    summary="List registered models (and, apart, stored records that cannot be read).",
)
def list_models(
    state: ServiceState = Depends(get_state), _: Principal = Depends(require_user)
) -> ModelList:
    models, broken = state.rt.models.scan()
    return ModelList(models=models, broken=broken)


def parse_manifest_field(raw: str) -> AnyManifest:
    """The manifest field of an upload, or invalid_manifest naming what is wrong (not
    JSON, nested too deep, a number that is not finite, a field pydantic refuses)."""
    try:
        obj = loads_json(raw, "manifest")
    except InvalidInput as e:
        raise InvalidManifest(f"{e.message} {MANIFEST_HINT}", details=e.details) from None
    return validate_with(
        MANIFESTS,
        obj,
        what="The manifest is invalid",
        hint=MANIFEST_HINT,
        error_cls=InvalidManifest,
    )


@router.post(
    "",
    response_model=ModelInfo,
    status_code=201,
    summary="Register an .onnx model with its manifest (multipart: file + manifest JSON).",
    responses={**ERRORS, 409: {"model": ErrorBody}},
    openapi_extra=_UPLOAD_DOC,
)
async def upload_model(
    request: Request,
    state: ServiceState = Depends(get_state),
    _: Principal = Depends(require_admin),
) -> ModelInfo:
    fields, data = await read_body(request, extra_files=("training",))
    if data is None:
        raise InvalidInput(
            "Send multipart/form-data with the model in a 'file' part and its manifest "
            "as JSON in a 'manifest' field.",
        )
    if "manifest" not in fields:
        raise InvalidInput("The 'manifest' field is missing. Add the manifest as JSON.")
    manifest = parse_manifest_field(str(fields["manifest"]))
    training = fields.get("training")
    if training is not None:
        if not isinstance(manifest, TabularManifest) or not isinstance(training, FilePart):
            raise InvalidInput(
                "A 'training' part (a training sample) is for tabular models only; send it "
                "as a file part beside a manifest with \"modality\": \"tabular\".",
                details={"field": "training"},
            )
        manifest = await run_in_threadpool(
            with_statistics, manifest, training.data, training.filename
        )
    info = await run_in_threadpool(
        functools.partial(
            state.rt.models.add,
            data,
            manifest,
            max_tensor_bytes=state.rt.settings.max_model_tensor_bytes,
        )
    )
    return info


@router.get(
    "/{model}",
    response_model=ModelInfo,
    summary="A model's manifest, inputs, outputs and layers.",
    responses={**ERRORS, 409: {"model": ErrorBody, "description": "The record is damaged."}},
)
def get_model(
    model: str, state: ServiceState = Depends(get_state), _: Principal = Depends(require_user)
) -> ModelInfo:
    return state.rt.models.get(model)


@router.delete(
    "/{model}",
    status_code=204,
    summary="Delete a model and all its versions.",
    responses={**ERRORS, 409: {"model": ErrorBody}},
)
def delete_model(
    model: str, state: ServiceState = Depends(get_state), _: Principal = Depends(require_admin)
) -> Response:
    for version in state.rt.models.delete(model):  # a damaged record is deleted too
        state.rt.sessions.evict(version)
    return Response(status_code=204)


_PREDICT_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": PredictRequest.model_json_schema(),
                "example": {"image": "<base64 of a PNG or JPEG>", "top_k": 5},
            },
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "top_k": {"type": "integer", "default": 5},
                    },
                }
            },
        },
    }
}


@router.post(
    "/{model}/predict",
    response_model=PredictResponse,
    summary="Top-k labels and softmax scores for one image.",
    responses=ERRORS,
    openapi_extra=_PREDICT_DOC,
)
async def predict(
    model: str,
    request: Request,
    state: ServiceState = Depends(get_state),
    _: Principal = Depends(require_user),
) -> PredictResponse:
    info = state.rt.models.get(model)
    fields, file_bytes = await read_body(request)
    limit = state.rt.settings.max_upload_bytes
    if file_bytes is not None:
        fields.setdefault("image", "")
        req = validate_as(PredictRequest, fields)
        data = file_bytes
    else:
        req = validate_as(PredictRequest, fields)
        data = decode_base64_image(req.image, limit)
    if len(data) > limit:
        raise PayloadTooLarge(f"The image exceeds {limit} bytes. Send a smaller file.")

    manifest = info.manifest
    if not isinstance(manifest, ImageManifest):
        raise UnsupportedModality(
            f"Model {info.name!r} is {manifest.modality}; predict takes images. Explain its "
            "inputs with POST /v1/explanations.",
            details={"model": info.name, "modality": manifest.modality},
        )

    call = PredictCall(data, req.top_k, manifest)
    # one forward pass with the same model's requests meanwhile (unless measured to gain
    # nothing from batches)
    batcher = (
        state.batcher("predict", functools.partial(predict_batch, state))
        if state.batch_limits.get(info.name) != 1
        else None
    )
    if batcher is not None:
        return await state.in_batch(batcher, (info.name, info.version), call)
    ((_index, answer),) = await run_in_threadpool(
        predict_batch, state, (info.name, info.version), [call]
    )
    if isinstance(answer, BaseException):
        raise answer
    return answer


@dataclass(frozen=True)
class PredictCall:
    """One predict request: its image's bytes, how many classes, the model's manifest."""

    data: bytes
    top_k: int
    manifest: ImageManifest


def predict_batch(
    state: ServiceState, key: tuple[str, str], calls: list[PredictCall]
) -> list[tuple[int, PredictResponse | BaseException]]:
    """Predict requests of one model version, answered from one forward pass over their
    stacked images; an image that cannot be decoded is that request's own error."""
    name, version = key
    loaded = state.rt.load(name, version)
    answers: list[PredictResponse | BaseException | None] = [None] * len(calls)
    pixels: list[Any] = []
    for i, call in enumerate(calls):
        h, w = call.manifest.input_size
        try:
            image = decode_image(
                call.data,
                state.rt.settings.max_pixels,
                target_size=(w, h),
                max_bytes=state.rt.settings.max_decode_bytes,
            )
            pixels.append(prepare_image(image, call.manifest).pixels)
        except Exception as e:
            answers[i] = e
    ok = [i for i, a in enumerate(answers) if a is None]
    if ok:
        logits = loaded.scores(np.stack(pixels))
        probs = softmax(logits)
        for row, i in enumerate(ok):
            k = min(calls[i].top_k, probs.shape[1])
            top = probs[row].argsort()[::-1][:k]
            preds = [
                Prediction(
                    index=int(c),
                    label=loaded.labels[int(c)],
                    score=float(probs[row, c]),
                    logit=float(logits[row, c]),
                )
                for c in top
            ]
            answers[i] = PredictResponse(model=name, version=version, predictions=preds)
    if state.rt.settings.sync_batch_window_ms > 0 and state.claim_limit(name):
        from service.routers.explanations import best_batch  # the explanations' measure

        try:
            state.batch_limits[name] = best_batch(state, loaded)
        except Exception:  # an optimisation: without it, requests run one by one
            state.batch_limits[name] = 1
    return [(i, a if a is not None else RuntimeError("no answer")) for i, a in enumerate(answers)]
