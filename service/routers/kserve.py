"""Lantern as a model-serving platform's explainer: KServe's V1 ``:predict`` / ``:explain``
and the Open Inference Protocol (V2) — health, metadata, ``infer`` and ``explain``.

Each instance (V1) or batch item (V2) becomes one ``POST /v1/explanations`` request of the
model's modality and is answered by the same code (``respond``): limits, errors, the sync
lane for sync methods and jobs for the rest. See docs/KSERVE.md for the InferenceService
that wires Lantern in as the explainer component.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from numpy.typing import NDArray
from pydantic import TypeAdapter

from api_schemas.errors import ErrorBody
from api_schemas.explanations import ExplanationRequest, InputBody
from api_schemas.kserve import (
    InferenceRequest,
    InferenceResponse,
    LanternParameters,
    ModelMetadata,
    ServerMetadata,
    V1ExplainResponse,
    V1PredictResponse,
    V1Request,
)
from api_schemas.models import ModelInfo
from engine.errors import InvalidInput, InvalidParams, UnknownModel
from lantern import __version__
from service.auth import AUTH_RESPONSES, Principal, require_user
from service.inputs import input_bytes, read_body, validate_as, validate_with
from service.protocols import (
    DATATYPES,
    HEADER_LENGTH,
    binary_inputs,
    bytes_elements,
    element_instance,
    explanation_fields,
    instance_body,
    numeric_instances,
    oip_parameters,
    output_tensor,
    split_binary,
    tensor_array,
)
from service.routers.explanations import respond
from service.state import ServiceState, get_state

#: What a caller can cause on any of these routes (the body under /v2 also has ``error``).
ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody}, 413: {"model": ErrorBody}, 422: {"model": ErrorBody},
    503: {"model": ErrorBody},
}

router = APIRouter(tags=["kserve"], responses={**AUTH_RESPONSES, **ERRORS})

_INPUT = TypeAdapter(InputBody)


def _json(body: Any, status: int = 200) -> Response:
    """JSON with numpy arrays written natively; a top-level field that is None is left out
    (the protocol types ``id`` and the like as strings: absent, not null)."""
    if isinstance(body, dict):
        body = {k: v for k, v in body.items() if v is not None}
    return Response(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), status_code=status,
                    media_type="application/json")


def _model(state: ServiceState, name: str, version: str | None) -> ModelInfo:
    info = state.rt.models.get(name)
    if version is not None and version != info.version:
        info = state.rt.models.info(name, version)
        if info.version != version:
            raise UnknownModel(
                f"Model {name!r} has no version {version!r}; its current one is "
                f"{info.version!r}.",
                details={"model": name, "version": version},
            )
    return info


def _input_data(state: ServiceState, body: dict[str, Any]) -> bytes:
    parsed = validate_with(_INPUT, body, what="Invalid instance")
    return input_bytes(parsed, state.rt.settings.max_upload_bytes)


def _probabilities(state: ServiceState, info: ModelInfo, datas: list[bytes]) -> NDArray[Any]:
    """The class probabilities of each input, in one batch."""
    model = state.rt.load(info.name, info.version)
    x = np.concatenate([model.codec.item_input(model.codec.decode(d)) for d in datas])
    return model.probabilities(model.run(x))


async def _explain(
    state: ServiceState,
    info: ModelInfo,
    instances: list[Any],
    params: LanternParameters | None,
    principal: Principal,
) -> tuple[list[bytes], list[dict[str, Any]] | None, list[bytes]] | Response:
    """Each instance explained: (inputs, parsed results or None while a job runs, the raw
    bodies), or the first failing instance's error answer."""
    modality = info.manifest.modality
    datas: list[bytes] = []
    bodies: list[bytes] = []
    finished = True
    wait = (params or LanternParameters()).wait
    for i, instance in enumerate(instances):
        fields = explanation_fields(info.name, modality, params, instance_body(modality,
                                                                               instance, i))
        req = validate_as(ExplanationRequest, fields)
        assert req.input is not None
        data = input_bytes(req.input, state.rt.settings.max_upload_bytes)
        answer = await respond(state, req, data, principal, wait)
        if answer.status_code >= 400:
            return answer
        finished = finished and answer.status_code == 200
        datas.append(data)
        bodies.append(bytes(answer.body))
    parsed = [orjson.loads(b) for b in bodies] if finished else None
    return datas, parsed, bodies


