"""Activation maps: a layer's channels for one image, as a grid and per-channel statistics."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from engine.artifacts import AttributionMap, ImageArtifact, Result, Table
from engine.errors import InvalidParams
from engine.methods.base import MethodSpec, Progress
from engine.methods.layer_maps import resolve_layer, to_chw, upsample
from engine.methods.registry import register
from engine.modalities.image import ImageInput
from engine.models.runtime import LoadedModel
from engine.objectives import Objective
from engine.render.grid import channel_grid


class ActivationMapsParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    layer: str | None = Field(default=None, description="A spatial layer; default: the last.")
    top_k: int = Field(default=16, ge=1, le=256, description="Channels with the top mean.")
    channels: list[int] | None = Field(
        default=None, max_length=256, description="Show these channels instead of the top-k."
    )
    colormap: Literal["viridis", "inferno", "jet", "gray"] = "viridis"


def check(params: ActivationMapsParams, model: LoadedModel) -> None:
    layer = resolve_layer(model, params.layer)
    shape = model.layer_shapes().get(layer, ())
    axis = 3 if model.channels_last else 1
    count = shape[axis] if len(shape) == 4 else None
    if params.channels is not None and isinstance(count, int) and count > 0:
        _check_channels(params.channels, layer, count)


def _check_channels(channels: list[int], layer: str, count: int) -> None:
    bad = [c for c in channels if not 0 <= c < count]
    if bad:
        raise InvalidParams(
            f"Channels {bad} do not exist: layer {layer!r} has channels 0..{count - 1}.",
            details={"channels": bad, "count": count},
        )


def activation_maps(
    model: LoadedModel,
    image: ImageInput,
    objective: Objective,
    params: ActivationMapsParams,
    progress: Progress,
) -> Result:
    layer = resolve_layer(model, params.layer)
    x = model.to_model_input(image.pixels[None])
    value, logits = model.probe(x, [layer])
    a = to_chw(value, model)
    k = a.shape[0]
    means = a.mean(axis=(1, 2))
    if params.channels is not None:
        _check_channels(params.channels, layer, k)
        chosen = list(params.channels)
    else:
        chosen = [int(c) for c in np.argsort(-means, kind="stable")[: params.top_k]]
    maps = a[chosen]
    progress(1.0)
    stats = {
        "mean": [float(v) for v in means],
        "max": [float(v) for v in a.max(axis=(1, 2))],
        "min": [float(v) for v in a.min(axis=(1, 2))],
        "std": [float(v) for v in a.std(axis=(1, 2))],
        "active_fraction": [float(v) for v in (a > 0).mean(axis=(1, 2))],
    }
    columns = ["channel", *stats]
    rows = [[c, *(stats[s][c] for s in stats)] for c in range(k)]
    return Result(
        [
            AttributionMap("attribution", upsample(maps.mean(axis=0), image.height, image.width)),
            ImageArtifact("grid", channel_grid(maps, params.colormap), f"{layer}: {chosen}"),
            Table("channel_stats", columns, rows),
        ],
        model_calls=1,
        views={"png": "grid"},
        output=logits.reshape(logits.shape[0], -1),
        extras={
            "layer": layer,
            "layer_shape": list(a.shape),
            "channels": chosen,
            "channel_stats": stats,
        },
    )


SPEC = register(
    MethodSpec(
        name="activation_maps",
        params_model=ActivationMapsParams,
        fn=activation_maps,
        description="A layer's channels (top-k by mean activation, or chosen) as a grid PNG, "
        "with per-channel statistics.",
        kind="activation",
        execution="sync",
        check=check,
    )
)
