"""Integrated gradients (Sundararajan et al., 2017).

attribution = (x - x') ⊙ ∫₀¹ ∇f(x' + α (x - x')) dα, the integral by a Riemann sum or
Gauss–Legendre quadrature, all in the model's input space. The path is batched through the
gradient model. The result reports the completeness delta:
Σ attribution − (f(x) − f(x')), which the axiom says is 0.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

from engine.methods.backprop import Reduce, gradients, reduce_channels, score_of
from engine.methods.base import Attribution, ImageInput, MethodSpec, Progress
from engine.methods.baselines import baseline_pixels
from engine.methods.registry import register
from engine.methods.scoring import ScoreKind
from engine.models.runtime import LoadedModel

Rule = Literal[
    "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid", "gausslegendre"
]


class IntegratedGradientsParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    steps: int = Field(default=50, ge=2, le=1024, description="Points on the path.")
    baseline: Literal["zero", "mean", "blur", "uniform"] = Field(
        default="zero", description="Black image, mean colour, blurred image, or uniform noise."
    )
    blur_radius: float = Field(default=10.0, gt=0, le=100)
    method: Rule = Field(default="gausslegendre", description="Quadrature rule.")
    internal_batch_size: int = Field(default=16, ge=1, le=256)
    reduce: Reduce = Field(default="signed", description="How channels are combined.")
    score: ScoreKind = "logit"
    seed: int = Field(default=0, ge=0, description="For the uniform-noise baseline.")


def quadrature(rule: Rule, n: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Points α in [0, 1] and weights summing to 1."""
    if rule == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(n)
        return (nodes + 1.0) / 2.0, weights / 2.0
    if rule == "riemann_trapezoid":
        alphas = np.linspace(0.0, 1.0, n)
        w = np.full(n, 1.0 / (n - 1))
        w[0] = w[-1] = 0.5 / (n - 1)
        return alphas, w
    offset = {"riemann_left": 0.0, "riemann_right": 1.0, "riemann_middle": 0.5}[rule]
    return (np.arange(n) + offset) / n, np.full(n, 1.0 / n)


def check(params: IntegratedGradientsParams, model: LoadedModel) -> None:
    model.check_gradients()


def baseline_for(image: ImageInput, params: IntegratedGradientsParams) -> NDArray[np.float32]:
    if params.baseline == "uniform":
        rng = np.random.default_rng(params.seed)
        return rng.uniform(0.0, 255.0, image.pixels.shape).astype(np.float32)
    return baseline_pixels(image.pixels, params.baseline, params.blur_radius)


def integrated_gradients(
    model: LoadedModel,
    image: ImageInput,
    target: int,
    params: IntegratedGradientsParams,
    progress: Progress,
) -> Attribution:
    x = model.to_model_input(image.pixels[None])
    xb = model.to_model_input(baseline_for(image, params)[None])
    ends = score_of(model.run(np.concatenate([x, xb])), target, params.score)
    passes = 2
    alphas, weights = quadrature(params.method, params.steps)
    total = np.zeros_like(x, dtype=np.float64)
    step = params.internal_batch_size
    for start in range(0, len(alphas), step):
        a = alphas[start : start + step].astype(np.float32).reshape(-1, 1, 1, 1)
        path = xb + a * (x - xb)
        _, g, _, used = gradients(model, path.astype(np.float32), target, params.score)
        passes += used
        w = weights[start : start + step].reshape(-1, 1, 1, 1)
        total += (g.astype(np.float64) * w).sum(axis=0, keepdims=True)
        progress(min(1.0, (start + len(a)) / len(alphas)))
    attr = ((x - xb).astype(np.float64) * total).astype(np.float32)
    expected = float(ends[0] - ends[1])
    delta = float(attr.astype(np.float64).sum() - expected)
    return Attribution(
        values=reduce_channels(attr, model, params.reduce),
        model_calls=passes,
        extras={
            "backward_passes": params.steps,
            "completeness_delta": delta,
            "completeness_error": abs(delta) / max(abs(expected), 1e-12),
            "f_x": float(ends[0]),
            "f_baseline": float(ends[1]),
        },
    )


def cost(params: IntegratedGradientsParams, model: LoadedModel) -> int:
    return 2 + params.steps * (2 if params.score == "probability" else 1)


SPEC = register(
    MethodSpec(
        name="integrated_gradients",
        params_model=IntegratedGradientsParams,
        fn=integrated_gradients,
        description="Integrated gradients along a straight path from a baseline; reports the "
        "completeness delta.",
        kind="gradient",
        execution="job",
        check=check,
        cost=cost,
    )
)
