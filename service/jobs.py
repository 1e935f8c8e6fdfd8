"""Submitting explanation jobs and shaping their answers (shared by the routers).

Results are rendered by artifact type through :mod:`engine.render.registry`; nothing here
knows a method's names.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from typing import Any

import numpy as np
from PIL import Image

from api_schemas.errors import ErrorBody
from api_schemas.explanations import ExplanationRequest
from api_schemas.jobs import JobLinks, JobState, JobStatus
from api_schemas.objectives import ClassObjective, ObjectiveRequest
from engine.artifacts import Artifact, AttributionMap, unpack
from engine.errors import (
    BackendUnavailable,
    InputExpired,
    InvalidInput,
    InvalidParams,
    JobCancelled,
    JobFailed,
    JobNotReady,
    JobTooCostly,
    QueueFull,
    UnknownJob,
    UnsupportedModality,
)
from engine.explain import check_method
from engine.methods.base import MethodSpec
from engine.methods.registry import get_method
from engine.modalities.image import decode_image
from engine.objectives import resolve_objective
from engine.quality.metrics import MetricsRequest
from engine.render.registry import RenderContext, dumps, formats_for, formats_of, render
from engine.targets import canonical_target
from jobs.callbacks import allowlist, check_url
from jobs.callbacks import register as register_callback
from jobs.runner import ITEMS
from jobs.store import JobRecord
from service.auth import Principal
from service.inputs import validation_error
from service.metrics import JOBS_SUBMITTED
from service.state import ServiceState


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
        preview=[
            {**info, "links": artifact_links(rec.id, info)}
            for info in (rec.preview or [])
            if rec.state == JobState.running.value
        ],
        links=job_links(rec.id),
    )


def _job_id(owner: str, version: str, **parts: Any) -> str:
    canon = json.dumps(
        {"o": owner, "v": version, **parts}, sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canon.encode()).hexdigest()[:32]


def objective_of(req: ExplanationRequest, labels: list[str]) -> ObjectiveRequest:
    """The request's objective, canonical: ``target`` is the class shorthand, and a class
    is its index (or "top1"), so the same request spelled differently is the same job."""
    if req.objective is not None and req.target is not None:
        raise InvalidInput(
            "Give either `target` (a class) or `objective`, not both.",
            details={"fields": ["target", "objective"]},
        )
    obj = req.objective or ClassObjective(target="top1" if req.target is None else req.target)
    if isinstance(obj, ClassObjective):
        return ClassObjective(target=canonical_target(obj.target, labels), score=obj.score)
    return obj


def parse_params(spec: MethodSpec[Any], raw: dict[str, Any]) -> Any:
    from pydantic import ValidationError

    try:
        return spec.parse_params(raw)
    except ValidationError as e:
        raise validation_error(
            e,
            f"Invalid params for {spec.name}",
            "See the method's params schema at GET /v1/methods.",
            InvalidParams,
        ) from None


def submit(
    state: ServiceState, req: ExplanationRequest, data: bytes | None, owner: str
) -> tuple[JobRecord, bool]:
    """Check the request on the graph alone (no session), store the input and the job;
    (the record, whether it is new). Nothing is stored for a refused request."""
    rt = state.rt
    if req.callback_url is not None:  # refused before anything is stored
        check_url(req.callback_url, allowlist(rt.settings))
    info = rt.models.get(req.model)
    spec = get_method(req.method, info.manifest.modality)
    params = parse_params(spec, req.params)
    objective = objective_of(req, info.manifest.labels)
    metrics = _metrics_request(req.metrics)
    dataset_ref = None
    if spec.inputs == "dataset":  # a dataset analysis: the dataset instead of an input
        from service.datasets import dataset_of

        dataset_ref, objective = dataset_of(rt, spec, req, metrics, objective)
    if spec.inputs == "item" and data is None:
        raise InvalidInput(
            f"Method {spec.name!r} explains an input: send `image` (or `input`, or a file).",
            details={"field": "input"},
        )
    sent = req.input.modality if req.input is not None else "image" if req.image else None
    if data is not None and sent is not None and sent != info.manifest.modality:
        raise UnsupportedModality(
            f"Model {info.name!r} takes {info.manifest.modality} inputs, not {sent}: send "
            f'`input` with "modality": "{info.manifest.modality}".',
            details={"model": info.name, "modality": info.manifest.modality, "sent": sent},
        )
    model = rt.load(info.name, info.version)
    check_method(spec, model, objective)
    # the check, and the item (bytes this process decoded for the model already: that item)
    data_key = rt.jobs.input_key(data) if data is not None else None
    item = ITEMS.cached(data_key, model.version) if data_key is not None else None
    if data is not None and item is None:
        item = model.codec.decode(data)
    spec.check(params, model)
    resolved = resolve_objective(objective, model, getattr(params, "score", "logit"))
    if spec.check_objective is not None:
        spec.check_objective(params, model, resolved)
    if spec.kind == "gradient" and resolved.layer is not None:
        model.check_gradients(output=resolved.layer)
    if metrics is not None and model.modality != "image":
        raise InvalidParams(
            "Quality metrics (deletion, insertion, sanity) score image explanations; ask "
            f"without `metrics` for this {model.modality} model.",
            details={"metrics": metrics.names, "modality": model.modality},
        )
    if metrics is not None and not isinstance(objective, ClassObjective):
        raise InvalidParams(
            "Quality metrics score a class: ask for them with a class objective.",
            details={"metrics": metrics.names},
        )
    cost = spec.cost(params, model) if dataset_ref is None else int(dataset_ref["images"])
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
    if spec.execution == "job":
        queued = rt.jobs.active_cost(owner)
        cap = rt.settings.max_queued_cost_per_key
        if queued + cost > cap:
            raise QueueFull(
                f"This key has jobs of about {queued} forward passes queued or running; with "
                f"this one ({cost}) it would pass its limit of {cap}. Wait for them to "
                "finish, or cancel some.",
                details={"queued_cost": queued, "cost": cost, "limit": cap},
            )
    input_ref = None
    if data is not None and item is not None:
        input_ref = {"modality": model.manifest.modality, "key": rt.jobs.put_input(data, data_key)}
        ITEMS.put(input_ref["key"], model.version, item)  # decoded once in this process
    canon_params = params.model_dump(mode="json")
    canon_metrics = metrics.model_dump(mode="json") if metrics is not None else None
    canon_objective = objective.model_dump(mode="json")
    job_id = _job_id(
        owner,
        info.version,
        m=info.name,
        i=input_ref or dataset_ref,
        x=spec.name,
        p={"params": canon_params, "metrics": canon_metrics},
        t=canon_objective,
    )
    rec, created = rt.jobs.create_job(
        JobRecord(
            id=job_id,
            model=info.name,
            version=info.version,
            method=spec.name,
            params=canon_params,
            objective=canon_objective,
            input=input_ref,
            dataset=dataset_ref,
            owner=owner,
            metrics=canon_metrics,
            cost=cost,
            time_limit_s=(
                rt.settings.sync_time_limit_s
                if spec.execution == "sync"
                else rt.settings.job_time_limit_s
            ),
        )
    )
    if req.callback_url is not None:
        register_callback(rt.jobs, rec.id, req.callback_url, fresh=created)
    JOBS_SUBMITTED.labels(spec.name, str(not created).lower()).inc()
    return rec, created


def dispatch(state: ServiceState, rec: JobRecord) -> None:
    """Hand a new job to the workers (or fail it, so that a resubmit starts afresh)."""
    try:
        state.rt.jobs.update_job(rec.id, dispatched_at=time.time())
        state.dispatcher.submit(rec.id, rec.time_limit_s)
    except Exception:
        try:
            state.rt.jobs.end_job(
                rec,
                state=JobState.failed.value,
                error={
                    "code": "backend_unavailable",
                    "message": "The job could not be queued; submit it again.",
                    "details": {},
                },
            )
        except BackendUnavailable:
            pass  # the reconciler re-queues it once Redis is back
        raise


def _metrics_request(raw: list[str] | dict[str, Any] | None) -> MetricsRequest | None:
    from pydantic import ValidationError

    if raw is None or raw == [] or raw == {}:
        return None
    try:
        req = MetricsRequest.model_validate(raw)
    except ValidationError as e:
        raise validation_error(
            e,
            "Invalid metrics",
            'Ask for "deletion", "insertion" and/or "sanity".',
            InvalidParams,
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
    state.rt.jobs.end_job(rec, state=JobState.failed.value, error=error, finished_at=time.time())
    rec.state, rec.error = JobState.failed.value, error
    return rec


class Stored:
    """A succeeded job's artifacts, loaded once per request."""

    def __init__(self, artifacts: list[Artifact], views: dict[str, str]) -> None:
        self.artifacts = artifacts
        self.views = views

    def get(self, name: str) -> Artifact:
        for a in self.artifacts:
            if a.name == name:
                return a
        from engine.errors import UnknownArtifact

        raise UnknownArtifact(
            f"The result has no artifact {name!r}. It has: "
            f"{', '.join(a.name for a in self.artifacts)}.",
            details={"artifact": name, "artifacts": [a.name for a in self.artifacts]},
        )

    def view(self, fmt: str) -> Artifact:
        return self.get(self.views.get(fmt, self.artifacts[0].name))

    def attribution(self) -> AttributionMap | None:
        for a in self.artifacts:
            if isinstance(a, AttributionMap):
                return a
        return None


