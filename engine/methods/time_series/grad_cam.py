"""Grad-CAM on 1-D convolutions: a (batch, channels, time) layer's maps weighted by their
time-averaged gradients, ReLU, upsampled linearly along time to the input's length."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from engine.artifacts import AttributionMap, Result
from engine.methods.backprop import gradients
from engine.methods.base import MethodSpec, Progress
from engine.methods.cam_core import combine
from engine.methods.registry import register
from engine.methods.time_series.common import (
    MODALITY,
    codec_of,
    require_fixed_length,
    resolve_series_layer,
    series_result,
    upsample_time,
)
from engine.modalities.time_series import SeriesInput
from engine.models.runtime import LoadedModel
from engine.objectives import Objective, ScoreKind, class_index


class SeriesGradCamParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    layer: str | None = Field(
        default=None,
        description="A rank-3 (batch, channels, time) layer; default: the last one before "
        "global pooling.",
    )
    relu: bool = True
    score: ScoreKind = "logit"


def check(params: SeriesGradCamParams, model: LoadedModel) -> None:
    require_fixed_length(model, "grad_cam")
    model.check_gradients(resolve_series_layer(model, params.layer))


def grad_cam(
    model: LoadedModel,
    item: SeriesInput,
    objective: Objective,
    params: SeriesGradCamParams,
    progress: Progress,
) -> Result:
    class_index(objective)
    layer = resolve_series_layer(model, params.layer)
    x = codec_of(model).item_input(item)
    out, g, a, passes = gradients(model, x, objective, wrt=layer)
    assert a is not None
    acts, grads = a[0], g[0]  # (K, t): ONNX Conv layout
    m = combine(grads.mean(axis=1), acts, params.relu)
    progress(1.0)
    return series_result(
        model,
        item,
        upsample_time(m, item.length),
        extras={"layer": layer, "layer_shape": list(a.shape), "backward_passes": 1},
        model_calls=passes,
        output=out,
        more=[AttributionMap("cam", m, ("time",))],
    )


SPEC = register(
    MethodSpec(
        name="grad_cam",
        params_model=SeriesGradCamParams,
        fn=grad_cam,
        description="Grad-CAM on 1-D conv layers: maps weighted by their time-averaged "
        "gradients, ReLU, upsampled linearly along time.",
        kind="cam",
        execution="sync",
        modalities=MODALITY,
        check=check,
    )
)
