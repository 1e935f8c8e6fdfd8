"""One codec per kind of input (see :mod:`engine.modalities.base`), one module per
modality: each registers its :class:`~engine.modalities.base.Modality` on import (see
:mod:`engine.modalities.registry`), so a modality is a new module."""

from __future__ import annotations

from engine.modalities.base import Codec, GraphCheck, Modality
from engine.modalities.image import ImageCodec, ImageInput
from engine.modalities.registry import codec_for, modality, register_modality

__all__ = [
    "Codec",
    "GraphCheck",
    "ImageCodec",
    "ImageInput",
    "Modality",
    "codec_for",
    "modality",
    "register_modality",
]
