"""Saliency and integrated gradients for tabular rows, on models onnx-ad can differentiate
(an MLP; a tree ensemble is refused with the op that has no gradient).

Gradients are taken w.r.t. the graph's input columns and given back per feature: a
numeric or boolean feature's column; a one-hot categorical feature's columns summed (for
integrated gradients this keeps completeness: Σ attributions = f(x) − f(x')). The path of
integrated gradients runs in the graph's input space from a baseline row (the training
means by default; a categorical feature's most frequent category) to the row.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

from engine.artifacts import Result
from engine.methods.backprop import gradients
from engine.methods.base import MethodSpec, Progress
from engine.methods.integrated_gradients import Rule, quadrature
from engine.methods.registry import register
from engine.methods.tabular.common import codec_of, feature_result, per_row
from engine.modalities.tabular import TabularBaseline, TabularCodec, TabularRow
from engine.models.runtime import LoadedModel
from engine.objectives import Objective, ScoreKind, objective_tensor


def per_feature(codec: TabularCodec, g: NDArray[np.float32]) -> NDArray[np.float64]:
    """(width,) over the graph's columns -> (d,) over features (one-hot columns summed)."""
    g64 = np.asarray(g, np.float64).reshape(-1)
    if not codec.onehot:
        return g64
    out: NDArray[np.float64] = np.add.reduceat(g64, codec.starts)
    return out


def check(params: BaseModel, model: LoadedModel) -> None:
    model.check_gradients()


class TabularSaliencyParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    absolute: bool = Field(
        default=False, description="|d score / d feature| instead of the signed gradient."
    )
    top_k: int = Field(default=5, ge=1, le=1000, description="Features in top_positive/negative.")
    score: ScoreKind = Field(default="probability", description="Differentiate this score.")


def saliency(
    model: LoadedModel,
    row: TabularRow,
    objective: Objective,
    params: TabularSaliencyParams,
    progress: Progress,
) -> Result:
    codec = codec_of(model)
    x = codec.item_input(row)
    out, g, _, passes = gradients(model, x, objective)
    progress(1.0)
    weights = per_feature(codec, g[0])
    if params.absolute:
        weights = np.abs(weights)
    f_x = float(objective.value(out)[0])
    return feature_result(
        model,
        row,
        weights,
        passes,
        {"top_k": params.top_k, "f_x": f_x, "target_score": f_x},
        f_x=f_x,
        backward_passes=1,
        output=out if objective.layer is None else None,
    )


class TabularIntegratedGradientsParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    steps: int = Field(default=64, ge=2, le=4096, description="Points on the path.")
    baseline: TabularBaseline = Field(
        default="mean",
        description="The path's start: the training means (categorical features: the most "
        "frequent category), medians, or zeros.",
    )
    method: Rule = Field(default="gausslegendre", description="Quadrature rule.")
    internal_batch_size: int = Field(default=256, ge=1, le=4096)
    top_k: int = Field(default=5, ge=1, le=1000, description="Features in top_positive/negative.")
    score: ScoreKind = Field(default="probability", description="Integrate this score.")


def integrated_gradients(
    model: LoadedModel,
    row: TabularRow,
    objective: Objective,
    params: TabularIntegratedGradientsParams,
    progress: Progress,
) -> Result:
    codec = codec_of(model)
    x = codec.item_input(row)
    xb = codec.to_model_input(codec.baseline(row, params.baseline)[None])
    ends = objective.value(
        model.tensor_values(np.concatenate([x, xb]), objective_tensor(objective, model))
    )
    expected = float(ends[0] - ends[1])
    alphas, weights = quadrature(params.method, params.steps)
    total = np.zeros(x.shape[1], np.float64)
    passes = 2
    step = params.internal_batch_size
    for start in range(0, len(alphas), step):
        a = alphas[start : start + step].astype(np.float32)[:, None]
        path = (xb + a * (x - xb)).astype(np.float32)
        _, g, _, used = gradients(model, path, objective)
        passes += used
        total += (g.astype(np.float64) * weights[start : start + step, None]).sum(axis=0)
        progress(min(1.0, (start + len(a)) / len(alphas)))
    attr = per_feature(codec, (x - xb).astype(np.float64)[0] * total)
    delta = float(attr.sum() - expected)
    return feature_result(
        model,
        row,
        attr,
        passes,
        {
            "top_k": params.top_k,
            "completeness_delta": delta,
            "completeness_error": abs(delta) / max(abs(expected), 1e-12),
            "f_x": float(ends[0]),
            "f_baseline": float(ends[1]),
            "steps": params.steps,
            "method": params.method,
            "baseline": params.baseline,
            "target_score": float(ends[0]),
        },
        base=float(ends[1]),
        f_x=float(ends[0]),
        backward_passes=params.steps,
    )


def ig_cost(params: TabularIntegratedGradientsParams, model: LoadedModel) -> int:
    return 2 + params.steps * (2 if params.score == "probability" else 1)


SALIENCY = register(
    MethodSpec(
        name="saliency",
        params_model=TabularSaliencyParams,
        fn=per_row(saliency),
        description="The gradient of the score w.r.t. each feature (differentiable models).",
        kind="gradient",
        execution="sync",
        modalities=("tabular",),
        check=check,
    )
)

INTEGRATED_GRADIENTS = register(
    MethodSpec(
        name="integrated_gradients",
        params_model=TabularIntegratedGradientsParams,
        fn=per_row(integrated_gradients),
        description="Integrated gradients from a baseline row (training means) to the row; "
        "reports the completeness delta.",
        kind="gradient",
        execution="job",
        modalities=("tabular",),
        check=check,
        cost=ig_cost,
    )
)
