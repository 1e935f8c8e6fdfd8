from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse, PlainTextResponse

from api_schemas.errors import ErrorBody
from service.metrics import render_metrics
from service.routers import callbacks
from service.state import ServiceState, get_state

router = APIRouter(tags=["health"])
router.include_router(callbacks.router)  # callbacks: the secret endpoint and the deliverer


def _example(content_type: str, value: object) -> dict[int | str, dict[str, object]]:
    return {200: {"content": {content_type: {"example": value}}}}


@router.get(
    "/healthz",
    summary="Liveness: the process answers.",
    responses=_example("application/json", {"status": "ok"}),
)
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness: the built-in model is built and the job backend answers.",
    responses={
        **_example(
            "application/json",
            {"status": "ready", "checks": {"models": True, "jobs_backend": True}},
        ),
        503: {"model": ErrorBody, "description": "Starting, or Redis unreachable."},
    },
)
def readyz(state: ServiceState = Depends(get_state)) -> Response:
    checks: dict[str, Any] = {"models": state.ready, "startup_error": state.startup_error}
    try:
        checks["jobs_backend"] = state.rt.jobs.ping()
    except Exception:
        checks["jobs_backend"] = False
    ok = bool(checks["models"] and checks["jobs_backend"])
    if ok:
        return JSONResponse({"status": "ready", "checks": checks})
    return JSONResponse(
        {
            "code": "not_ready",
            "message": "Lantern is starting or its job backend is unreachable; retry shortly.",
            "details": checks,
        },
        status_code=503,
        headers={"Retry-After": "2"},
    )


@router.get(
    "/metrics",
    summary="Prometheus metrics.",
    response_class=PlainTextResponse,
    responses=_example(
        "text/plain",
        'lantern_jobs_finished_total{method="occlusion",state="succeeded"} 3.0\n',
    ),
)
def metrics(state: ServiceState = Depends(get_state)) -> Response:
    body, ctype = render_metrics(state)
    return Response(body, media_type=ctype)
