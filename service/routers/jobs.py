from __future__ import annotations

import time
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Response
from fastapi.concurrency import run_in_threadpool

from api_schemas.errors import ErrorBody
from api_schemas.explanations import ExplanationResult
from api_schemas.jobs import JobState, JobStatus
from engine.errors import JobFinished
from engine.render.colormap import COLORMAPS
from engine.render.registry import MEDIA_TYPES, render
from service.auth import AUTH_RESPONSES, Principal, require_user
from service.jobs import (
    build_result,
    get_record,
    job_status,
    render_artifact,
    render_view,
    require_artifacts,
    require_result,
)
from service.state import ServiceState, get_state

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=AUTH_RESPONSES)

Colormap = Literal["jet", "viridis", "inferno", "coolwarm", "gray"]
assert set(Colormap.__args__) == set(COLORMAPS)  # type: ignore[attr-defined]

ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody},
    409: {"model": ErrorBody},
    422: {"model": ErrorBody},
}


@router.get(
    "/{job}",
    response_model=JobStatus,
    summary="A job's state, progress, timings and links.",
    responses=ERRORS,
)
def get_job(
    job: str, state: ServiceState = Depends(get_state), p: Principal = Depends(require_user)
) -> JobStatus:
    return job_status(get_record(state, job, p))


@router.get(
    "/{job}/result",
    summary="The result as JSON, colour-mapped PNG, overlay PNG on the input, or .npy.",
    responses={
        200: {
            "content": {
                "application/json": {"schema": ExplanationResult.model_json_schema()},
                "image/png": {},
                "application/octet-stream": {},
            }
        },
        **ERRORS,
    },
)
async def get_result(
    job: str,
    format: Literal["json", "png", "overlay", "npy"] = Query("json"),
    colormap: Colormap = Query("jet"),
    alpha: float = Query(0.5, ge=0.0, le=1.0, description="Heatmap opacity of the overlay."),
    state: ServiceState = Depends(get_state),
    principal: Principal = Depends(require_user),
) -> Response:
    rec = get_record(state, job, principal)
    stored = await run_in_threadpool(require_result, state, rec)
    if format == "json":
        body = await run_in_threadpool(build_result, state, rec, stored, ["values"])
        return Response(body, media_type="application/json")
    if format == "npy":
        primary = stored.attribution() or stored.artifacts[0]
        return Response(
            render(primary, "npy"),
            media_type="application/octet-stream",
            headers={"Content-Disposition": f'attachment; filename="{job}.npy"'},
        )
    png = await run_in_threadpool(render_view, state, rec, stored, format, colormap, alpha)
    return Response(png, media_type="image/png")


@router.get(
    "/{job}/artifacts/{name}",
    summary="One artifact of a result, rendered by its type (json, npy, png, overlay, svg).",
    responses={
        200: {
            "content": {
                "application/json": {},
                "image/png": {},
                "image/svg+xml": {},
                "text/html": {},
                "application/octet-stream": {},
            }
        },
        **ERRORS,
    },
)
async def get_artifact(
    job: str,
    name: str,
    format: Literal["json", "png", "overlay", "npy", "svg", "html"] = Query("json"),
    colormap: Colormap = Query("jet"),
    alpha: float = Query(0.5, ge=0.0, le=1.0, description="Heatmap opacity of an overlay."),
    state: ServiceState = Depends(get_state),
    principal: Principal = Depends(require_user),
) -> Response:
    rec = get_record(state, job, principal)
    stored = await run_in_threadpool(require_artifacts, state, rec)
    artifact = stored.get(name)
    body = await run_in_threadpool(render_artifact, state, rec, artifact, format, colormap, alpha)
    headers = {}
    if format == "npy":
        headers["Content-Disposition"] = f'attachment; filename="{job}-{name}.npy"'
    return Response(body, media_type=MEDIA_TYPES[format], headers=headers)


@router.delete(
    "/{job}", response_model=JobStatus, summary="Cancel a queued or running job.", responses=ERRORS
)
def cancel_job(
    job: str, state: ServiceState = Depends(get_state), p: Principal = Depends(require_user)
) -> JobStatus:
    rec = get_record(state, job, p)
    if rec.state in (JobState.succeeded.value, JobState.failed.value):
        raise JobFinished(
            f"The job has already {rec.state}; there is nothing to cancel.",
            details={"job": job, "state": rec.state},
        )
    if rec.state != JobState.cancelled.value:
        state.rt.jobs.end_job(rec, state=JobState.cancelled.value, finished_at=time.time())
        state.dispatcher.cancel(job)
    return job_status(get_record(state, job, p))
