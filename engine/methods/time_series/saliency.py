"""Saliency for series: the gradient of the target's score w.r.t. every (channel, step)."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from engine.artifacts import Result
from engine.methods.base import MethodSpec, Progress
from engine.methods.registry import register
from engine.methods.time_series.common import (
    MODALITY,
    input_gradient,
    require_fixed_length,
    series_result,
)
from engine.modalities.time_series import SeriesInput
from engine.models.runtime import LoadedModel
from engine.objectives import Objective, ScoreKind, class_index


class SeriesSaliencyParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    absolute: bool = Field(default=True, description="|gradient| (Simonyan) or signed.")
    reduce_channels: Literal["none", "sum", "max"] = Field(
        default="none",
        description='"none": one row per channel (channel, time); "sum"/"max": one map over '
        "time (of |g| when absolute).",
    )
    score: ScoreKind = "logit"


def check(params: SeriesSaliencyParams, model: LoadedModel) -> None:
    require_fixed_length(model, "saliency")
    model.check_gradients()


def saliency(
    model: LoadedModel,
    item: SeriesInput,
    objective: Objective,
    params: SeriesSaliencyParams,
    progress: Progress,
) -> Result:
    class_index(objective)
    out, g, passes = input_gradient(model, item.values[None], objective)
    m = np.abs(g[0]) if params.absolute else g[0]
    if params.reduce_channels == "sum":
        m = m.sum(axis=0)
    elif params.reduce_channels == "max":
        m = m.max(axis=0)
    progress(1.0)
    return series_result(
        model, item, m, extras={"backward_passes": 1}, model_calls=passes, output=out
    )


SPEC = register(
    MethodSpec(
        name="saliency",
        params_model=SeriesSaliencyParams,
        fn=saliency,
        description="Vanilla gradient saliency over time: |d score / d x[c, t]|.",
        kind="gradient",
        execution="sync",
        modalities=MODALITY,
        check=check,
    )
)
