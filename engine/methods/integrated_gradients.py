"""Integrated gradients (Sundararajan et al., 2017).

attribution = (x - x') ⊙ ∫₀¹ ∇f(x' + α (x - x')) dα, the integral by a Riemann sum or
Gauss–Legendre quadrature, all in the model's input space. The path is batched through the
gradient model. The result reports the completeness delta:
Σ attribution − (f(x) − f(x')), which the axiom says is 0.

With ``tolerance``, the trapezoid rule is refined until the relative completeness error is
at most that: each round halves every interval, so the points of the last round are kept
and only the new midpoints are evaluated (n, 2n − 1, 4n − 3, … points, up to
``max_steps``). The delta stays an independent check: it is measured after each round,
never imposed, and the result says how many points it took and the error after each round.
On piecewise-linear networks the integrand is a step function with many jumps, so the error
falls roughly as 1/n rather than as fast as the rule's order promises.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

from engine.artifacts import AttributionMap, Result
from engine.errors import InvalidParams
from engine.methods.backprop import Reduce, gradients, reduce_channels
from engine.methods.base import MethodSpec, Progress
from engine.methods.registry import register
from engine.modalities.baselines import baseline_pixels
from engine.modalities.image import ImageInput
from engine.models.runtime import LoadedModel
from engine.objectives import ALL_OBJECTIVES, Objective, ScoreKind, objective_tensor

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
    method: Rule | None = Field(
        default=None,
        description="Quadrature rule; by default gausslegendre, or riemann_trapezoid (the only "
        "one allowed) with a tolerance.",
    )
    internal_batch_size: int | None = Field(
        default=None,
        ge=1,
        le=256,
        description="Images per VJP call; default: the model's measured best VJP batch.",
    )
    reduce: Reduce = Field(default="signed", description="How channels are combined.")
    score: ScoreKind = "logit"
    seed: int = Field(default=0, ge=0, description="For the uniform-noise baseline.")
    tolerance: float | None = Field(
        default=None,
        gt=0,
        lt=1,
        description="Refine the path (trapezoid rule, intervals halved each round) until "
        "|Σ attributions − (f(x) − f(x'))| ≤ tolerance · |f(x) − f(x')|, or max_steps is "
        "reached. The rule is then riemann_trapezoid (the default with a tolerance).",
    )
    max_steps: int = Field(
        default=1024, ge=2, le=4096, description="With tolerance: the most points on the path."
    )


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


def rule_of(params: IntegratedGradientsParams) -> Rule:
    """The quadrature rule: with a tolerance, the trapezoid rule (whose points nest when
    the intervals are halved) unless another one was asked for, which is refused."""
    if params.tolerance is None:
        return params.method or "gausslegendre"
    if params.method not in (None, "riemann_trapezoid"):
        raise InvalidParams(
            f"tolerance refines the path by halving its intervals, which only the "
            f"riemann_trapezoid rule allows (its points nest); got method {params.method!r}. "
            f"Set method to riemann_trapezoid (or leave it out), or drop tolerance.",
            details={"method": params.method, "tolerance": params.tolerance},
        )
    if params.steps > params.max_steps:
        raise InvalidParams(
            f"steps ({params.steps}) is where the refinement starts and must not exceed "
            f"max_steps ({params.max_steps}). Lower steps or raise max_steps.",
            details={"steps": params.steps, "max_steps": params.max_steps},
        )
    return "riemann_trapezoid"


def schedule(params: IntegratedGradientsParams) -> list[int]:
    """Points on the path after each round: [steps] without a tolerance, else steps,
    2·steps − 1, … while within max_steps."""
    sizes = [params.steps]
    if params.tolerance is not None:
        while 2 * sizes[-1] - 1 <= params.max_steps:
            sizes.append(2 * sizes[-1] - 1)
    return sizes


def check(params: IntegratedGradientsParams, model: LoadedModel) -> None:
    rule_of(params)
    model.check_gradients()


def baseline_for(image: ImageInput, params: IntegratedGradientsParams) -> NDArray[np.float32]:
    if params.baseline == "uniform":
        rng = np.random.default_rng(params.seed)
        return rng.uniform(0.0, 255.0, image.pixels.shape).astype(np.float32)
    return baseline_pixels(image.pixels, params.baseline, params.blur_radius)


def integrated_gradients(
    model: LoadedModel,
    image: ImageInput,
    objective: Objective,
    params: IntegratedGradientsParams,
    progress: Progress,
) -> Result:
    rule = rule_of(params)
    x = model.to_model_input(image.pixels[None])
    xb = model.to_model_input(baseline_for(image, params)[None])
    ends = objective.value(
        model.tensor_values(np.concatenate([x, xb]), objective_tensor(objective, model))
    )
    expected = float(ends[0] - ends[1])
    sizes = schedule(params)
    budget = sizes[-1]
    passes = 2
    done = 0

    def path_sum(alphas: NDArray[np.float64], weights: NDArray[np.float64]) -> NDArray[np.float64]:
        """Σ_k weights[k] · ∇f(x' + alphas[k] (x − x')), in batches."""
        nonlocal passes, done
        total = np.zeros_like(x, dtype=np.float64)
        step = params.internal_batch_size or model.preferred_vjp_batch()
        for start in range(0, len(alphas), step):
            a = alphas[start : start + step].astype(np.float32).reshape(-1, 1, 1, 1)
            path = xb + a * (x - xb)
            _, g, _, used = gradients(model, path.astype(np.float32), objective)
            passes += used
            w = weights[start : start + step].reshape(-1, 1, 1, 1)
            total += (g.astype(np.float64) * w).sum(axis=0, keepdims=True)
            done += len(a)
            progress(min(1.0, done / budget))
        return total

    def error_of(integral: NDArray[np.float64]) -> tuple[NDArray[np.float32], float]:
        attr = ((x - xb).astype(np.float64) * integral).astype(np.float32)
        return attr, float(attr.astype(np.float64).sum() - expected)

    if params.tolerance is None:
        alphas, weights = quadrature(rule, params.steps)
        attr, delta = error_of(path_sum(alphas, weights))
        rounds: list[dict[str, float]] = []
    else:
        # trapezoid with n points: (Σ gradients, the two ends weighted ½) / (n − 1); halving
        # every interval adds the n − 1 midpoints to that sum with weight 1
        n = sizes[0]
        ends_half = np.ones(n)
        ends_half[[0, -1]] = 0.5
        running = path_sum(np.linspace(0.0, 1.0, n), ends_half)
        rounds = []
        while True:
            attr, delta = error_of(running / (n - 1))
            rounds.append({"steps": n, "completeness_error": abs(delta) / _scale(expected)})
            if rounds[-1]["completeness_error"] <= params.tolerance or 2 * n - 1 > budget:
                break
            running += path_sum((np.arange(n - 1) + 0.5) / (n - 1), np.ones(n - 1))
            n = 2 * n - 1
    steps = rounds[-1]["steps"] if rounds else params.steps
    extras: dict[str, object] = {
        "backward_passes": int(steps),
        "completeness_delta": delta,
        "completeness_error": abs(delta) / _scale(expected),
        "f_x": float(ends[0]),
        "f_baseline": float(ends[1]),
        "steps": int(steps),
        "method": rule,
    }
    if params.tolerance is not None:
        extras["rounds"] = rounds
        extras["tolerance_met"] = rounds[-1]["completeness_error"] <= params.tolerance
    if done < budget:
        progress(1.0)  # the tolerance was met before the last round
    return Result(
        [AttributionMap("attribution", reduce_channels(attr, model, params.reduce))],
        model_calls=passes,
        extras=extras,
    )


def _scale(expected: float) -> float:
    return max(abs(expected), 1e-12)


def cost(params: IntegratedGradientsParams, model: LoadedModel) -> int:
    """Exact without a tolerance; with one, the most it can take (every round run)."""
    return 2 + schedule(params)[-1] * (2 if params.score == "probability" else 1)


SPEC = register(
    MethodSpec(
        name="integrated_gradients",
        params_model=IntegratedGradientsParams,
        fn=integrated_gradients,
        description="Integrated gradients along a straight path from a baseline; reports the "
        "completeness delta.",
        kind="gradient",
        execution="job",
        objectives=ALL_OBJECTIVES,
        check=check,
        cost=cost,
    )
)