async def _oip_request(request: Request) -> tuple[InferenceRequest, dict[str, bytes]]:
    """An OIP request: its JSON (the whole body, or the header of the binary extension) and
    its binary inputs' bytes by name."""
    header, tail = split_binary(await request.body(), request.headers.get(HEADER_LENGTH))
    try:
        fields = orjson.loads(header)
    except orjson.JSONDecodeError:
        raise InvalidInput("The body is not JSON: send an inference request object.",
                           details={"part": "body"}) from None
    if not isinstance(fields, dict):
        raise InvalidInput("The body must be a JSON object (an inference request).",
                           details={"part": "body"})
    req = validate_as(InferenceRequest, fields, what="Invalid inference request")
    return req, binary_inputs(req, tail)


def _wants_binary(req: InferenceRequest) -> bool:
    """Whether the caller asked for outputs in the binary extension (per output, or for all
    with ``binary_data_output``, as tritonclient does when it names no outputs)."""
    if any((o.parameters or {}).get("binary_data") for o in req.outputs or []):
        return True
    return bool((req.parameters or {}).get("binary_data_output")) and not req.outputs


def _binary_response(body: dict[str, Any]) -> Response:
    """An inference response in the binary extension: each output's raw little-endian bytes
    after the JSON header."""
    tails: list[bytes] = []
    for out in body["outputs"]:
        arr = np.ascontiguousarray(out.pop("data"))
        raw = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
        out["parameters"] = {**(out.get("parameters") or {}), "binary_data_size": len(raw)}
        tails.append(raw)
    header = orjson.dumps({k: v for k, v in body.items() if v is not None})
    return Response(header + b"".join(tails), media_type="application/octet-stream",
                    headers={HEADER_LENGTH: str(len(header))})


# -- KServe V1 ----------------------------------------------------------------------------


@router.post("/v1/models/{name}:predict", response_model=V1PredictResponse,
             summary="KServe V1 predict: each instance's class probabilities.")
async def v1_predict(
    name: str,
    request: Request,
    state: ServiceState = Depends(get_state),
    _: Principal = Depends(require_user),
) -> Response:
    info = state.rt.models.get(name)
    fields, _file = await read_body(request)
    req = validate_as(V1Request, fields, what="Invalid V1 request")
    modality = info.manifest.modality
    datas = [_input_data(state, instance_body(modality, x, i))
             for i, x in enumerate(req.instances)]
    probs = await run_in_threadpool(_probabilities, state, info, datas)
    return _json({"predictions": probs})


@router.post("/v1/models/{name}:explain", response_model=V1ExplainResponse,
             summary="KServe V1 explain: each instance's prediction and explanation.")
async def v1_explain(
    name: str,
    request: Request,
    state: ServiceState = Depends(get_state),
    principal: Principal = Depends(require_user),
) -> Response:
    info = state.rt.models.get(name)
    fields, _file = await read_body(request)
    req = validate_as(V1Request, fields, what="Invalid V1 request")
    out = await _explain(state, info, req.instances, req.parameters, principal)
    if isinstance(out, Response):
        return out
    datas, _parsed, bodies = out
    probs = await run_in_threadpool(_probabilities, state, info, datas)
    body = (b'{"predictions":' + orjson.dumps(probs, option=orjson.OPT_SERIALIZE_NUMPY)
            + b',"explanations":[' + b",".join(bodies) + b"]}")
    return Response(body, media_type="application/json")


# -- Open Inference Protocol (V2) ---------------------------------------------------------


@router.get("/v2/health/live", summary="OIP: the server is live.")
def v2_live() -> dict[str, bool]:
    return {"live": True}