def require_result(state: ServiceState, rec: JobRecord) -> Stored:
    """The artifacts of a succeeded job, or the error that says why there are none."""
    if rec.state == JobState.failed.value:
        raise JobFailed(
            "The job failed, so it has no result. See its error and submit a corrected request.",
            details={"job": rec.id, "error": rec.error},
        )
    if rec.state == JobState.cancelled.value:
        raise JobCancelled(
            "The job was cancelled, so it has no result. Submit the request again to run it.",
            details={"job": rec.id, "state": rec.state},
        )
    if rec.state != JobState.succeeded.value:
        raise JobNotReady(
            f"The job is {rec.state}; poll GET /v1/jobs/{rec.id} until it has succeeded.",
            details={"job": rec.id, "state": rec.state, "progress": rec.progress},
        )
    packed = state.rt.jobs.get_artifacts(rec.id)
    if packed is None:
        raise UnknownJob(
            f"The result of job {rec.id} expired. Submit the request again.",
            details={"job": rec.id, "part": "result"},
        )
    artifacts, views = unpack(packed)
    return Stored(artifacts, views)


def require_artifacts(state: ServiceState, rec: JobRecord) -> Stored:
    """A succeeded job's artifacts, or the previews a running one has published."""
    if rec.state == JobState.running.value:
        packed = state.rt.jobs.get_preview(rec.id)
        if packed is not None:
            artifacts, _ = unpack(packed)
            return Stored(artifacts, {})
    return require_result(state, rec)


