from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from api_schemas.errors import ErrorBody
from api_schemas.explanations import ExplanationRequest, ExplanationResult
from api_schemas.jobs import JobState, JobStatus
from engine.errors import InvalidInput, PayloadTooLarge, status_of
from engine.methods.registry import get_method
from engine.models.batching import BATCH_CANDIDATES
from engine.models.runtime import LoadedModel
from jobs.batching import gainful_batch
from jobs.runner import Outcome, run_here, run_here_batched
from jobs.store import JobRecord
from service.auth import AUTH_RESPONSES, Principal, require_user
from service.errors import error_response
from service.inputs import (
    decode_base64_image,
    input_bytes,
    parse_json_field,
    read_body,
    validate_as,
)
from service.jobs import (
    Stored,
    build_result,
    dispatch,
    get_record,
    job_status,
    require_result,
    submit,
)
from service.state import ServiceState, get_state

log = logging.getLogger("lantern")

router = APIRouter(prefix="/v1/explanations", tags=["explanations"], responses=AUTH_RESPONSES)

def sync_answer(
    state: ServiceState,
    req: ExplanationRequest,
    data: bytes | None,
    principal: Principal,
    outputs: list[str],
) -> tuple[JobRecord, bytes | None]:
    """A sync method's request, whole: submit, run here (a new job) and the answer's body
    when it succeeded (else None: the caller waits or answers the job)."""
    rec, created = submit(state, req, data, principal.name)
    # run here, from the record in hand; stored as any job's result, and answered from
    # the artifacts still in memory (not read back and unpacked)
    out = run_here(state.rt, rec) if created else None
    return _answer(state, rec, out, principal, outputs)


def _answer(
    state: ServiceState,
    rec: JobRecord,
    out: Outcome | None,
    principal: Principal,
    outputs: list[str],
) -> tuple[JobRecord, bytes | None]:
    """The answer of a job submitted by a sync request, from how its run here ended
    (``out``; None: an existing job's record, not run here)."""
    if out is not None:
        if out.state == JobState.succeeded.value and out.artifacts is not None:
            stored = Stored(out.artifacts, out.views)
            return out.rec, build_result(state, out.rec, stored, outputs)
        rec = get_record(state, rec.id, principal)  # failed, or another run's: as stored
    if rec.state != JobState.succeeded.value:
        return rec, None
    return rec, build_result(state, rec, require_result(state, rec), outputs)


@dataclass(frozen=True)
class SyncCall:
    """One sync request waiting for its batch."""

    req: ExplanationRequest
    data: bytes | None
    principal: Principal
    outputs: list[str]


def batch_key(req: ExplanationRequest) -> tuple[str, str, str]:
    """Which sync requests may share a batch: the same model, method, params and quality
    metrics (the objective and the input are each request's own; a request that asks for
    metrics, many passes more, never holds up requests that do not)."""
    fixed = {"params": req.params, "metrics": req.metrics}
    return req.model, req.method, json.dumps(fixed, sort_keys=True, default=str)


def sync_answers(
    state: ServiceState, key: tuple[str, str, str], calls: list[SyncCall]
) -> Iterator[tuple[int, tuple[JobRecord, bytes | None] | BaseException]]:
    """:func:`sync_answer` for requests batched together (one key): each is submitted and
    answered on its own, and their jobs run as one batch (:func:`jobs.runner.run_here_batched`:
    one method call over the stacked inputs). Yields ``(index, answer)`` as each is ready; a
    request that fails gets its own error."""
    fresh: list[tuple[int, JobRecord]] = []
    first: JobRecord | None = None
    for i, call in enumerate(calls):
        try:
            rec, created = submit(state, call.req, call.data, call.principal.name)
        except Exception as e:  # this request's own refusal
            yield i, e
            continue
        first = first or rec
        if created:
            fresh.append((i, rec))
        else:  # the same request's job, run or running elsewhere: answered as it stands
            yield i, _answered(state, rec, None, call)
    for k, out in run_here_batched(state.rt, [rec for _, rec in fresh]):
        i, rec = fresh[k]
        yield i, _answered(state, rec, out, calls[i])
    if first is not None and state.claim_limit(key[0]):  # after the answers
        state.batch_limits[key[0]] = _best_batch(state, first)


def _answered(
    state: ServiceState, rec: JobRecord, out: Outcome | None, call: SyncCall
) -> tuple[JobRecord, bytes | None] | BaseException:
    try:
        return _answer(state, rec, out, call.principal, call.outputs)
    except Exception as e:
        return e


def _best_batch(state: ServiceState, rec: JobRecord) -> int:
    """The most requests of this job's model per batch (see :func:`best_batch`)."""
    try:
        return best_batch(state, state.rt.load(rec.model, rec.version))
    except Exception:  # an optimisation: without it, requests run one by one
        log.warning("no best batch for %s", rec.model, exc_info=True)
        return 1


