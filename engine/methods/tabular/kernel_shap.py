"""KernelSHAP for tabular rows, as ``shap.KernelExplainer(f, shap.kmeans(train, k))``.

The background is the training sample summarised by k-means at registration (centroids
rounded to values the sample holds, weighted by cluster size; :mod:`engine.modalities.
tabular_sample`). The players are the features on which the row differs from some
background row (the others get 0, as in ``shap``). A coalition keeps the row's values of
its players and takes every background row's values for the rest; its value is the
weighted mean of the objective over the background. Coalitions and their Shapley-kernel
weights are drawn as ``shap`` draws them (:func:`engine.methods.kernel_shap.
sample_coalitions`: sizes enumerated completely while the budget covers them, the rest
sampled), and the constrained weighted regression gives values that sum exactly to
f(x) − E[f(background)] (``sum_check``).
"""

from __future__ import annotations

import functools

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

from engine.artifacts import Result
from engine.methods.base import MethodSpec, Progress
from engine.methods.kernel_shap import sample_coalitions, solve_shapley
from engine.methods.registry import register
from engine.methods.tabular.common import (
    TABULAR_BATCH,
    check_size,
    codec_of,
    feature_result,
    model_outputs,
    one_blas_thread,
    per_row,
)
from engine.modalities.tabular import TabularRow
from engine.models.runtime import LoadedModel
from engine.objectives import Objective, ScoreKind


class TabularKernelShapParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    num_samples: int = Field(
        default=2000,
        ge=1,
        le=100_000,
        description="Coalitions evaluated (besides the empty and the full one); capped at "
        "2^M − 2 for M players.",
    )
    top_k: int = Field(default=5, ge=1, le=1000, description="Features in top_positive/negative.")
    score: ScoreKind = Field(
        default="probability",
        description="Explain the probability (as shap on predict_proba) or the logit; on a "
        "model whose output is probabilities both are that output.",
    )
    seed: int = Field(default=0, ge=0, le=2**63 - 1, description="Seed of the coalitions.")


def background(model: LoadedModel) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The k-means background rows (k, d) and their weights, summing to 1."""
    st = codec_of(model).stats
    rows = np.asarray(st.background, np.float64)
    w = np.asarray(st.background_weights, np.float64)
    return rows, w / w.sum()


def varying(x: NDArray[np.float64], rows: NDArray[np.float64]) -> NDArray[np.int64]:
    """The features on which ``x`` differs from some background row (NaN equals NaN)."""
    same = (rows == x[None]) | (np.isnan(rows) & np.isnan(x[None]))
    return np.nonzero(~same.all(axis=0))[0]


_BATCH_VALUES = 8_000_000
"""Input values per forward batch (32 MB of float32), whatever the model's width."""
_KEPT_MAX_VALUES = 4_000_000
"""The largest coalition matrix kept (players × coalitions); larger ones are drawn anew."""


def coalitions_of(
    m: int, num_samples: int, seed: int
) -> tuple[NDArray[np.uint8], NDArray[np.float64]]:
    """shap's coalitions for m players: a pure function of its arguments, kept where small
    (a model's rows mostly have the same players)."""
    if m * num_samples > _KEPT_MAX_VALUES:
        return sample_coalitions(m, num_samples, seed)
    return _kept_coalitions(m, num_samples, seed)


@functools.lru_cache(maxsize=32)
def _kept_coalitions(
    m: int, num_samples: int, seed: int
) -> tuple[NDArray[np.uint8], NDArray[np.float64]]:
    z, w = sample_coalitions(m, num_samples, seed)
    z.setflags(write=False)
    w.setflags(write=False)
    return z, w


def coalition_values(
    model: LoadedModel,
    objective: Objective,
    x: NDArray[np.float64],
    rows: NDArray[np.float64],
    w: NDArray[np.float64],
    players: NDArray[np.int64],
    coalitions: NDArray[np.uint8],
    progress: Progress,
) -> NDArray[np.float64]:
    """E_b[f(x on the coalition's players, b elsewhere)] for each coalition, the samples
    made in the graph's input space (a feature's columns follow its player)."""
    codec = codec_of(model)
    k = rows.shape[0]
    xm = codec.item_input_of(x)[0]
    bm = codec.to_model_input(rows)
    column = codec.feature_of_column  # the feature of each input column
    player_of = np.full(x.shape[0], -1, np.int64)
    player_of[players] = np.arange(len(players))
    cols = np.nonzero(player_of[column] >= 0)[0]
    col_player = player_of[column[cols]]
    n = coalitions.shape[0]
    out = np.empty(n, np.float64)
    width = xm.shape[0]
    step = max(1, min(TABULAR_BATCH, _BATCH_VALUES // max(width, 1)) // k)
    batch = np.empty((min(step, max(n, 1)), k, width), np.float32)
    keep = np.zeros((batch.shape[0], width), bool)
    for start in range(0, n, step):
        stop = min(start + step, n)
        b, kp = batch[: stop - start], keep[: stop - start]
        b[:] = bm[None]
        kp[:, cols] = coalitions[start:stop][:, col_player]  # a column follows its player
        np.copyto(b, xm[None, None, :], where=kp[:, None, :])
        flat = b.reshape(-1, width)
        scores = objective.value(model.run(flat, batch=model.fixed_batch or TABULAR_BATCH))
        out[start:stop] = scores.reshape(stop - start, k) @ w
        progress(stop / n)
    return out


def kernel_shap(
    model: LoadedModel,
    row: TabularRow,
    objective: Objective,
    params: TabularKernelShapParams,
    progress: Progress,
) -> Result:
    rows, w = background(model)
    x = row.values
    outputs = model_outputs(model, np.concatenate([x[None], rows]))
    ends = objective.value(outputs)
    f_x = float(ends[0])
    f_base = float(ends[1:] @ w)
    players = varying(x, rows)
    m = len(players)
    coalitions, weights = coalitions_of(m, params.num_samples, params.seed)
    y = coalition_values(model, objective, x, rows, w, players, coalitions, progress)
    phi = np.zeros(x.shape[0], np.float64)
    if m:
        with one_blas_thread():
            phi[players] = solve_shapley(coalitions, weights, y, f_x, f_base)
    progress(1.0)
    n = int(coalitions.shape[0])
    return feature_result(
        model,
        row,
        phi,
        1 + rows.shape[0] * (1 + n),
        {
            "top_k": params.top_k,
            "f_x": f_x,
            "f_baseline": f_base,
            "sum_check": float(phi.sum() - (f_x - f_base)),
            "num_samples": n,
            "players": m,
            "background_rows": int(rows.shape[0]),
            "exact": m <= 30 and n == max(2**m - 2, 0),
            "target_score": f_x,
        },
        base=f_base,
        f_x=f_x,
        output=outputs[:1] if objective.layer is None else None,
    )


def check(params: TabularKernelShapParams, model: LoadedModel) -> None:
    # the coalitions (samples × players) are held at once
    check_size("kernel_shap", params.num_samples, model)


def cost(params: TabularKernelShapParams, model: LoadedModel) -> int:
    k = len(codec_of(model).stats.background)
    return 1 + k * (1 + params.num_samples)


SPEC = register(
    MethodSpec(
        name="kernel_shap",
        params_model=TabularKernelShapParams,
        fn=per_row(kernel_shap),
        description="KernelSHAP for a row: Shapley values of the features against the "
        "training sample's k-means background; they sum to f(x) − E[f(background)].",
        kind="perturbation",
        execution="job",
        modalities=("tabular",),
        cost=cost,
        check=check,
    )
)
