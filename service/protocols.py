"""KServe V1 instances and Open Inference Protocol tensors, to and from Lantern's own inputs
and answers (no FastAPI here: the routes in service/routers/kserve.py are a thin shell).

An instance or a BYTES element becomes the model's modality's input body (what
``POST /v1/explanations`` takes as ``input``), so every check, limit and error of the
explanations API applies unchanged. Numeric tensors are either the model's own input tensor
(``infer``: run as they are) or, for ``explain``, rows (tabular), series (time series) or
pixels (UINT8 images, N × H × W × 3).
"""

from __future__ import annotations

import base64
import io
import math
from typing import Any

import numpy as np
import orjson
from numpy.typing import NDArray
from PIL import Image

from api_schemas.kserve import InferenceRequest, LanternParameters, RequestInput
from engine.errors import InvalidInput, InvalidParams

#: The method an explain request without ``parameters.method`` runs, by modality: a
#: gradient where the models are differentiable, occlusion for text pipelines (TF-IDF and
#: the like have no gradient).
DEFAULT_METHODS = {"image": "saliency", "tabular": "saliency", "time_series": "saliency",
                   "text": "occlusion"}

NUMPY_TYPES: dict[str, Any] = {
    "BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32,
    "UINT64": np.uint64, "INT8": np.int8, "INT16": np.int16, "INT32": np.int32,
    "INT64": np.int64, "FP16": np.float16, "FP32": np.float32, "FP64": np.float64,
}
DATATYPES = {np.dtype(v).name: k for k, v in NUMPY_TYPES.items()}


def instance_body(modality: str, instance: Any, index: int) -> dict[str, Any]:
    """A V1 instance (or a BYTES element) as a Lantern input body of ``modality``."""
    if isinstance(instance, dict) and "modality" in instance:
        return instance
    if modality == "image":
        data: Any = instance
        if isinstance(instance, dict):
            inner = instance.get("image_bytes", instance)
            data = inner.get("b64", inner.get("data")) if isinstance(inner, dict) else None
        if isinstance(data, str):
            return {"modality": "image", "data": data}
    elif modality == "tabular" and isinstance(instance, list | dict):
        return {"modality": "tabular", "row": instance}
    elif modality == "text":
        text = instance.get("text") if isinstance(instance, dict) else instance
        if isinstance(text, str):
            return {"modality": "text", "text": text}
    elif modality == "time_series" and isinstance(instance, list):
        return {"modality": "time_series", "values": instance}
    shapes = {
        "image": 'a base64 string, {"b64": ...} or {"image_bytes": {"b64": ...}}',
        "tabular": "an array in feature order or an object by feature name",
        "text": 'a string or {"text": ...}',
        "time_series": "an array of numbers (or channels × steps)",
    }
    raise InvalidInput(
        f"Instance {index} is not an input of this {modality} model: send "
        f"{shapes.get(modality, 'its modality input body')}.",
        details={"instance": index, "modality": modality},
    )


def explanation_fields(model: str, modality: str, params: LanternParameters | None,
                       body: dict[str, Any]) -> dict[str, Any]:
    """The ``POST /v1/explanations`` request for one instance: its input, the method and
    objective from ``parameters``, and the values in the answer."""
    p = params or LanternParameters()
    fields: dict[str, Any] = {
        "model": model,
        "method": p.method or DEFAULT_METHODS.get(modality, "saliency"),
        "input": body,
        "outputs": ["values"],
    }
    if p.target is not None:
        fields["target"] = p.target
    if p.objective is not None:
        fields["objective"] = p.objective
    if p.params is not None:
        fields["params"] = _json_object(p.params, "params")
    return fields


def _json_object(value: Any, name: str) -> dict[str, Any]:
    if isinstance(value, str):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            value = None
    if not isinstance(value, dict):
        raise InvalidParams(
            f"parameters.{name} must be a JSON object (or its text).", details={"field": name}
        )
    return value


def oip_parameters(request: InferenceRequest) -> LanternParameters:
    """A V2 request's ``parameters`` as Lantern's (tritonclient sends only strings, numbers
    and booleans, so ``params`` and ``objective`` may come as JSON text)."""
    raw = dict(request.parameters or {})
    if isinstance(raw.get("objective"), str):
        raw["objective"] = _json_object(raw["objective"], "objective")
    from service.inputs import validate_as

    return validate_as(LanternParameters, raw, what="Invalid parameters")


#: The binary tensor extension's header: the JSON header's length in bytes.
HEADER_LENGTH = "Inference-Header-Content-Length"