def best_batch(state: ServiceState, model: LoadedModel) -> int:
    """How many sync requests of ``model`` to gather per batch: a fixed-batch model's batch
    (it pads every call to it), the operator's ``LANTERN_FORWARD_BATCH`` when set, a remote
    predictor's batch; else measured: the forward pass timed per image at batch 1 and at
    the candidates up to ``max_batch``, and the fastest batch kept only where it runs at
    least :data:`jobs.batching.MIN_GAIN` faster per image than one alone
    (:func:`jobs.batching.gainful_batch`). Non-image models: 1."""
    if model.modality != "image":
        return 1
    settings = state.rt.settings
    if model.fixed_batch or settings.forward_batch or model.remote is not None:
        return model.preferred_batch()
    timings = model.time_batches([1, *(b for b in BATCH_CANDIDATES if b <= settings.max_batch)])
    chosen = gainful_batch(timings)
    log.info("sync batching of %s: %s ms per image by batch; gathering up to %d",
             model.name, {b: round(t * 1000, 2) for b, t in timings.items()}, chosen)
    return chosen


def _inline(schema: dict[str, Any]) -> dict[str, Any]:
    """A pydantic JSON schema with its ``$defs`` inlined (the request body of the docs)."""
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return walk(defs[ref.rsplit("/", 1)[-1]])
            return {k: walk(v) for k, v in node.items() if k != "mapping"}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    out: dict[str, Any] = walk(schema)
    return out


_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": _inline(ExplanationRequest.model_json_schema()),
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
                        "objective": {"type": "string", "description": "JSON object"},
                        "metrics": {"type": "string", "description": "JSON list or object"},
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
    data: bytes | None
    if file_bytes is not None:
        parse_json_field(fields, "params")
        parse_json_field(fields, "outputs")
        parse_json_field(fields, "metrics")
        parse_json_field(fields, "objective")
        req = validate_as(ExplanationRequest, fields)
        data = file_bytes
    else:
        req = validate_as(ExplanationRequest, fields)
        if req.input is not None and req.image is not None:
            raise InvalidInput(
                "Give the input once: `image` or `input`, not both.",
                details={"fields": ["image", "input"]},
            )
        data = (
            input_bytes(req.input, limit)
            if req.input is not None
            else None
            if req.image is None
            else decode_base64_image(req.image, limit)
        )
    if data is not None and len(data) > limit:
        raise PayloadTooLarge(f"The image exceeds {limit} bytes. Send a smaller file.")
    return await respond(state, req, data, principal, wait)


async def respond(
    state: ServiceState,
    req: ExplanationRequest,
    data: bytes | None,
    principal: Principal,
    wait: float,
) -> Response:
    """A checked request, answered: the result (200) when it is ready within ``wait``
    seconds, the job's error when it failed within them, else the job (202). Shared by
    this route and the KServe / Open Inference Protocol shapes (service/routers/kserve.py)."""
    outputs: list[str] = list(req.outputs)
    spec = get_method(req.method) if wait > 0 else None
    if spec is not None and spec.execution == "sync":
        # the sync lane: checked, run and answered on threads of its own, in one hop
        # (never behind long jobs, no queue, no polling); with a batch entry point, batched
        # with the same model's, method's and params' requests arriving meanwhile
        batcher = (
            state.batcher("explain", functools.partial(sync_answers, state))
            if spec.batch_fn is not None and state.batch_limits.get(req.model) != 1
            else None  # a model measured to gain nothing from batches: the plain lane
        )
        if batcher is not None:
            rec, body = await state.in_batch(
                batcher, batch_key(req), SyncCall(req, data, principal, outputs)
            )
        else:
            rec, body = await state.in_sync_lane(
                sync_answer, state, req, data, principal, outputs
            )
        if body is not None:
            headers = {"Location": f"/v1/jobs/{rec.id}"}
            return Response(body, status_code=200, headers=headers, media_type="application/json")
    else:
        rec, created = await run_in_threadpool(submit, state, req, data, principal.name)
        if created:
            await run_in_threadpool(dispatch, state, rec)
        elif not JobState(rec.state).terminal and state.reconciler is not None:
            # the same request joins its live job, never a stuck one: repair it first
            await run_in_threadpool(state.reconciler.run_once, rec.id)
    headers = {"Location": f"/v1/jobs/{rec.id}"}
    deadline = time.monotonic() + wait
    while wait > 0 and not JobState(rec.state).terminal and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
        rec = await run_in_threadpool(get_record, state, rec.id, principal)
    if rec.state == JobState.succeeded.value:
        stored = await run_in_threadpool(require_result, state, rec)
        body = await run_in_threadpool(build_result, state, rec, stored, outputs)
        return Response(body, status_code=200, headers=headers, media_type="application/json")
    if rec.state == JobState.failed.value and wait > 0 and rec.error:
        err = rec.error
        code = str(err.get("code"))
        return error_response(
            status_of(code),
            code,
            str(err.get("message")),
            {"job": rec.id, **(err.get("details") or {})},
        )
    return JSONResponse(job_status(rec).model_dump(mode="json"), status_code=202, headers=headers)
