"""LIME over time segments (Ribeiro et al., 2016, as the series surveys use it): the series
is cut into ``segments`` equal runs of steps; samples switch segments on and off (hidden
segments take the baseline series, every channel alike), and a weighted ridge regression of
the target's score on the on/off vectors gives each segment its weight. Sample 0 is the
series itself; sample i is drawn from (seed, i)."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

from engine.artifacts import Result
from engine.methods.base import MethodSpec, Progress
from engine.methods.lime import kernel_weights, lime_codes
from engine.methods.registry import register
from engine.methods.time_series.common import MODALITY, batched_scores, codec_of, series_result
from engine.modalities.time_series import SeriesInput
from engine.models.runtime import LoadedModel
from engine.objectives import Objective, ScoreKind, class_index


class SeriesLimeParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    segments: int = Field(default=10, ge=2, le=1000, description="Equal runs of time steps.")
    num_samples: int = Field(default=1000, ge=2, le=100_000, description="Perturbed samples.")
    baseline: Literal["zero", "mean", "blur", "linear"] = Field(
        default="mean", description="What hidden segments become (see occlusion)."
    )
    blur_radius: float = Field(default=5.0, gt=0, le=10_000)
    kernel_width: float = Field(default=0.25, gt=0, le=100)
    alpha: float = Field(default=1.0, ge=0, le=1e6, description="Ridge regularisation.")
    score: ScoreKind = "logit"
    batch_size: int = Field(default=64, ge=1, le=1024)
    seed: int = Field(default=0, ge=0, le=2**63 - 1)


def segment_bounds(length: int, segments: int) -> NDArray[np.int64]:
    """Starts of ``min(segments, length)`` near-equal runs, then ``length``."""
    n = min(segments, length)
    return np.linspace(0, length, n + 1).round().astype(np.int64)


def lime(
    model: LoadedModel,
    item: SeriesInput,
    objective: Objective,
    params: SeriesLimeParams,
    progress: Progress,
) -> Result:
    from sklearn.linear_model import Ridge

    class_index(objective)
    codec = codec_of(model)
    t = item.length
    bounds = segment_bounds(t, params.segments)
    n_seg = len(bounds) - 1
    labels = np.repeat(np.arange(n_seg), np.diff(bounds))  # (T,) segment of each step
    z = lime_codes(n_seg, params.seed, 0, params.num_samples)
    masks = np.take(z.astype(np.bool_), labels, axis=1)  # (n, T)
    x0 = codec.item_input(item)
    xb = codec.to_model_input(codec.baseline(item, params.baseline, params.blur_radius)[None])
    scores = batched_scores(model, objective, x0, xb, masks, params.batch_size)
    progress(0.95)
    weights = kernel_weights(z, params.kernel_width)
    x = z.astype(np.float64)
    ridge: Any = Ridge(alpha=params.alpha, fit_intercept=True)
    ridge.fit(x, scores, sample_weight=weights)
    coef = np.asarray(ridge.coef_, np.float64)
    progress(1.0)
    segs = [
        {"start": int(bounds[i]), "stop": int(bounds[i + 1]), "weight": float(coef[i])}
        for i in range(n_seg)
    ]
    return series_result(
        model,
        item,
        coef[labels].astype(np.float32),
        extras={
            "segments": segs,
            "r2": float(ridge.score(x, scores, sample_weight=weights)),
            "intercept": float(ridge.intercept_),
            "num_samples": params.num_samples,
            "target_score": float(scores[0]),
        },
        model_calls=len(z),
    )


def cost(params: SeriesLimeParams, model: LoadedModel) -> int:
    return params.num_samples


SPEC = register(
    MethodSpec(
        name="lime",
        params_model=SeriesLimeParams,
        fn=lime,
        description="LIME over time segments: a weighted linear surrogate of segments "
        "switched on and off (hidden ones take a baseline).",
        kind="perturbation",
        execution="job",
        modalities=MODALITY,
        cost=cost,
    )
)