def _context(state: ServiceState, rec: JobRecord, colormap: str, alpha: float) -> RenderContext:
    def image() -> Image.Image:
        key = rec.input_key
        data = state.rt.jobs.get_input(key) if key is not None else None
        if data is None:
            raise InputExpired(
                f"The input of job {rec.id} expired, so it cannot be drawn under the result; "
                "the JSON, .npy and PNG renderings still work. Submit the request again for "
                "an overlay.",
                details={"job": rec.id, "part": "input"},
            )
        return decode_image(data, state.rt.settings.max_pixels)

    return RenderContext(input_image=image, colormap=colormap, alpha=alpha)


def render_artifact(
    state: ServiceState,
    rec: JobRecord,
    artifact: Artifact,
    fmt: str,
    colormap: str = "jet",
    alpha: float = 0.5,
) -> bytes:
    return render(artifact, fmt, _context(state, rec, colormap, alpha))


def render_view(
    state: ServiceState, rec: JobRecord, stored: Stored, fmt: str, colormap: str, alpha: float
) -> bytes:
    """The result's ``png`` or ``overlay``: its view artifact drawn in that format (an
    overlay of an artifact without one, e.g. a channel grid, is its png)."""
    artifact = stored.view(fmt)
    if fmt == "overlay" and "overlay" not in formats_for(artifact):
        fmt = "png"
    return render_artifact(state, rec, artifact, fmt, colormap, alpha)


def artifact_links(job_id: str, artifact: Artifact | dict[str, Any]) -> dict[str, str]:
    name = artifact.name if isinstance(artifact, Artifact) else str(artifact["name"])
    kind = artifact.type if isinstance(artifact, Artifact) else str(artifact["type"])
    axes = artifact.axes if isinstance(artifact, Artifact) else artifact.get("axes")
    base = f"/v1/jobs/{job_id}/artifacts/{name}"
    return {fmt: f"{base}?format={fmt}" for fmt in formats_of(kind, axes)}


def build_result(
    state: ServiceState,
    rec: JobRecord,
    stored: Stored,
    outputs: list[str],
    colormap: str = "jet",
    alpha: float = 0.5,
) -> bytes:
    """The JSON result (ExplanationResult), serialised with numpy arrays written natively."""
    s = rec.summary or {}
    images: dict[str, str] = {}
    for out in outputs:
        if out in ("png", "overlay"):
            png = render_view(state, rec, stored, out, colormap, alpha)
            images[out] = base64.b64encode(png).decode()
    attribution = stored.attribution()
    values: Any = None
    shape: list[int] = list(s.get("shape", []))
    if attribution is not None:
        shape = attribution.shape
        if "values" in outputs:
            values = np.ascontiguousarray(attribution.values, np.float32)
    infos = [{**a.info(), "links": artifact_links(rec.id, a)} for a in stored.artifacts]
    body = {
        "job": rec.id,
        "model": rec.model,
        "version": rec.version,
        "method": rec.method,
        "params": rec.params,
        "attribution": {"shape": shape, "values": values},
        "target": s.get("target"),
        "objective": s.get("objective") or {},
        "artifacts": infos,
        "views": {fmt: stored.view(fmt).name for fmt in ("png", "overlay")},
        "timings": s.get("timings", {"queued_ms": 0.0, "compute_ms": 0.0}),
        "model_calls": rec.model_calls or 0,
        "extras": s.get("extras", {}),
        "metrics": s.get("metrics") or {},
        "cost": s.get("cost") or {},
        "images": images,
    }
    return dumps(body)


__all__ = [
    "build_result",
    "dispatch",
    "get_record",
    "job_status",
    "render_artifact",
    "render_view",
    "require_result",
    "submit",
]
