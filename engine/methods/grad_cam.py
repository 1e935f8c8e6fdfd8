"""Grad-CAM (Selvaraju et al., 2017): feature maps weighted by their mean gradient."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

from engine.artifacts import AttributionMap, Result
from engine.methods.base import MethodSpec, Progress
from engine.methods.cam_core import cam_batch, combine, layer_gradients
from engine.methods.layer_maps import resolve_layer, upsample
from engine.methods.registry import register
from engine.modalities.image import ImageInput
from engine.models.runtime import LoadedModel
from engine.objectives import Objective, ScoreKind, class_index


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
    class_index(objective)
    layer, a, g, out, passes = layer_gradients(model, image, objective, params)
    progress(1.0)
    return _result(image, layer, a, g, out, passes, params)


def grad_cam_batch(
    model: LoadedModel,
    images: list[ImageInput],
    objectives: list[Objective],
    params: GradCamParams,
) -> list[Result]:
    """Grad-CAM of several images, each for its own class, from one VJP."""
    return cam_batch(
        model, images, objectives, params,
        lambda image, layer, a, g, out, passes: _result(image, layer, a, g, out, passes, params),
    )


def _result(
    image: ImageInput,
    layer: str,
    a: NDArray[np.float32],
    g: NDArray[np.float32],
    out: NDArray[np.float32],
    passes: int,
    params: GradCamParams,
) -> Result:
    m = combine(g.mean(axis=(1, 2)), a, params.relu)
    return Result(
        [
            AttributionMap("attribution", upsample(m, image.height, image.width)),
            AttributionMap("cam", m),
        ],
        model_calls=passes,
        extras={"layer": layer, "layer_shape": list(a.shape), "backward_passes": 1},
        output=out,
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
        batch_fn=grad_cam_batch,
    )
)
