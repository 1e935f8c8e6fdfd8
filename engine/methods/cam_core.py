"""What the CAM methods share: a layer's activation and gradient, and their weighted sum."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from engine.artifacts import Result
from engine.methods.backprop import gradients, gradients_per_item
from engine.methods.layer_maps import resolve_layer, to_chw
from engine.modalities.image import ImageInput
from engine.models.runtime import LoadedModel
from engine.objectives import Objective, class_index

#: A CAM method's result from (image, layer, activation, gradient, output, passes).
CamResult = Callable[
    [ImageInput, str, NDArray[np.float32], NDArray[np.float32], NDArray[np.float32], int], Result
]


class LayerParams(Protocol):
    @property
    def layer(self) -> str | None: ...


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


def cam_batch(
    model: LoadedModel,
    images: list[ImageInput],
    objectives: list[Objective],
    params: LayerParams,
    result: CamResult,
) -> list[Result]:
    """The batch entry point of the gradient CAM methods: each image for its own class,
    from one VJP (:func:`layer_gradients_batch`), made a result by ``result``."""
    for objective in objectives:
        class_index(objective)
    layer, acts, grads, out, passes = layer_gradients_batch(model, images, objectives, params)
    return [
        result(image, layer, a, g, out[i : i + 1], passes[i])
        for i, (image, a, g) in enumerate(zip(images, acts, grads, strict=True))
    ]


def combine(
    weights: NDArray[np.float32], a: NDArray[np.float32], relu: bool
) -> NDArray[np.float32]:
    m = np.tensordot(weights, a, axes=(0, 0)).astype(np.float32)
    return np.maximum(m, 0.0) if relu else m
