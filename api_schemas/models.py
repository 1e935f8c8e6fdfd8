from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter

from api_schemas.modalities.base import NAME_PATTERN, ManifestBase
from api_schemas.modalities.image import ImageManifest
from api_schemas.modalities.tabular import TabularManifest
from api_schemas.modalities.text import TextManifest
from api_schemas.modalities.time_series import TimeSeriesManifest

#: The image manifest's name before there were other modalities.
ModelManifest = ImageManifest


def _modality_of(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("modality", "image"))
    return str(getattr(value, "modality", "image"))


#: A manifest of any modality, chosen by its ``modality`` field ("image" when it has none).
AnyManifest = Annotated[
    Annotated[ImageManifest, Tag("image")]
    | Annotated[TabularManifest, Tag("tabular")]
    | Annotated[TextManifest, Tag("text")]
    | Annotated[TimeSeriesManifest, Tag("time_series")],
    Discriminator(_modality_of),
]
MANIFESTS: TypeAdapter[AnyManifest] = TypeAdapter(AnyManifest)

__all__ = [
    "MANIFESTS",
    "NAME_PATTERN",
    "AnyManifest",
    "ImageManifest",
    "ManifestBase",
    "ModelManifest",
    "TabularManifest",
    "TextManifest",
    "TimeSeriesManifest",
]


class TensorInfo(BaseModel):
    name: str
    shape: list[int | str | None]
    dtype: str


class LayerInfo(BaseModel):
    name: str = Field(description="Tensor name, usable as a method's `layer`.")
    op_type: str
    shape: list[int | str | None]
    spatial: bool = Field(
        description="A rank-4 feature map: a target for grad_cam, grad_cam_plus_plus and "
        "activation_maps."
    )


class Capabilities(BaseModel):
    """What the model's graph allows, found when it was registered."""

    gradients: bool = Field(description="onnx-ad can differentiate input -> output.")
    gradients_refusal: str | None = Field(
        default=None, description="Why not: the op and node without a gradient rule."
    )
    cam: bool = Field(description="The output is a linear layer after global pooling.")
    default_layer: str | None = Field(
        default=None, description="The last spatial layer before global pooling."
    )


_MODEL_EXAMPLE: dict[str, Any] = {
    "name": "tiny",
    "version": "1a2b3c4d5e6f7a8b",
    "builtin": False,
    "size_bytes": 1904,
    "created_at": 1795354186.0,
    "manifest": {
        "name": "tiny",
        "modality": "image",
        "layout": "NCHW",
        "input_size": [16, 16],
        "channel_order": "RGB",
        "scale": 0.00392156862745098,
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "resize": "bicubic",
        "labels": ["cat", "dog"],
        "description": "",
    },
    "inputs": [{"name": "input", "shape": ["N", 3, 16, 16], "dtype": "float32"}],
    "outputs": [{"name": "logits", "shape": ["N", 2], "dtype": "float32"}],
    "layers": [{"name": "act", "op_type": "Relu", "shape": ["N", 4, 16, 16], "spatial": True}],
    "capabilities": {
        "gradients": True,
        "gradients_refusal": None,
        "cam": True,
        "default_layer": "act",
    },
}


class ModelInfo(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_MODEL_EXAMPLE]})

    name: str
    version: str = Field(
        description="Hash of the .onnx file and of the manifest's fields that change results "
        "(all but description)."
    )
    builtin: bool = False
    size_bytes: int
    created_at: float
    manifest: AnyManifest
    output: str | None = Field(
        default=None,
        description="The output explained (the class scores), where the graph has several.",
    )
    inputs: list[TensorInfo] = Field(default_factory=list)
    outputs: list[TensorInfo] = Field(default_factory=list)
    layers: list[LayerInfo] = Field(default_factory=list)
    capabilities: Capabilities | None = None


class BrokenModel(BaseModel):
    """A stored model record that cannot be read; an admin can DELETE it."""

    name: str
    version: str | None = Field(
        default=None, description="The record's version, where it can still be read."
    )
    error: str = Field(description="Why the record cannot be read.")


class ModelList(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"models": [_MODEL_EXAMPLE], "broken": []}]}
    )

    models: list[ModelInfo]
    broken: list[BrokenModel] = Field(
        default_factory=list,
        description="Stored records that cannot be read (damaged on disk): GET of one answers "
        "409 model_damaged; DELETE (admin) removes it.",
    )


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    image: str = Field(description="The image file (PNG, JPEG, ...) encoded as base64.")
    top_k: int = Field(default=5, ge=1, le=100)


class Prediction(BaseModel):
    index: int
    label: str
    score: float = Field(description="Softmax probability.")
    logit: float


class PredictResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "model": "efficientnet-lite0",
                    "version": "e0886b5ab73b868b",
                    "predictions": [
                        {"index": 285, "label": "Egyptian cat", "score": 0.763, "logit": 10.78},
                        {"index": 281, "label": "tabby, tabby cat", "score": 0.0996, "logit": 8.74},
                    ],
                }
            ]
        }
    )

    model: str
    version: str
    predictions: list[Prediction]
