from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from api_schemas.errors import ErrorBody
from api_schemas.explanations import ExplanationRequest, ExplanationResult
from api_schemas.jobs import JobState, JobStatus
from engine.errors import PayloadTooLarge
from service.auth import AUTH_RESPONSES, Principal, require_user
from service.errors import error_response
from service.inputs import decode_base64_image, parse_json_field, read_body, validate_as
from service.jobs import build_result, get_record, job_status, require_result, submit
from service.state import ServiceState, get_state

router = APIRouter(prefix="/v1/explanations", tags=["explanations"], responses=AUTH_RESPONSES)

_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": ExplanationRequest.model_json_schema(),
                "example": {
                    "model": "efficientnet-lite0",
                    "method": "occlusion",
                    "image": "<base64 of a PNG or JPEG>",
                    "target": "top1",
                    "params": {"window": 16, "stride": 8, "baseline": "zero"},
                    "outputs": ["values"],
                },
            },
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file", "model", "method"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "model": {"type": "string"},
                        "method": {"type": "string"},
                        "target": {"type": "string", "default": "top1"},
                        "params": {"type": "string", "description": "JSON object"},
                        "outputs": {"type": "string", "description": "JSON list"},
                    },
                }
            },
        },
    }
}


@router.post(
    "",
    status_code=202,
    response_model=JobStatus,
    summary="Explain a prediction: answers the job (202), or the result (200) with ?wait=S.",
    responses={
        200: {"model": ExplanationResult, "description": "The result, ready within `wait`."},
        404: {"model": ErrorBody},
        413: {"model": ErrorBody},
        422: {"model": ErrorBody},
        503: {"model": ErrorBody},
    },
    openapi_extra=_DOC,
)
async def create_explanation(
    request: Request,
    wait: float = Query(0.0, ge=0.0, le=60.0, description="Seconds to wait for the result."),
    state: ServiceState = Depends(get_state),
    principal: Principal = Depends(require_user),
) -> Response:
    fields, file_bytes = await read_body(request)
    limit = state.rt.settings.max_upload_bytes
    if file_bytes is not None:
        parse_json_field(fields, "params")
        parse_json_field(fields, "outputs")
        parse_json_field(fields, "metrics")
        fields["image"] = ""
        req = validate_as(ExplanationRequest, fields)
        data = file_bytes
    else:
        req = validate_as(ExplanationRequest, fields)
        data = decode_base64_image(req.image, limit)
    if len(data) > limit:
        raise PayloadTooLarge(f"The image exceeds {limit} bytes. Send a smaller file.")
    rec = await submit(state, req, data, principal.name)
    headers = {"Location": f"/v1/jobs/{rec.id}"}
    deadline = time.monotonic() + wait
    while wait > 0 and not JobState(rec.state).terminal and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
        rec = await run_in_threadpool(get_record, state, rec.id, principal)
    if rec.state == JobState.succeeded.value:
        values = require_result(state, rec)
        result = await run_in_threadpool(build_result, state, rec, values, list(req.outputs))
        return JSONResponse(result.model_dump(mode="json"), status_code=200, headers=headers)
    if rec.state == JobState.failed.value and wait > 0 and rec.error:
        err = rec.error
        status = 500 if err.get("code") == "internal_error" else 422
        return error_response(
            status,
            str(err.get("code")),
            str(err.get("message")),
            {"job": rec.id, **(err.get("details") or {})},
        )
    return JSONResponse(job_status(rec).model_dump(mode="json"), status_code=202, headers=headers)
