"""SmoothGrad (Smilkov et al., 2017): gradients averaged over noisy copies of the input."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from engine.artifacts import AttributionMap, Result
from engine.errors import InvalidParams
from engine.methods.backprop import Reduce, gradients, reduce_channels
from engine.methods.base import MethodSpec, Progress
from engine.methods.registry import register
from engine.modalities.image import ImageInput
from engine.models.runtime import LoadedModel
from engine.objectives import ALL_OBJECTIVES, Objective, ScoreKind


class SmoothGradParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    samples: int = Field(default=25, ge=1, le=1024)
    noise: float = Field(
        default=0.15, gt=0, le=1.0, description="Noise σ as a fraction of the input's range."
    )
    squared: bool = Field(default=False, description="Average g² (SmoothGrad-squared).")
    average: Literal["gradient", "abs"] = Field(
        default="gradient",
        description=(
            "What is averaged over the noisy samples, before the channel reduction: "
            "'gradient' the gradient itself (Smilkov et al.); 'abs' |gradient| per element, "
            "as Captum's NoiseTunnel(Saliency(abs=True)). Not allowed with squared: true."
        ),
    )
    reduce: Reduce = Field(default="abs_max", description="How channels are combined.")
    internal_batch_size: int = Field(default=16, ge=1, le=256)
    score: ScoreKind = "logit"
    seed: int = Field(default=0, ge=0)


def _check_params(params: SmoothGradParams) -> None:
    if params.squared and params.average == "abs":
        raise InvalidParams(
            "squared: true (the mean of g², already non-negative) cannot be combined with "
            'average: "abs". Set squared to false, or average to "gradient".',
            details={"squared": params.squared, "average": params.average},
        )


def check(params: SmoothGradParams, model: LoadedModel) -> None:
    _check_params(params)
    model.check_gradients()


def smoothgrad(
    model: LoadedModel,
    image: ImageInput,
    objective: Objective,
    params: SmoothGradParams,
    progress: Progress,
) -> Result:
    _check_params(params)
    x = model.to_model_input(image.pixels[None])
    sigma = params.noise * float(x.max() - x.min())
    rng = np.random.default_rng(params.seed)
    total = np.zeros_like(x, dtype=np.float64)
    passes = 0
    step = params.internal_batch_size
    for start in range(0, params.samples, step):
        n = min(step, params.samples - start)
        noise = rng.standard_normal((n, *x.shape[1:]), dtype=np.float32)
        noisy = x + np.float32(sigma) * noise
        _, g, _, used = gradients(model, noisy, objective)
        passes += used
        g64 = g.astype(np.float64)
        if params.squared:
            g64 = g64 * g64
        elif params.average == "abs":
            g64 = np.abs(g64)
        total += g64.sum(axis=0, keepdims=True)
        progress(min(1.0, (start + n) / params.samples))
    mean = (total / params.samples).astype(np.float32)
    reduce = "abs_sum" if params.squared and params.reduce == "signed" else params.reduce
    return Result(
        [AttributionMap("attribution", reduce_channels(mean, model, reduce))],
        model_calls=passes,
        extras={"backward_passes": params.samples, "sigma": sigma, "average": params.average},
    )


def cost(params: SmoothGradParams, model: LoadedModel) -> int:
    return params.samples * (2 if params.score == "probability" else 1)


SPEC = register(
    MethodSpec(
        name="smoothgrad",
        params_model=SmoothGradParams,
        fn=smoothgrad,
        description="SmoothGrad: the mean gradient over Gaussian-noised copies of the input.",
        kind="gradient",
        execution="job",
        objectives=ALL_OBJECTIVES,
        check=check,
        cost=cost,
    )
)
