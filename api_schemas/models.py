from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"


class ModelManifest(BaseModel):
    """How to feed a model: preprocessing spec and labels. Every number must be finite
    (NaN and ±Infinity, which Python's json.dumps writes, are refused)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: str = Field(pattern=NAME_PATTERN, examples=["my-classifier"])
    modality: Literal["image"] = "image"
    layout: Literal["NCHW", "NHWC"] = "NCHW"
    input_size: tuple[int, int] = Field(
        default=(224, 224), description="Model input height and width in pixels."
    )
    channel_order: Literal["RGB", "BGR"] = "RGB"
    scale: float = Field(
        default=1.0 / 255.0, gt=0, description="Pixels (0..255) are multiplied by this first."
    )
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    resize: Literal["bicubic", "bilinear", "nearest", "lanczos"] = "bicubic"
    labels: list[str] = Field(min_length=1, max_length=100_000)
    description: str = Field(default="", max_length=2000)

    @field_validator("input_size")
    @classmethod
    def _size_in_range(cls, v: tuple[int, int]) -> tuple[int, int]:
        if not all(8 <= s <= 4096 for s in v):
            raise ValueError("input_size entries must lie between 8 and 4096 pixels")
        return v

    @field_validator("std")
    @classmethod
    def _std_positive(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(s <= 0 for s in v):
            raise ValueError("std entries must be positive")
        return v


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
    manifest: ModelManifest
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
