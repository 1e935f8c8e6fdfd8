"""Grad-CAM (Selvaraju et al., 2017): feature maps weighted by their mean gradient."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

from engine.artifacts import Result
from engine.methods.base import MethodSpec, Progress
from engine.methods.cam_core import cam_batch, gradient_cam
from engine.methods.layer_maps import resolve_layer
from engine.methods.registry import register
from engine.modalities.image import ImageInput
from engine.models.runtime import LoadedModel
from engine.objectives import Objective, ScoreKind


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


def grad_cam(
    model: LoadedModel,
    image: ImageInput,
    objective: Objective,
    params: GradCamParams,
    progress: Progress,
) -> Result:
    result = gradient_cam(model, image, objective, params, channel_weights)
    progress(1.0)
    return result


def grad_cam_batch(
    model: LoadedModel,
    images: list[ImageInput],
    objectives: list[Objective],
    params: GradCamParams,
) -> list[Result]:
    """Grad-CAM of several images, each for its own class, from one VJP."""
    return cam_batch(model, images, objectives, params, channel_weights)


def channel_weights(a: NDArray[np.float32], g: NDArray[np.float32]) -> NDArray[np.float32]:
    """Each channel's mean gradient."""
    w: NDArray[np.float32] = g.mean(axis=(1, 2))
    return w


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
        batch_fn=grad_cam_batch,
    )
)
