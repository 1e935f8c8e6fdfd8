"""Activation maps: a layer's channels for one image, as a grid and per-channel statistics.

Which channels: by index or by top activation, in the objective vocabulary — a ``channel``
objective ``{"kind": "channel", "layer": L, "channel": c}`` shows channel c of L (and any
``channels`` more), a ``layer_norm`` objective ``{"kind": "layer_norm", "layer": L}`` the
``top_k`` channels of L by mean activation; a class objective (the default ``target``)
keeps the params' ``layer``, ``top_k`` and ``channels``. The per-channel statistics are the
``channel_stats`` table (built from numpy columns).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

from engine.artifacts import AttributionMap, ImageArtifact, Result
from engine.column_table import ColumnTable
from engine.errors import InvalidParams
from engine.methods.base import MethodSpec, Progress
from engine.methods.layer_maps import resolve_layer, to_chw, upsample
from engine.methods.registry import register
from engine.modalities.image import ImageInput
from engine.models.runtime import LoadedModel
from engine.objectives import Channel, LayerNorm, Objective
from engine.render.grid import channel_grid


class ActivationMapsParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    layer: str | None = Field(
        default=None,
        description="A spatial layer; default: the objective's layer, else the last.",
    )
    top_k: int = Field(default=16, ge=1, le=256, description="Channels with the top mean.")
    channels: list[int] | None = Field(
        default=None, max_length=256,
        description="Show these channels instead of the top-k (with a channel objective: "
        "these besides its own).",
    )
    colormap: Literal["viridis", "inferno", "jet", "gray"] = "viridis"


def _layer(model: LoadedModel, params: ActivationMapsParams, objective: Objective | None) -> str:
    """The layer shown: the objective's (channel, layer norm), else the params'."""
    own = objective.layer if isinstance(objective, Channel | LayerNorm) else None
    if own is not None and params.layer is not None and params.layer != own:
        raise InvalidParams(
            f"`layer` {params.layer!r} and the objective's layer {own!r} differ: leave "
            "`layer` out, or name the same one.",
            details={"layer": params.layer, "objective_layer": own},
        )
    return resolve_layer(model, own or params.layer)


def _count(model: LoadedModel, layer: str) -> int | None:
    shape = model.layer_shapes().get(layer, ())
    axis = 3 if model.channels_last else 1
    count = shape[axis] if len(shape) == 4 else None
    return count if isinstance(count, int) and count > 0 else None


def check(params: ActivationMapsParams, model: LoadedModel) -> None:
    """The params' own layer (channels are checked against the layer shown once the
    objective is known: :func:`check_objective`)."""
    if params.layer is not None:
        resolve_layer(model, params.layer)


def check_objective(params: ActivationMapsParams, model: LoadedModel, objective: Objective) -> None:
    layer = _layer(model, params, objective)
    count = _count(model, layer)
    if params.channels is not None and count is not None:
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
    layer = _layer(model, params, objective)
    x = model.to_model_input(image.pixels[None])
    value, logits = model.probe(x, [layer])
    progress(1.0)
    return _maps(model, image, objective, params, layer, value, logits)


def activation_maps_batch(
    model: LoadedModel,
    images: list[ImageInput],
    objectives: list[Objective],
    params: ActivationMapsParams,
) -> list[Result]:
    """Activation maps of several images, each with its own objective: one forward pass
    per layer shown (one in all unless the objectives name different layers)."""
    by_layer: dict[str, list[int]] = {}
    for i, o in enumerate(objectives):
        by_layer.setdefault(_layer(model, params, o), []).append(i)
    results: dict[int, Result] = {}
    for layer, idxs in by_layer.items():
        x = model.to_model_input(np.stack([images[i].pixels for i in idxs]))
        value, logits = model.probe(x, [layer])
        for k, i in enumerate(idxs):
            results[i] = _maps(
                model, images[i], objectives[i], params, layer,
                value[k : k + 1], logits[k : k + 1],
            )
    return [results[i] for i in range(len(images))]


def _maps(
    model: LoadedModel,
    image: ImageInput,
    objective: Objective,
    params: ActivationMapsParams,
    layer: str,
    value: NDArray[np.float32],
    logits: NDArray[np.float32],
) -> Result:
    """One image's result from its layer value (1, ...) and output (1, ...)."""
    a = to_chw(value, model)
    k = a.shape[0]
    flat = a.reshape(k, -1)
    means = flat.mean(axis=1)
    if params.channels is not None:
        _check_channels(params.channels, layer, k)
    if isinstance(objective, Channel):
        _check_channels([objective.channel], layer, k)
        chosen = list(dict.fromkeys([objective.channel, *(params.channels or [])]))
    elif params.channels is not None and not isinstance(objective, LayerNorm):
        chosen = list(params.channels)
    else:
        chosen = [int(c) for c in np.argsort(-means, kind="stable")[: params.top_k]]
    maps = a[chosen]
    table = ColumnTable.of("channel_stats", {
        "channel": np.arange(k),
        "mean": means,
        "max": flat.max(axis=1),
        "min": flat.min(axis=1),
        "std": flat.std(axis=1),
        "active_fraction": (flat > 0).mean(axis=1),
    })
    return Result(
        [
            AttributionMap("attribution", upsample(maps.mean(axis=0), image.height, image.width)),
            ImageArtifact("grid", channel_grid(maps, params.colormap), f"{layer}: {chosen}"),
            table,
        ],
        model_calls=1,
        views={"png": "grid"},
        output=logits.reshape(logits.shape[0], -1),
        extras={"layer": layer, "layer_shape": list(a.shape), "channels": chosen},
    )


SPEC = register(
    MethodSpec(
        name="activation_maps",
        params_model=ActivationMapsParams,
        fn=activation_maps,
        description="A layer's channels (top-k by mean activation, or chosen: by params, or "
        "by a channel or layer-norm objective) as a grid PNG, with per-channel statistics "
        "(the channel_stats table).",
        kind="activation",
        execution="sync",
        objectives=("class", "channel", "layer_norm"),
        check=check,
        check_objective=check_objective,
        batch_fn=activation_maps_batch,
    )
)