@router.get("/v2/health/ready", summary="OIP: the server is ready (its models load).")
def v2_ready(state: ServiceState = Depends(get_state)) -> Response:
    return _json({"ready": bool(state.ready)}, status=200 if state.ready else 503)


@router.get("/v2", response_model=ServerMetadata, summary="OIP: server metadata.")
@router.get("/v2/", response_model=ServerMetadata, include_in_schema=False)
def v2_server(_: Principal = Depends(require_user)) -> ServerMetadata:
    return ServerMetadata(name="lantern", version=__version__, extensions=["explain"])


def _metadata(info: ModelInfo) -> ModelMetadata:
    def tensors(items: list[Any]) -> list[dict[str, Any]]:
        return [{"name": t.name, "datatype": DATATYPES.get(t.dtype, "BYTES"),
                 "shape": [d if isinstance(d, int) else -1 for d in t.shape]} for t in items]

    return ModelMetadata.model_validate({
        "name": info.name, "versions": [info.version], "platform": "onnxruntime_onnx",
        "inputs": tensors(info.inputs), "outputs": tensors(info.outputs),
        "properties": {"modality": info.manifest.modality,
                       "labels": str(len(info.manifest.labels))},
    })


@router.get("/v2/models/{name}", response_model=ModelMetadata, summary="OIP: model metadata.")
def v2_model(name: str, state: ServiceState = Depends(get_state),
             _: Principal = Depends(require_user)) -> ModelMetadata:
    return _metadata(_model(state, name, None))


@router.get("/v2/models/{name}/versions/{version}", response_model=ModelMetadata,
            summary="OIP: model metadata, of one version.")
def v2_model_version(name: str, version: str, state: ServiceState = Depends(get_state),
                     _: Principal = Depends(require_user)) -> ModelMetadata:
    return _metadata(_model(state, name, version))


@router.get("/v2/models/{name}/ready", summary="OIP: the model is ready.")
@router.get("/v2/models/{name}/versions/{version}/ready", summary="OIP: a version is ready.")
def v2_model_ready(name: str, version: str | None = None,
                   state: ServiceState = Depends(get_state),
                   _: Principal = Depends(require_user)) -> Response:
    info = _model(state, name, version)
    state.rt.load(info.name, info.version)
    return _json({"name": info.name, "version": info.version, "ready": True})


def _infer(state: ServiceState, info: ModelInfo, req: InferenceRequest,
           binaries: dict[str, bytes]) -> dict[str, Any]:
    model = state.rt.load(info.name, info.version)
    if len(req.inputs) != 1:
        raise InvalidInput(f"Model {info.name!r} takes one input tensor ({model.input_name!r}).",
                           details={"inputs": [i.name for i in req.inputs]})
    inp = req.inputs[0]
    wanted = [o.name for o in req.outputs or []]
    unknown = [n for n in wanted if n != model.output_name]
    if unknown:
        raise InvalidInput(
            f"Model {info.name!r} has no output {unknown[0]!r}; ask for "
            f"{model.output_name!r} (or for no outputs: all of them).",
            details={"outputs": unknown, "available": [model.output_name]},
        )
    if inp.datatype == "BYTES":
        modality = info.manifest.modality
        datas = [_input_data(state, instance_body(modality, element_instance(modality, e, i), i))
                 for i, e in enumerate(bytes_elements(inp))]
        x = np.concatenate([model.codec.item_input(model.codec.decode(d)) for d in datas])
    else:
        x = tensor_array(inp, binaries.get(inp.name))
        expected = model.session.get_inputs()[0].shape
        if x.ndim != len(expected) or any(
            isinstance(d, int) and d != s for d, s in zip(expected[1:], x.shape[1:], strict=True)
        ):
            raise InvalidInput(
                f"Input {inp.name!r} has shape {list(x.shape)}; model {info.name!r} takes "
                f"{[d if isinstance(d, int) else -1 for d in expected]} ({model.input_name!r}).",
                details={"shape": list(x.shape), "expected": [
                    d if isinstance(d, int) else -1 for d in expected]},
            )
        x = x.astype(np.float32)
    y = model.run(x)
    return {"model_name": info.name, "model_version": info.version, "id": req.id,
            "outputs": [output_tensor(model.output_name, y)]}


