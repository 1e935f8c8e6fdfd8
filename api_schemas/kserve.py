"""The shapes of the model-serving platforms' protocols that Lantern speaks, so that a KServe
InferenceService or a Seldon deployment can use it as its explainer component.

* KServe's V1 data plane (TensorFlow Serving's REST API plus ``:explain``):
  ``POST /v1/models/{name}:predict`` and ``:explain`` with ``{"instances": [...]}``, answered
  ``{"predictions": [...]}`` and ``{"predictions": [...], "explanations": [...]}``
  (https://kserve.github.io/website/docs/concepts/architecture/data-plane/v1-protocol).
* The Open Inference Protocol (KServe V2, Triton, MLServer, Seldon): request and response
  tensors, as its REST specification defines them (kserve/open-inference-protocol,
  specification/protocol/open_inference_rest.yaml; a copy is in tests/service/oip/).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

#: The Open Inference Protocol's tensor data types.
Datatype = Literal[
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
    "FP16", "FP32", "FP64", "BYTES",
]


class LanternParameters(BaseModel):
    """What Lantern needs beyond the inputs, in a request's ``parameters`` (both protocols):
    the method and its objective. Omitted, the method is the modality's default (saliency;
    occlusion for text models) and the target the predicted class."""

    model_config = ConfigDict(extra="allow")

    method: str | None = Field(default=None, description="An explanation method (GET /v1/methods).")
    target: int | str | None = Field(default=None, description='A class index, label or "top1".')
    objective: dict[str, Any] | None = Field(default=None, description="An objective object.")
    params: dict[str, Any] | str | None = Field(
        default=None, description="The method's params: an object, or the same as JSON text."
    )
    wait: float = Field(
        default=60.0, ge=0.0, le=60.0,
        description="Seconds to wait for a job method's result before answering its job (202) "
        "(not `timeout`: tritonclient reserves that name).",
    )


class V1Request(BaseModel):
    """KServe V1: one instance per input, in the model's modality — an image as base64 (or
    ``{"b64": ...}``, or TensorFlow Serving's ``{"image_bytes": {"b64": ...}}``), a tabular
    row as an array in feature order or an object by feature name, a text as a string, a
    series as an array (or channels × steps); or any Lantern input body (with
    ``modality``)."""

    model_config = ConfigDict(extra="forbid")

    instances: list[Any] = Field(min_length=1, max_length=64)
    parameters: LanternParameters | None = None


class V1PredictResponse(BaseModel):
    predictions: list[list[float]] = Field(description="Per instance, its class probabilities.")


class V1ExplainResponse(BaseModel):
    predictions: list[list[float]]
    explanations: list[dict[str, Any]] = Field(
        description="Per instance, Lantern's explanation result (GET /v1/jobs/{id}/result's "
        "shape, with values), or its job's status while a job method still runs."
    )


class RequestInput(BaseModel):
    name: str
    shape: list[int] = Field(max_length=8)
    datatype: Datatype
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = Field(
        default=None, description="The values (flat or nested, row-major); omitted when the "
        "tensor travels in the binary extension (parameters.binary_data_size bytes after the "
        "JSON header, whose length the Inference-Header-Content-Length header gives).")


class RequestOutput(BaseModel):
    name: str
    parameters: dict[str, Any] | None = None


class InferenceRequest(BaseModel):
    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[RequestInput] = Field(min_length=1, max_length=16)
    outputs: list[RequestOutput] | None = None


class ResponseOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: Datatype
    parameters: dict[str, Any] | None = None
    data: list[Any]


class InferenceResponse(BaseModel):
    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: dict[str, Any] | None = None
    outputs: list[ResponseOutput]


class MetadataTensor(BaseModel):
    name: str
    datatype: Datatype
    shape: list[int]


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[MetadataTensor]
    outputs: list[MetadataTensor]
    properties: dict[str, str] = Field(default_factory=dict)
