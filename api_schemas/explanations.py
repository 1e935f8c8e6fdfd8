from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, StrictInt, Tag

from api_schemas.modalities.image import ImageInputBody
from api_schemas.modalities.tabular import TabularInputBody
from api_schemas.modalities.text import TextInputBody
from api_schemas.modalities.time_series import TimeSeriesInputBody
from api_schemas.objectives import ObjectiveRequest

__all__ = ["ImageInputBody", "InputBody"]

OutputName = Literal["values", "png", "overlay"]


def _modality_of(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("modality", "image"))
    return str(getattr(value, "modality", "image"))


#: One input by modality (its ``modality`` field; "image" when it has none).
InputBody = Annotated[
    Annotated[ImageInputBody, Tag("image")]
    | Annotated[TabularInputBody, Tag("tabular")]
    | Annotated[TextInputBody, Tag("text")]
    | Annotated[TimeSeriesInputBody, Tag("time_series")],
    Discriminator(_modality_of),
]


class ExplanationRequest(BaseModel):
    """An explanation to compute: model, method, input, objective, params, outputs."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(examples=["efficientnet-lite0"])
    method: str = Field(examples=["occlusion"])
    image: str | None = Field(
        default=None, description="The image file encoded as base64 (shorthand for `input`)."
    )
    input: InputBody | None = Field(
        default=None, description="The input by modality; omit for methods that take none."
    )
    target: StrictInt | str | None = Field(
        default=None,
        description='A class index, a label, or "top1" (the predicted class; the default): '
        "the shorthand for a class objective.",
        examples=["top1", 285, "Egyptian cat"],
    )
    objective: ObjectiveRequest | None = Field(
        default=None,
        description="What to explain: a class score, a layer's channel, a neuron, a layer's "
        "norm or a direction (instead of `target`).",
        examples=[{"kind": "channel", "layer": "blocks.5.0.conv_pw", "channel": 3}],
    )
    params: dict[str, Any] = Field(default_factory=dict)
    dataset: str | None = Field(
        default=None,
        description="The dataset a dataset analysis (max_activating, min_activating, "
        "dataset_predictions) runs over, by name (GET /v1/datasets): its current version.",
        examples=["digits"],
    )
    metrics: list[str] | dict[str, Any] | None = Field(
        default=None,
        description='Quality scores to compute beside the map: a list of "deletion", '
        '"insertion", "sanity", or {"names": [...], "deletion": {...}, "insertion": {...}, '
        '"sanity": {"top_k": 1}}. Their passes count in the job\'s cost.',
        examples=[["deletion", "insertion"]],
    )
    outputs: list[OutputName] = Field(
        default_factory=lambda: list[OutputName](["values"]),
        description="What an inline (wait) answer carries: values, png, overlay (base64).",
    )
    callback_url: str | None = Field(
        default=None,
        max_length=2048,
        description="Where to POST the job's status when it ends (succeeded, failed or "
        "cancelled), signed with the key's callback secret (docs/CALLBACKS.md); its host "
        "must be one the operator allows (LANTERN_CALLBACK_HOSTS), else 422 "
        "callback_not_allowed.",
        examples=["https://hooks.example.com/lantern"],
    )


class ArtifactInfo(BaseModel):
    """A named, typed part of a result and where its renderings are."""

    name: str
    type: str = Field(examples=["attribution", "image", "segments", "curve", "table"])
    shape: list[int]
    axes: list[str] = Field(default_factory=list)
    meta: dict[str, Any] = Field(default_factory=dict)
    links: dict[str, str] = Field(
        default_factory=dict, description="format -> URL of the artifact in that format."
    )


class TargetInfo(BaseModel):
    index: int
    label: str
    score: float = Field(description="Softmax probability of the target on the input.")


class Timings(BaseModel):
    queued_ms: float
    compute_ms: float


class AttributionValues(BaseModel):
    shape: list[int]
    values: list[Any] | None = Field(
        default=None, description="The first attribution's values (nested lists, float32)."
    )


class ExplanationResult(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "job": "3f2a9c0e5b7d4e1f8a6c2b9d0e4f7a1c",
                    "model": "efficientnet-lite0",
                    "version": "e0886b5ab73b868b",
                    "method": "grad_cam",
                    "params": {"layer": None, "relu": True, "score": "logit"},
                    "attribution": {"shape": [224, 224], "values": [[0.0, 0.01], [0.02, 0.4]]},
                    "target": {"index": 285, "label": "Egyptian cat", "score": 0.763},
                    "timings": {"queued_ms": 2.1, "compute_ms": 9.0},
                    "model_calls": 2,
                    "extras": {"layer": "head.act", "backward_passes": 1},
                    "metrics": {"deletion": {"auc": 0.2, "forward_passes": 225}},
                    "cost": {"forward_passes": 227, "backward_passes": 1},
                    "images": {},
                }
            ]
        }
    )

    job: str
    model: str
    version: str
    method: str
    params: dict[str, Any]
    attribution: AttributionValues
    target: TargetInfo | None = Field(
        default=None, description="The class explained (class objectives only)."
    )
    objective: dict[str, Any] = Field(default_factory=dict, description="The objective, resolved.")
    artifacts: list[ArtifactInfo] = Field(default_factory=list)
    views: dict[str, str] = Field(
        default_factory=dict,
        description="Which artifact the result's png and overlay renderings draw.",
    )
    timings: Timings
    model_calls: int
    extras: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="The quality scores asked for, by name."
    )
    cost: dict[str, int] = Field(
        default_factory=dict, description="forward_passes and backward_passes, metrics included."
    )
    images: dict[str, str] = Field(
        default_factory=dict, description="Base64 PNGs asked for in `outputs`."
    )