@router.post("/v2/models/{name}/infer", response_model=InferenceResponse,
             summary="OIP inference: the model's output tensor.")
@router.post("/v2/models/{name}/versions/{version}/infer", response_model=InferenceResponse,
             summary="OIP inference, on one version.")
async def v2_infer(
    name: str,
    request: Request,
    version: str | None = None,
    state: ServiceState = Depends(get_state),
    _: Principal = Depends(require_user),
) -> Response:
    info = _model(state, name, version)
    req, binaries = await _oip_request(request)
    body = await run_in_threadpool(_infer, state, info, req, binaries)
    return _binary_response(body) if _wants_binary(req) else _json(body)


@router.post("/v2/models/{name}/explain", response_model=InferenceResponse,
             summary="Explain in OIP tensors: the attribution of each batch item.",
             responses={202: {"description": "A job method still runs: its jobs' statuses."}})
@router.post("/v2/models/{name}/versions/{version}/explain", response_model=InferenceResponse,
             summary="Explain in OIP tensors, on one version.")
async def v2_explain(
    name: str,
    request: Request,
    version: str | None = None,
    state: ServiceState = Depends(get_state),
    principal: Principal = Depends(require_user),
) -> Response:
    info = _model(state, name, version)
    if version is not None and version != state.rt.models.get(name).version:
        raise UnknownModel(
            f"Explanations run on a model's current version ({name!r}); drop the version or "
            "use the current one.",
            details={"model": name, "version": version},
        )
    req, binaries = await _oip_request(request)
    params = oip_parameters(req)
    modality = info.manifest.modality
    if len(req.inputs) != 1:
        raise InvalidInput("Explain one input tensor (a batch of items).",
                           details={"inputs": [i.name for i in req.inputs]})
    inp = req.inputs[0]
    instances = ([element_instance(modality, e, i) for i, e in enumerate(bytes_elements(inp))]
                 if inp.datatype == "BYTES"
                 else numeric_instances(modality, tensor_array(inp, binaries.get(inp.name))))
    out = await _explain(state, info, instances, params, principal)
    if isinstance(out, Response):
        return out
    _datas, parsed, bodies = out
    if parsed is None:
        statuses = [orjson.loads(b) for b in bodies]
        return _json({"model_name": info.name, "id": req.id, "jobs": statuses}, status=202)
    if any((r.get("attribution") or {}).get("values") is None for r in parsed):
        raise InvalidParams(
            f"Method {parsed[0]['method']!r} answers no attribution to put in a tensor: "
            "explain with an attribution method here, or use POST /v1/explanations for its "
            "artifacts.",
            details={"method": parsed[0]["method"]},
        )
    values = [np.asarray(r["attribution"]["values"], np.float32) for r in parsed]
    shapes = {v.shape for v in values}
    if len(shapes) != 1:
        raise InvalidInput(
            "The items' attributions differ in shape, so they make no one tensor: explain "
            "them one request each.",
            details={"shapes": [list(s) for s in shapes]},
        )
    targets = np.asarray([(r.get("target") or {}).get("index", -1) for r in parsed], np.int64)
    scores = np.asarray([(r.get("target") or {}).get("score") or 0.0 for r in parsed],
                        np.float32)
    axes: list[str] = next((a.get("axes", []) for a in parsed[0].get("artifacts", [])
                 if a.get("type") == "attribution"), [])
    return _json({
        "model_name": info.name,
        "model_version": info.version,
        "id": req.id,
        "parameters": {"method": parsed[0]["method"],
                       "jobs": ",".join(r["job"] for r in parsed)},
        "outputs": [
            output_tensor("attribution", np.stack(values),
                          {"axes": ",".join(["item", *axes])}),
            output_tensor("target", targets),
            output_tensor("target_probability", scores),
        ],
    })
