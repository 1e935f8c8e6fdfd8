"""Submitting explanation jobs and shaping their answers (shared by the routers)."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from typing import Any

import numpy as np
from fastapi.concurrency import run_in_threadpool
from PIL import Image
from pydantic import ValidationError

from api_schemas.errors import ErrorBody
from api_schemas.explanations import (
    AttributionValues,
    ExplanationRequest,
    ExplanationResult,
    TargetInfo,
    Timings,
)
from api_schemas.jobs import JobLinks, JobState, JobStatus
from engine.errors import (
    InvalidParams,
    JobFailed,
    JobNotReady,
    JobTooCostly,
    UnknownJob,
)
from engine.methods.registry import get_method
from engine.modalities.image import decode_image
from engine.quality.metrics import MetricsRequest
from engine.render.heatmap import encode_png, heatmap_image, overlay_image
from engine.render.segments import segment_overlay
from engine.targets import canonical_target
from service.auth import Principal
from service.metrics import JOBS_SUBMITTED
from service.state import ServiceState
from workers.store import JobRecord


def job_links(job_id: str) -> JobLinks:
    base = f"/v1/jobs/{job_id}"
    return JobLinks(
        self=base,
        result=f"{base}/result?format=json",
        png=f"{base}/result?format=png",
        overlay=f"{base}/result?format=overlay",
        npy=f"{base}/result?format=npy",
    )


def job_status(rec: JobRecord) -> JobStatus:
    timings: dict[str, float] = {}
    if rec.started_at is not None:
        timings["queued_ms"] = round((rec.started_at - rec.created_at) * 1000.0, 2)
    if rec.finished_at is not None and rec.started_at is not None:
        timings["compute_ms"] = round((rec.finished_at - rec.started_at) * 1000.0, 2)
    return JobStatus(
        id=rec.id,
        state=JobState(rec.state),
        progress=rec.progress,
        model=rec.model,
        version=rec.version,
        method=rec.method,
        created_at=rec.created_at,
        started_at=rec.started_at,
        finished_at=rec.finished_at,
        timings=timings,
        model_calls=rec.model_calls,
        error=ErrorBody.model_validate(rec.error) if rec.error else None,
        result_summary=rec.summary,
        links=job_links(rec.id),
    )


def _job_id(
    owner: str,
    model: str,
    version: str,
    input_key: str,
    method: str,
    params: dict[str, Any],
    target: int | str,
) -> str:
    canon = json.dumps(
        {
            "o": owner,
            "m": model,
            "v": version,
            "i": input_key,
            "x": method,
            "p": params,
            "t": target,
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canon.encode()).hexdigest()[:32]


async def submit(
    state: ServiceState, req: ExplanationRequest, data: bytes, owner: str
) -> JobRecord:
    rt = state.rt
    info = rt.models.get(req.model)
    spec = get_method(req.method)
    try:
        params = spec.parse_params(req.params)
    except ValidationError as e:
        errors = [
            {"loc": ".".join(str(p) for p in err["loc"]), "msg": err["msg"]} for err in e.errors()
        ]
        first = errors[0]
        raise InvalidParams(
            f"Invalid params for {spec.name}: {first['loc'] or 'params'}: {first['msg']}. "
            "See the method's params schema at GET /v1/methods.",
            details={"errors": errors},
        ) from None
    target = canonical_target(req.target, info.manifest.labels)
    metrics = _metrics_request(req.metrics)

    def validate() -> None:
        decode_image(data, rt.settings.max_pixels)
        model = rt.load(info.name, info.version)
        spec.check(params, model)
        cost = spec.cost(params, model)
        if metrics is not None:
            h, _ = model.input_hw
            for name in metrics.names:
                cost += spec.cost(params, model) if name == "sanity" else h + 1
        limit = rt.settings.max_job_cost
        if cost > limit:
            raise JobTooCostly(
                f"This request would take about {cost} forward passes; the limit is {limit}. "
                "Lower the method's sample, step or window count.",
                details={"cost": cost, "limit": limit},
            )

    await run_in_threadpool(validate)
    input_key = rt.jobs.put_input(data)
    canon_params = params.model_dump(mode="json")
    canon_metrics = metrics.model_dump(mode="json") if metrics is not None else None
    job_id = _job_id(
        owner,
        info.name,
        info.version,
        input_key,
        spec.name,
        {"params": canon_params, "metrics": canon_metrics},
        target,
    )
    rec, created = rt.jobs.create_job(
        JobRecord(
            id=job_id,
            model=info.name,
            version=info.version,
            method=spec.name,
            params=canon_params,
            target=target,
            input_key=input_key,
            owner=owner,
            metrics=canon_metrics,
            time_limit_s=(
                rt.settings.sync_time_limit_s
                if spec.execution == "sync"
                else rt.settings.job_time_limit_s
            ),
        )
    )
    JOBS_SUBMITTED.labels(spec.name, str(not created).lower()).inc()
    if created:
        try:
            state.dispatcher.submit(job_id, rec.time_limit_s)
        except Exception:
            rt.jobs.update_job(
                job_id,
                state=JobState.failed.value,
                error={
                    "code": "backend_unavailable",
                    "message": "The job could not be queued; submit it again.",
                    "details": {},
                },
            )
            raise
    return rec


def _metrics_request(raw: list[str] | dict[str, Any] | None) -> MetricsRequest | None:
    if raw is None or raw == [] or raw == {}:
        return None
    try:
        req = MetricsRequest.model_validate(raw)
    except ValidationError as e:
        errors = [
            {"loc": ".".join(str(p) for p in err["loc"]), "msg": err["msg"]} for err in e.errors()
        ]
        raise InvalidParams(
            f"Invalid metrics: {errors[0]['loc'] or 'metrics'}: {errors[0]['msg']}. Ask for "
            '"deletion", "insertion" and/or "sanity".',
            details={"errors": errors},
        ) from None
    return req if req.names else None


def get_record(state: ServiceState, job_id: str, principal: Principal) -> JobRecord:
    """The job, if it exists and this caller may see it (its creator, or an admin)."""
    rec = state.rt.jobs.get_job(job_id) if len(job_id) <= 64 else None
    if rec is not None and not principal.is_admin and rec.owner != principal.name:
        rec = None
    if rec is not None:
        rec = _reap_if_stale(state, rec)
    if rec is None:
        raise UnknownJob(
            f"No job {job_id!r}. Jobs and results are kept for "
            f"{state.rt.settings.result_ttl_s} s; submit the request again.",
            details={"job": job_id},
        )
    return rec


HARD_LIMIT_GRACE_S = 120.0


def _reap_if_stale(state: ServiceState, rec: JobRecord) -> JobRecord:
    """A running job far past its time limit lost its worker to the hard limit: fail it."""
    if rec.state != JobState.running.value or rec.started_at is None:
        return rec
    if time.time() - rec.started_at < rec.time_limit_s + HARD_LIMIT_GRACE_S:
        return rec
    error = {
        "code": "time_limit",
        "message": f"The job ran past its time limit of {rec.time_limit_s:.0f} s. "
        "Ask for fewer samples or steps.",
        "details": {"time_limit_s": rec.time_limit_s},
    }
    state.rt.jobs.update_job(
        rec.id, state=JobState.failed.value, error=error, finished_at=time.time()
    )
    rec.state, rec.error = JobState.failed.value, error
    return rec


def require_result(state: ServiceState, rec: JobRecord) -> Any:
    if rec.state == JobState.failed.value:
        raise JobFailed(
            "The job failed, so it has no result. See its error and submit a corrected request.",
            details={"job": rec.id, "error": rec.error},
        )
    if rec.state != JobState.succeeded.value:
        raise JobNotReady(
            f"The job is {rec.state}; poll GET /v1/jobs/{rec.id} until it has succeeded.",
            details={"job": rec.id, "state": rec.state, "progress": rec.progress},
        )
    values = state.rt.jobs.get_result(rec.id)
    if values is None:
        raise UnknownJob(f"The result of job {rec.id} expired. Submit the request again.")
    return values


def render(
    state: ServiceState, rec: JobRecord, values: Any, fmt: str, colormap: str, alpha: float
) -> bytes:
    if fmt == "png":
        grid = state.rt.jobs.get_arrays(rec.id).get("grid")
        if grid is not None:  # activation maps: the channel grid is the picture
            return encode_png(Image.fromarray(grid, mode="RGB"))
        return encode_png(heatmap_image(values, colormap))
    data = state.rt.jobs.get_input(rec.input_key)
    if data is None:
        raise UnknownJob(f"The input of job {rec.id} expired. Submit the request again.")
    base = decode_image(data, state.rt.settings.max_pixels)
    segment_map = state.rt.jobs.get_arrays(rec.id).get("segment_map")
    extras = (rec.summary or {}).get("extras", {})
    if segment_map is not None and "segments" in extras:
        # LIME and KernelSHAP: the top positive (green) and negative (red) superpixels
        return encode_png(
            segment_overlay(
                base,
                segment_map,
                np.asarray(extras["segments"], np.float64),
                positive=extras.get("top_positive"),
                negative=extras.get("top_negative"),
            )
        )
    return encode_png(overlay_image(values, base, colormap, alpha))


def build_result(
    state: ServiceState,
    rec: JobRecord,
    values: Any,
    outputs: list[str],
    colormap: str = "jet",
    alpha: float = 0.5,
) -> ExplanationResult:
    s = rec.summary or {}
    images: dict[str, str] = {}
    for out in outputs:
        if out in ("png", "overlay"):
            images[out] = base64.b64encode(
                render(state, rec, values, out, colormap, alpha)
            ).decode()
    return ExplanationResult(
        job=rec.id,
        model=rec.model,
        version=rec.version,
        method=rec.method,
        params=rec.params,
        attribution=AttributionValues(
            shape=list(values.shape),
            values=values.tolist() if "values" in outputs else None,
        ),
        target=TargetInfo.model_validate(s.get("target", {})),
        timings=Timings.model_validate(s.get("timings", {})),
        model_calls=rec.model_calls or 0,
        extras=s.get("extras", {}),
        metrics=s.get("metrics") or {},
        cost=s.get("cost") or {},
        images=images,
    )


__all__ = [
    "build_result",
    "get_record",
    "job_status",
    "render",
    "require_result",
    "submit",
]
