from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse, PlainTextResponse

from api_schemas.errors import ErrorBody
from engine.errors import BackendUnavailable
from engine.models.runtime import session_providers
from jobs.presence import workers
from service.metrics import render_metrics
from service.state import ServiceState, get_state

router = APIRouter(tags=["health"])


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
    summary="Readiness: the built-in model is built and the job backend answers; the ONNX "
    "Runtime providers of the API and of each live worker.",
    responses={
        **_example(
            "application/json",
            {
                "status": "ready",
                "checks": {
                    "models": True,
                    "jobs_backend": True,
                    "providers": {
                        "api": {
                            "configured": ["CPUExecutionProvider"],
                            "active": ["CPUExecutionProvider"],
                            "available": ["CPUExecutionProvider"],
                        },
                        "workers": {
                            "gpu1@host": {
                                "configured": ["CUDAExecutionProvider", "CPUExecutionProvider"],
                                "active": ["CUDAExecutionProvider", "CPUExecutionProvider"],
                                "available": [
                                    "TensorrtExecutionProvider",
                                    "CUDAExecutionProvider",
                                    "CPUExecutionProvider",
                                ],
                            }
                        },
                    },
                },
            },
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
    checks["providers"] = _providers(state, bool(checks["jobs_backend"]))
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


def _providers(state: ServiceState, backend: bool) -> dict[str, Any]:
    """The ONNX Runtime providers of this process's runtime and of each live worker (its
    record, renewed while it runs; embedded mode has no other worker)."""
    out: dict[str, Any] = {"api": session_providers(state.rt.sessions.options.providers)}
    if state.rt.settings.redis_url:
        out["workers"] = None  # unknown while Redis is away
        if backend:
            try:
                out["workers"] = {w["name"]: w["providers"] for w in workers(state.rt.jobs)}
            except BackendUnavailable:
                pass
    return out


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