def split_binary(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    """(JSON header, binary tail) of a request in the binary extension (Triton's), or the
    whole body as JSON."""
    if header_length is None:
        return body, b""
    try:
        n = int(header_length)
    except ValueError:
        n = -1
    if not 0 < n <= len(body):
        raise InvalidInput(
            f"{HEADER_LENGTH} is {header_length!r}, not a length within the body "
            f"({len(body)} bytes).",
            details={"header": HEADER_LENGTH},
        )
    return body[:n], body[n:]


def binary_inputs(request: InferenceRequest, tail: bytes) -> dict[str, bytes]:
    """Each binary input's bytes, in the order the inputs name them."""
    out: dict[str, bytes] = {}
    at = 0
    for inp in request.inputs:
        size = (inp.parameters or {}).get("binary_data_size")
        if size is None:
            if inp.data is None:
                raise InvalidInput(f"Input {inp.name!r} has neither data nor binary_data_size.",
                                   details={"input": inp.name})
            continue
        if not isinstance(size, int) or size < 0 or at + size > len(tail):
            raise InvalidInput(
                f"Input {inp.name!r}: binary_data_size {size!r} runs past the body's "
                f"{len(tail)} binary bytes.",
                details={"input": inp.name},
            )
        out[inp.name] = tail[at : at + size]
        at += size
    if at != len(tail):
        raise InvalidInput(f"The body has {len(tail) - at} binary bytes that no input claims.",
                           details={"extra_bytes": len(tail) - at})
    return out


def tensor_array(inp: RequestInput, raw: bytes | None = None) -> NDArray[Any]:
    """A numeric request tensor as an array of its shape and type (data flat or nested,
    row-major, as the protocol says; or ``raw``, its little-endian bytes)."""
    if inp.datatype == "BYTES":
        raise InvalidInput(f"Input {inp.name!r} is BYTES; a numeric tensor is needed here.",
                           details={"input": inp.name})
    count = math.prod(inp.shape) if inp.shape else 1
    if raw is not None:
        dtype = np.dtype(NUMPY_TYPES[inp.datatype]).newbyteorder("<")
        if any(d < 0 for d in inp.shape) or len(raw) != count * dtype.itemsize:
            raise InvalidInput(
                f"Input {inp.name!r} has {len(raw)} bytes for its shape {inp.shape} "
                f"({count} × {dtype.itemsize}): send shape and data that agree.",
                details={"input": inp.name, "shape": inp.shape, "bytes": len(raw)},
            )
        arr = np.frombuffer(raw, dtype).astype(dtype.newbyteorder("="))
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise InvalidInput(f"Input {inp.name!r} holds a NaN or an infinity; send finite "
                               "numbers.", details={"input": inp.name})
        return arr.reshape(inp.shape)
    flat = _flatten(inp.data or [])
    if any(d < 0 for d in inp.shape) or len(flat) != count:
        raise InvalidInput(
            f"Input {inp.name!r} has {len(flat)} values for its shape {inp.shape} "
            f"({count}): send shape and data that agree.",
            details={"input": inp.name, "shape": inp.shape, "values": len(flat)},
        )
    try:
        arr = np.asarray(flat, dtype=NUMPY_TYPES[inp.datatype])
    except (TypeError, ValueError, OverflowError):
        raise InvalidInput(
            f"Input {inp.name!r} holds values that are not {inp.datatype}.",
            details={"input": inp.name, "datatype": inp.datatype},
        ) from None
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise InvalidInput(f"Input {inp.name!r} holds a NaN or an infinity; send finite numbers.",
                           details={"input": inp.name})
    return arr.reshape(inp.shape)


def bytes_elements(inp: RequestInput) -> list[str]:
    """A BYTES tensor's elements (one per batch item: a base64 image, a text, or a row or a
    series as JSON text)."""
    if inp.data is None:
        raise InvalidInput(f"Input {inp.name!r} is BYTES: send its elements as JSON strings "
                           "(the binary extension is for numeric tensors here).",
                           details={"input": inp.name})
    flat = _flatten(inp.data)
    if not all(isinstance(v, str) for v in flat):
        raise InvalidInput(f"Input {inp.name!r} is BYTES: every element must be a string.",
                           details={"input": inp.name})
    if inp.shape and inp.shape[0] != len(flat):
        raise InvalidInput(
            f"Input {inp.name!r}: shape {inp.shape} but {len(flat)} elements; one element per "
            "batch item.",
            details={"input": inp.name, "shape": inp.shape, "values": len(flat)},
        )
    return [str(v) for v in flat]


def element_instance(modality: str, element: str, index: int) -> Any:
    """A BYTES element as a V1-style instance: an image's base64 and a text as they are; a
    row or a series from its JSON text."""
    if modality in ("tabular", "time_series"):
        try:
            return orjson.loads(element)
        except orjson.JSONDecodeError:
            raise InvalidInput(
                f"Element {index} is not JSON: send a {modality} input as JSON text.",
                details={"element": index},
            ) from None
    return element


def numeric_instances(modality: str, arr: NDArray[Any]) -> list[Any]:
    """A numeric explain tensor as instances: rows (N × features), series (N × steps or
    N × channels × steps), or pixels (N × H × W × 3, UINT8) encoded as PNG."""
    if arr.ndim < 2:
        raise InvalidInput("A numeric explain input needs a batch axis first (N × ...).",
                           details={"shape": list(arr.shape)})
    if modality == "image":
        if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
            raise InvalidInput(
                "A numeric image input is UINT8 pixels, N × H × W × 3 (or send BYTES: the "
                "image files as base64).",
                details={"shape": list(arr.shape), "datatype": DATATYPES.get(arr.dtype.name)},
            )
        out = []
        for px in arr:
            buf = io.BytesIO()
            Image.fromarray(px, "RGB").save(buf, format="PNG")
            out.append(base64.b64encode(buf.getvalue()).decode())
        return out
    if modality in ("tabular", "time_series"):
        return [row.tolist() for row in arr.astype(np.float64)]
    raise InvalidInput(f"A {modality} model takes BYTES inputs (one string per item).",
                       details={"modality": modality})


def output_tensor(name: str, arr: NDArray[Any], parameters: dict[str, Any] | None = None
                  ) -> dict[str, Any]:
    """A response tensor (data flat, row-major)."""
    datatype = DATATYPES.get(arr.dtype.name)
    if datatype is None:
        arr = arr.astype(np.float32)
        datatype = "FP32"
    out: dict[str, Any] = {"name": name, "shape": [int(s) for s in arr.shape],
                           "datatype": datatype, "data": np.ascontiguousarray(arr).reshape(-1)}
    if parameters:
        out["parameters"] = parameters
    return out


def _flatten(data: list[Any]) -> list[Any]:
    out: list[Any] = []
    stack = [iter(data)]
    while stack:
        for v in stack[-1]:
            if isinstance(v, list):
                stack.append(iter(v))
                break
            out.append(v)
        else:
            stack.pop()
    return out
