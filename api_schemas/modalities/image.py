"""Image models: preprocessing of a picture into the model's input tensor."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from api_schemas.modalities.base import ManifestBase


class ImageManifest(ManifestBase):
    """How to feed an image model: layout, size, colour order, scaling, normalisation."""

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


class ImageInputBody(BaseModel):
    """An image input: the file's bytes as base64."""

    model_config = ConfigDict(extra="forbid")

    modality: Literal["image"] = "image"
    data: str = Field(description="The image file (PNG, JPEG, ...) encoded as base64.")
