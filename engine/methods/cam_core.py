"""What the CAM methods share: a layer's activation and gradient, and their weighted sum."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from engine.artifacts import AttributionMap, Result
from engine.methods.backprop import gradients, gradients_per_item
from engine.methods.layer_maps import resolve_layer, to_chw, upsample
from engine.modalities.image import ImageInput
from engine.models.runtime import LoadedModel
from engine.objectives import Objective, class_index

#: A gradient CAM's channel weights (C,) from the layer's activation and gradient (C, h, w).
ChannelWeights = Callable[[NDArray[np.float32], NDArray[np.float32]], NDArray[np.float32]]


class LayerParams(Protocol):
    @property
    def layer(self) -> str | None: ...


class CamParams(LayerParams, Protocol):
    @property
    def relu(self) -> bool: ...


def layer_gradients(
    model: LoadedModel, image: ImageInput, objective: Objective, params: LayerParams
) -> tuple[str, NDArray[np.float32], NDArray[np.float32], NDArray[np.float32], int]:
    """(layer, activation (C, h, w), gradient (C, h, w), the output, passes)."""
    layer = resolve_layer(model, params.layer)
    x = model.to_model_input(image.pixels[None])
    out, g, a, passes = gradients(model, x, objective, wrt=layer)
    assert a is not None
    return layer, to_chw(a, model), to_chw(g, model), out, passes


def layer_gradients_batch(
    model: LoadedModel, images: list[ImageInput], objectives: list[Objective], params: LayerParams
) -> tuple[
    str, list[NDArray[np.float32]], list[NDArray[np.float32]], NDArray[np.float32], list[int]
]:
    """:func:`layer_gradients` of several images, each with its own objective, from one VJP
    over the stacked images: (layer, activations (C, h, w) and gradients per image, the
    outputs (N, ...), passes per image)."""
    layer = resolve_layer(model, params.layer)
    x = model.to_model_input(np.stack([im.pixels for im in images]))
    out, g, a, passes = gradients_per_item(model, x, objectives, wrt=layer)
    assert a is not None
    n = len(images)
    acts = [to_chw(a[i : i + 1], model) for i in range(n)]
    grads = [to_chw(g[i : i + 1], model) for i in range(n)]
    return layer, acts, grads, out, passes


def gradient_cam(
    model: LoadedModel,
    image: ImageInput,
    objective: Objective,
    params: CamParams,
    weights: ChannelWeights,
) -> Result:
    """A gradient CAM of one image: the layer's channels weighted by ``weights``."""
    class_index(objective)
    layer, a, g, out, passes = layer_gradients(model, image, objective, params)
    return cam_result(image, layer, a, weights(a, g), out, passes, params.relu)


def cam_batch(
    model: LoadedModel,
    images: list[ImageInput],
    objectives: list[Objective],
    params: CamParams,
    weights: ChannelWeights,
) -> list[Result]:
    """The batch entry point of the gradient CAM methods: each image for its own class,
    from one VJP (:func:`layer_gradients_batch`), its channels weighted by ``weights``."""
    for objective in objectives:
        class_index(objective)
    layer, acts, grads, out, passes = layer_gradients_batch(model, images, objectives, params)
    return [
        cam_result(image, layer, a, weights(a, g), out[i : i + 1], passes[i], params.relu)
        for i, (image, a, g) in enumerate(zip(images, acts, grads, strict=True))
    ]


def cam_result(
    image: ImageInput,
    layer: str,
    a: NDArray[np.float32],
    weights: NDArray[np.float32],
    out: NDArray[np.float32],
    passes: int,
    relu: bool,
) -> Result:
    """The map (upsampled to the image, and at the layer's size) of weighted channels."""
    m = combine(weights, a, relu)
    return Result(
        [
            AttributionMap("attribution", upsample(m, image.height, image.width)),
            AttributionMap("cam", m),
        ],
        model_calls=passes,
        extras={"layer": layer, "layer_shape": list(a.shape), "backward_passes": 1},
        output=out,
    )


def combine(
    weights: NDArray[np.float32], a: NDArray[np.float32], relu: bool
) -> NDArray[np.float32]:
    m = np.tensordot(weights, a, axes=(0, 0)).astype(np.float32)
    return np.maximum(m, 0.0) if relu else m
