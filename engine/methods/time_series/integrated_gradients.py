"""Integrated gradients for series (Sundararajan et al., 2017): (x − x') ⊙ ∫ ∇f along the
straight path from a baseline series, by Gauss–Legendre or a Riemann rule, batched. The
result reports the completeness delta Σ attribution − (f(x) − f(x'))."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from engine.artifacts import Result
from engine.methods.base import MethodSpec, Progress
from engine.methods.integrated_gradients import Rule, quadrature
from engine.methods.registry import register
from engine.methods.time_series.common import (
    MODALITY,
    codec_of,
    input_gradient,
    require_fixed_length,
    series_result,
)
from engine.modalities.time_series import SeriesInput
from engine.models.runtime import LoadedModel
from engine.objectives import Objective, ScoreKind, class_index


class SeriesIntegratedGradientsParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    steps: int = Field(default=64, ge=2, le=1024, description="Points on the path.")
    baseline: Literal["zero", "mean", "blur", "linear"] = Field(
        default="zero",
        description="Zeros, each channel's mean, a moving average (blur_radius steps each "
        "side), or each channel's straight line from first to last value.",
    )
    blur_radius: float = Field(default=5.0, gt=0, le=10_000)
    method: Rule = "gausslegendre"
    internal_batch_size: int = Field(default=32, ge=1, le=256)
    score: ScoreKind = "logit"


def check(params: SeriesIntegratedGradientsParams, model: LoadedModel) -> None:
    require_fixed_length(model, "integrated_gradients")
    model.check_gradients()


def integrated_gradients(
    model: LoadedModel,
    item: SeriesInput,
    objective: Objective,
    params: SeriesIntegratedGradientsParams,
    progress: Progress,
) -> Result:
    class_index(objective)
    codec = codec_of(model)
    x = item.values[None].astype(np.float64)
    xb = codec.baseline(item, params.baseline, params.blur_radius)[None].astype(np.float64)
    both = np.concatenate([x, xb]).astype(np.float32)
    ends = objective.value(model.run(codec.to_model_input(both)))
    expected = float(ends[0] - ends[1])
    alphas, weights = quadrature(params.method, params.steps)
    total = np.zeros_like(x)
    passes = 2
    step = params.internal_batch_size
    for start in range(0, len(alphas), step):
        a = alphas[start : start + step].reshape(-1, 1, 1)
        path = (xb + a * (x - xb)).astype(np.float32)
        _, g, used = input_gradient(model, path, objective)
        passes += used
        w = weights[start : start + step].reshape(-1, 1, 1)
        total += (g.astype(np.float64) * w).sum(axis=0, keepdims=True)
        progress(min(1.0, (start + len(a)) / len(alphas)))
    attr = ((x - xb) * total)[0]
    delta = float(attr.sum() - expected)
    return series_result(
        model,
        item,
        attr.astype(np.float32),
        extras={
            "backward_passes": params.steps,
            "completeness_delta": delta,
            "completeness_error": abs(delta) / max(abs(expected), 1e-12),
            "f_x": float(ends[0]),
            "f_baseline": float(ends[1]),
            "steps": params.steps,
            "method": params.method,
        },
        model_calls=passes,
    )


def cost(params: SeriesIntegratedGradientsParams, model: LoadedModel) -> int:
    return 2 + params.steps * (2 if params.score == "probability" else 1)


SPEC = register(
    MethodSpec(
        name="integrated_gradients",
        params_model=SeriesIntegratedGradientsParams,
        fn=integrated_gradients,
        description="Integrated gradients along a straight path from a baseline series; "
        "reports the completeness delta.",
        kind="gradient",
        execution="job",
        modalities=MODALITY,
        check=check,
        cost=cost,
    )
)
