"""Semantic dictionary (Olah et al., "The Building Blocks of Interpretability", Distill
2018): at each position of a layer, the image's top-n channels by activation, each shown
by its feature visualisation.

The thumbnails are ``feature_visualisation``'s images of the channels (the same params:
``size``, ``steps``, ``learning_rate``, ``transforms``, ``decorrelate``, ``seed``), read from
the thumbnail cache under the data dir (:mod:`engine.visualisation.cache`) — keyed by
(model version, layer, channel, params), filled by ``feature_visualisation`` of a channel
as well as by this method — and optimised, in batches, only for the channels not there.
So a second dictionary of the same layer costs its one forward pass (``model_calls`` 1).

Answer: ``dictionary`` (per position: channels and activations, largest first;
``?format=overlay`` the image with the layer's grid), ``sheet`` (a PNG: each position's
thumbnails in its cell), ``channel_<c>`` (each channel's thumbnail).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from engine.artifact_types.inside import Dictionary
from engine.artifacts import Artifact, ImageArtifact, Result
from engine.errors import InvalidParams
from engine.methods.base import MethodSpec, Progress, ScaledProgress
from engine.methods.layer_maps import to_chw
from engine.methods.registry import register
from engine.modalities.image import ImageInput
from engine.models.runtime import LoadedModel
from engine.objectives import Channel, Objective, ScoreKind
from engine.visualisation.cache import thumbnail_cache, thumbnail_key
from engine.visualisation.grid import to_uint8
from engine.visualisation.layers import check_size, layer_dims, spatial_layer
from engine.visualisation.optimise import Settings, optimise

#: Channels optimised together (one batch per step).
BATCH = 16
#: Most distinct channels one dictionary may show (each a visualisation to optimise).
MAX_UNITS = 256
#: Side of a thumbnail in the sheet, in pixels.
SHEET_THUMB = 32


class SemanticDictionaryParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    layer: str | None = Field(
        default=None,
        description="A spatial layer; default: the last spatial layer before global pooling.",
    )
    top_n: int = Field(default=4, ge=1, le=16, description="Channels shown per position.")
    size: int = Field(default=128, ge=8, le=4096,
                      description="Side of each thumbnail (feature_visualisation's `size`).")
    steps: int = Field(default=512, ge=1, le=4096,
                       description="Optimisation steps of a thumbnail not in the cache.")
    learning_rate: float = Field(default=0.05, gt=0.0, le=10.0, description="Adam's step.")
    transforms: bool = Field(default=True, description="Lucid's random transforms.")
    decorrelate: bool = Field(default=True, description="Lucid's colour decorrelation.")
    seed: int = Field(default=0, ge=0, le=2**32 - 1, description="The visualisations' seed.")
    score: ScoreKind = Field(default="logit", description="Unused (the target's score).")


def settings_of(params: SemanticDictionaryParams) -> Settings:
    return Settings(size=params.size, steps=params.steps, learning_rate=params.learning_rate,
                    transforms=params.transforms, decorrelate=params.decorrelate,
                    seed=params.seed)


def max_units(params: SemanticDictionaryParams, model: LoadedModel) -> int:
    """Distinct channels the dictionary can show at most: min(channels, positions × n)."""
    layer = spatial_layer(model, params.layer)
    c, h, w = layer_dims(model, layer)
    bound = params.top_n * (h * w if h is not None and w is not None else 1)
    if c is not None:
        bound = min(bound, c)
    return bound


def cost(params: SemanticDictionaryParams, model: LoadedModel) -> int:
    """The forward pass, and (at most: cached thumbnails cost nothing) a step per
    channel per step."""
    return 1 + max_units(params, model) * params.steps


def check(params: SemanticDictionaryParams, model: LoadedModel) -> None:
    layer = spatial_layer(model, params.layer)
    check_size(params.size, model)
    c, _, _ = layer_dims(model, layer)
    if c is not None and params.top_n > c:
        raise InvalidParams(
            f"top_n {params.top_n} is more than layer {layer!r}'s {c} channels.",
            details={"top_n": params.top_n, "channels": c},
        )
    units = max_units(params, model)
    if units > MAX_UNITS:
        raise InvalidParams(
            f"Layer {layer!r} with top_n {params.top_n} may show {units} distinct channels; "
            f"at most {MAX_UNITS} are drawn. Lower `top_n` or pick a smaller layer.",
            details={"units": units, "limit": MAX_UNITS},
        )
    model.check_gradients(output=layer)


def top_channels(a: NDArray[np.float32], n: int) -> tuple[NDArray[np.int32], NDArray[np.float32]]:
    """(C, h, w) activations -> channels (h, w, n) by activation, largest first (ties: the
    lower channel), and their values."""
    order = np.argsort(-a, axis=0, kind="stable")[:n]  # (n, h, w)
    values = np.take_along_axis(a, order, axis=0)
    return (np.ascontiguousarray(order.transpose(1, 2, 0), np.int32),
            np.ascontiguousarray(values.transpose(1, 2, 0), np.float32))


def sheet(channels: NDArray[np.int32], thumbs: dict[int, NDArray[np.uint8]],
          thumb: int = SHEET_THUMB, gap: int = 1, border: int = 3) -> NDArray[np.uint8]:
    """Each position's thumbnails as a small grid in its cell, cells laid out as the layer's
    positions (row y, column x), on white."""
    h, w, n = channels.shape
    cols = max(1, math.ceil(math.sqrt(n)))
    rows = max(1, math.ceil(n / cols))
    small = {
        c: np.asarray(Image.fromarray(p, mode="RGB").resize((thumb, thumb),
                                                            Image.Resampling.BILINEAR))
        for c, p in thumbs.items()
    }
    cw, ch = cols * (thumb + gap) - gap, rows * (thumb + gap) - gap
    out = np.full((h * (ch + border) + border, w * (cw + border) + border, 3), 255, np.uint8)
    for y in range(h):
        for x in range(w):
            oy, ox = border + y * (ch + border), border + x * (cw + border)
            for r in range(n):
                py, px = divmod(r, cols)
                ty, tx = oy + py * (thumb + gap), ox + px * (thumb + gap)
                out[ty : ty + thumb, tx : tx + thumb] = small[int(channels[y, x, r])]
    return out


def semantic_dictionary(
    model: LoadedModel,
    image: ImageInput,
    objective: Objective,
    params: SemanticDictionaryParams,
    progress: Progress,
) -> Result:
    check(params, model)
    layer = spatial_layer(model, params.layer)
    x = model.to_model_input(image.pixels[None])
    value, logits = model.probe(x, [layer])
    a = to_chw(value, model)
    channels, values = top_channels(a, params.top_n)
    units = sorted({int(c) for c in channels.reshape(-1)})
    settings = settings_of(params)
    cache = thumbnail_cache(model)
    keys = {c: thumbnail_key(model.version, layer, c, settings) for c in units}
    thumbs: dict[int, NDArray[np.uint8]] = {}
    for c in units:
        hit = cache.get(keys[c])
        if hit is not None and hit.shape[:2] == (params.size, params.size):
            thumbs[c] = hit
    missing = [c for c in units if c not in thumbs]
    progress(0.02)
    passes = 1
    axis = -1 if model.channels_last else 1
    batches = [missing[i : i + BATCH] for i in range(0, len(missing), BATCH)]
    for b, batch in enumerate(batches):
        share = 0.97 / len(batches)
        run = optimise(model, [Channel(layer, axis, c) for c in batch], batch, settings,
                       ScaledProgress(progress, 0.02 + b * share, share))
        passes += run.passes
        for i, c in enumerate(batch):
            thumbs[c] = to_uint8(run.rgb[i])
            cache.put(keys[c], thumbs[c])
    progress(1.0)
    names = [f"channel_{c}" for c in units]
    artifacts: list[Artifact] = [
        Dictionary("dictionary", channels, values, units, names, layer),
        ImageArtifact("sheet", sheet(channels, thumbs),
                      f"{layer}: top {params.top_n} channels at each of "
                      f"{channels.shape[0]}×{channels.shape[1]} positions"),
        *(ImageArtifact(name, thumbs[c], f"{layer} channel {c}")
          for name, c in zip(names, units, strict=True)),
    ]
    return Result(
        artifacts,
        model_calls=passes,
        views={"png": "sheet", "overlay": "dictionary"},
        output=logits.reshape(logits.shape[0], -1),
        extras={
            "layer": layer,
            "layer_shape": list(a.shape),
            "units": len(units),
            "thumbnails_cached": len(units) - len(missing),
            "thumbnails_optimised": len(missing),
            "backward_passes": len(missing) * params.steps,
        },
    )


SPEC = register(
    MethodSpec(
        name="semantic_dictionary",
        params_model=SemanticDictionaryParams,
        fn=semantic_dictionary,
        description="Building Blocks' semantic dictionary: at each position of a layer the "
        "image's top-n channels by activation, each with its feature visualisation "
        "(cached, shared with feature_visualisation); JSON and a PNG sheet.",
        kind="visualisation",
        execution="job",
        inputs="item",
        objectives=("class",),
        check=check,
        cost=cost,
    )
)
