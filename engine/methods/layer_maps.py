"""Layers as maps over the image: which layer, its value as (C, h, w), upsampled to the input."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from engine.errors import InvalidParams
from engine.models.runtime import LoadedModel


def upsample(cam: NDArray[np.float32], height: int, width: int) -> NDArray[np.float32]:
    """Bilinear upsampling of a (h, w) map to (height, width)."""
    if cam.shape == (height, width):
        return cam.astype(np.float32)
    img = Image.fromarray(np.ascontiguousarray(cam, dtype=np.float32), mode="F")
    return np.asarray(img.resize((width, height), Image.Resampling.BILINEAR), np.float32)


def resolve_layer(model: LoadedModel, layer: str | None) -> str:
    """The named layer (checked to be a spatial tensor), or the default CAM layer."""
    spatial = model.spatial_layers()
    if layer is None:
        found = model.default_cam_layer()
        if found is None:
            raise InvalidParams(
                "This model has no spatial (rank-4) layer to explain; name a `layer`.",
            )
        return found
    if layer not in spatial:
        raise InvalidParams(
            f"{layer!r} is not a spatial layer of this model. Pick one of the layers marked "
            "spatial in GET /v1/models/{model}.",
            details={"layer": layer, "spatial_layers": spatial[-20:]},
        )
    return layer


def to_chw(a: NDArray[np.float32], model: LoadedModel) -> NDArray[np.float32]:
    """A layer value (1, C, h, w) or (1, h, w, C) as (C, h, w)."""
    out: NDArray[np.float32] = (
        np.ascontiguousarray(a[0].transpose(2, 0, 1)) if model.channels_last else a[0]
    )
    return out
