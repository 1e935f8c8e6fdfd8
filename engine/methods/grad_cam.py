"""Grad-CAM (Selvaraju et al., 2017): feature maps weighted by their mean gradient."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

from engine.methods.backprop import gradients, resolve_layer, to_chw, upsample
from engine.methods.base import Attribution, MethodSpec, Progress
from engine.methods.registry import register
from engine.methods.scoring import ScoreKind
from engine.modalities.image import ImageInput
from engine.models.runtime import LoadedModel


class GradCamParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    layer: str | None = Field(
        default=None,
        description="A spatial layer (see GET /v1/models/{model}); default: the last one "
        "before global pooling.",
    )
    relu: bool = True
    score: ScoreKind = "logit"


def check(params: GradCamParams, model: LoadedModel) -> None:
    model.check_gradients(resolve_layer(model, params.layer))


def layer_gradients(
    model: LoadedModel, image: ImageInput, target: int, params: GradCamParams
) -> tuple[str, NDArray[np.float32], NDArray[np.float32], int]:
    """(layer, activation (C, h, w), gradient (C, h, w), passes)."""
    layer = resolve_layer(model, params.layer)
    x = model.to_model_input(image.pixels[None])
    _, g, a, passes = gradients(model, x, target, params.score, wrt=layer)
    assert a is not None
    return layer, to_chw(a, model), to_chw(g, model), passes


def combine(
    weights: NDArray[np.float32], a: NDArray[np.float32], relu: bool
) -> NDArray[np.float32]:
    m = np.tensordot(weights, a, axes=(0, 0)).astype(np.float32)
    return np.maximum(m, 0.0) if relu else m


def grad_cam(
    model: LoadedModel, image: ImageInput, target: int, params: GradCamParams, progress: Progress
) -> Attribution:
    layer, a, g, passes = layer_gradients(model, image, target, params)
    m = combine(g.mean(axis=(1, 2)), a, params.relu)
    progress(1.0)
    return Attribution(
        values=upsample(m, image.height, image.width),
        model_calls=passes,
        extras={"layer": layer, "layer_shape": list(a.shape), "backward_passes": 1},
        arrays={"cam": m},
    )


SPEC = register(
    MethodSpec(
        name="grad_cam",
        params_model=GradCamParams,
        fn=grad_cam,
        description="Grad-CAM: a layer's feature maps weighted by their spatially averaged "
        "gradients, ReLU, upsampled bilinearly.",
        kind="cam",
        execution="sync",
        check=check,
    )
)
