"""Typed answers of the inside-the-network methods, as numpy arrays and PIL images:
``LanternClient.groups(job)`` (nmf_groups) and ``LanternClient.dictionary(job)``
(semantic_dictionary); the async client has the same methods."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image


@dataclass
class NmfGroups:
    """A layer's NMF groups on one image."""

    layer: str
    maps: NDArray[np.float32]  # (k, h, w), non-negative
    colours: list[str]  # "#rrggbb" per group
    attribution: NDArray[np.float64]  # (k,), summing to the layer's gradient × activation
    map_image: Image.Image  # the colour-coded map (the artifact's PNG)
    thumbnails: list[Image.Image] = field(default_factory=list)  # each group's visualisation


@dataclass
class SemanticDictionary:
    """Each position's top channels at a layer, with the channels' visualisations."""

    layer: str
    channels: NDArray[np.int32]  # (h, w, n), largest activation first
    values: NDArray[np.float32]  # (h, w, n)
    sheet: Image.Image  # every position's thumbnails as one PNG
    thumbnails: dict[int, Image.Image] = field(default_factory=dict)


def groups_of(body: dict[str, Any], map_image: Image.Image,
              thumbnails: list[Image.Image]) -> NmfGroups:
    data = body["data"]
    return NmfGroups(
        layer=str(data.get("layer", "")),
        maps=np.asarray(data["maps"], np.float32),
        colours=[str(c) for c in data["colours"]],
        attribution=np.asarray(data["attribution"], np.float64),
        map_image=map_image,
        thumbnails=thumbnails,
    )


def thumbnail_names(body: dict[str, Any]) -> list[str]:
    """The image artifacts a groups or dictionary artifact names, in its order."""
    data = body["data"]
    names = data.get("thumbnails") or []
    if isinstance(names, dict):
        return [str(v) for v in names.values()]
    return [str(n) for n in names]


def dictionary_of(body: dict[str, Any], sheet: Image.Image,
                  thumbs: list[Image.Image]) -> SemanticDictionary:
    data = body["data"]
    channels = [int(c) for c in (data.get("thumbnails") or {})]
    return SemanticDictionary(
        layer=str(data.get("layer", "")),
        channels=np.asarray(data["channels"], np.int32),
        values=np.asarray(data["values"], np.float32),
        sheet=sheet,
        thumbnails=dict(zip(channels, thumbs, strict=True)),
    )
