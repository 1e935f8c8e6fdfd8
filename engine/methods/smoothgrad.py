"""SmoothGrad (Smilkov et al., 2017): gradients averaged over noisy copies of the input.

``samples: "auto"`` draws the noisy copies in rounds (:mod:`engine.methods.convergence`)
until the split-half agreement of the map (even against odd samples, each half's mean
gradient reduced over channels) reaches ``agreement``, or ``max_samples`` are used. The
noise is one stream from ``seed`` either way, so the same seed gives the same answer.
The bound takes every pixel of the map as an independent noise dimension; eight groups of
64 samples measured 5,700–25,000 of the 50,176 on the bundled photos, which moves
``agreement_lower`` by at most 0.002. With a non-linear reduction (``abs_max``, the
default) both halves carry the same noise-driven bias, so ``agreement`` overstates the
Pearson r with the converged map: by 0.007–0.019 at 400 samples on three bundled photos
against 3,072-sample maps (bench/RESULTS.md, "SmoothGrad's bound measured"); with a linear
one (``signed``, ``average: gradient``) the map is a plain mean and has no such bias.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from engine.artifacts import AttributionMap, Result
from engine.errors import InvalidParams
from engine.methods.backprop import Reduce, gradients, reduce_channels
from engine.methods.base import MethodSpec, Progress
from engine.methods.convergence import (
    DEFAULT_AGREEMENT,
    Auto,
    Rounds,
    pearson,
    report,
    split_half_estimate,
)
from engine.methods.registry import register
from engine.modalities.image import ImageInput
from engine.models.runtime import LoadedModel
from engine.objectives import ALL_OBJECTIVES, Objective, ScoreKind

#: "auto": the first round and the cap.
AUTO_MIN = 16
AUTO_CAP = 400


class SmoothGradParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    samples: Annotated[int, Field(ge=1, le=1024)] | Auto = Field(
        default=25,
        description='Noisy samples, or "auto": in rounds until the split-half agreement '
        "reaches `agreement` (at most `max_samples`).",
    )
    agreement: float = Field(
        default=DEFAULT_AGREEMENT,
        gt=0,
        lt=1,
        description='With samples "auto": stop when the map\'s Pearson correlation with the '
        "converged map reaches this at 90 % confidence (split-half, Spearman–Brown).",
    )
    max_samples: int = Field(
        default=AUTO_CAP, ge=2, le=1024, description='With "auto": the most samples used.'
    )
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
    internal_batch_size: int | None = Field(
        default=None,
        ge=1,
        le=256,
        description="Images per VJP call; default: the model's measured best VJP batch.",
    )
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
    auto = params.samples == "auto"
    rounds = Rounds(params.agreement, min(params.max_samples, AUTO_MIN), params.max_samples, 2)
    n_total = rounds.first() if auto else int(params.samples)
    expected = params.max_samples if auto else n_total
    halves = 2 if auto else 1
    totals = np.zeros((halves, *x.shape[1:]), dtype=np.float64)
    passes = 0
    done = 0
    n_rounds = 0
    r_half = 0.0
    # the map's pixels: every one taken as independent, the loosest bound (measured:
    # 5,700-25,000 of 50,176 on the bundled photos, see the module's docstring)
    pixels = float(image.height * image.width)
    step = params.internal_batch_size or model.preferred_vjp_batch()
    while True:
        n_rounds += 1
        for start in range(done, n_total, step):
            n = min(step, n_total - start)
            noise = rng.standard_normal((n, *x.shape[1:]), dtype=np.float32)
            noisy = x + np.float32(sigma) * noise
            _, g, _, used = gradients(model, noisy, objective)
            passes += used
            g64 = g.astype(np.float64)
            if params.squared:
                g64 = g64 * g64
            elif params.average == "abs":
                g64 = np.abs(g64)
            if halves == 1:
                totals += g64.sum(axis=0, keepdims=True)
            else:
                parity = (start + np.arange(n)) % 2
                for h in (0, 1):
                    totals[h] += g64[parity == h].sum(axis=0)
            progress(min(1.0, (start + n) / max(expected, start + n)))
        done = n_total
        if not auto:
            break
        r_half = pearson(
            *(_map(totals[h : h + 1] / max(1, (done + 1 - h) // 2), model, params) for h in (0, 1))
        )
        nxt = rounds.next_size(done, split_half_estimate(r_half, pixels).lower)
        if nxt is None:
            break
        n_total = expected = nxt
    total = totals.sum(axis=0, keepdims=True)
    values = _map(total / done, model, params)
    extras: dict[str, Any] = {"backward_passes": done, "sigma": sigma, "average": params.average}
    if auto:
        extras.update(
            report(rounds, done, n_rounds, split_half_estimate(r_half, pixels))
        )
        progress(1.0)
    return Result([AttributionMap("attribution", values)], model_calls=passes, extras=extras)


def _map(mean: Any, model: LoadedModel, params: SmoothGradParams) -> Any:
    reduce = "abs_sum" if params.squared and params.reduce == "signed" else params.reduce
    return reduce_channels(mean.astype(np.float32), model, reduce)


def cost(params: SmoothGradParams, model: LoadedModel) -> int:
    """Passes; "auto" is costed at its cap (it may need all of them)."""
    n = params.max_samples if params.samples == "auto" else params.samples
    return n * (2 if params.score == "probability" else 1)


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
