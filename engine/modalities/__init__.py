"""One codec per kind of input (see :mod:`engine.modalities.base`)."""

from __future__ import annotations

from api_schemas.models import ModelManifest
from engine.modalities.image import ImageCodec, ImageInput

__all__ = ["ImageCodec", "ImageInput", "codec_for"]


def codec_for(manifest: ModelManifest, max_pixels: int = 40_000_000) -> ImageCodec:
    """The codec of a model's modality."""
    return ImageCodec(manifest, max_pixels)
