"""LIME for tabular rows, as the ``lime`` package's ``LimeTabularExplainer`` with its
defaults (``discretize_continuous=True``, quartile bins), from the training statistics
alone (its ``training_data_stats``): no training row is kept.

Every numeric feature is cut into bins by its training quartiles. Sample 0 is the row;
every other sample draws, for each feature, a bin (numeric) or a category (categorical,
boolean) with the training frequencies, and a numeric value inside its bin from a normal of
the bin's training mean and std truncated to the bin's bounds. The interpretable
representation is binary: 1 where the sample's bin or category is the row's. Samples are
weighted by the kernel ``sqrt(exp(-d²/w²))`` of their euclidean distance d to the row in
that representation (w = 0.75·√features by default), and a weighted Ridge regression
(α = 1) of the objective on it gives each feature its weight: how much being in the row's
bin or category moves the score.

Samples are drawn from ``numpy.random.RandomState(seed)`` in the package's order (the
categories column by column, then the values bin by bin), so with the same seed and
statistics they are the package's samples (to float rounding) — except where a bin holds
one value, which the package turns into a z-score and Lantern keeps as that value.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field
from scipy.special import ndtr, ndtri

from engine.artifacts import Result
from engine.methods.base import MethodSpec, Progress
from engine.methods.registry import register
from engine.methods.tabular.common import (
    TABULAR_BATCH,
    check_size,
    codec_of,
    feature_result,
    one_blas_thread,
    per_row,
)
from engine.modalities.tabular import TabularCodec, TabularRow
from engine.models.runtime import LoadedModel
from engine.objectives import Objective, ScoreKind


class TabularLimeParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    num_samples: int = Field(default=5000, ge=2, le=200_000, description="Perturbed samples.")
    kernel_width: float | None = Field(
        default=None, gt=0, le=1e6, description="Kernel width; default 0.75·√(features)."
    )
    alpha: float = Field(default=1.0, ge=0, le=1e6, description="Ridge regularisation.")
    top_k: int = Field(default=5, ge=1, le=1000, description="Features in top_positive/negative.")
    score: ScoreKind = Field(
        default="probability",
        description="Explain the probability (as lime does) or the logit; on a model whose "
        "output is probabilities both are that output.",
    )
    seed: int = Field(default=0, ge=0, le=2**32 - 1, description="Seed of the samples.")


@dataclass(frozen=True)
class Discretised:
    """Each feature's bins (numeric) or categories as the sampling distribution, and for
    every (numeric feature, bin) the truncated normal that draws a value inside the bin."""

    quartiles: list[NDArray[np.float64] | None]  # None for categorical and boolean
    frequencies: list[NDArray[np.float64]]
    cdfs: list[NDArray[np.float64]]
    means: list[NDArray[np.float64]]
    numeric: list[int]
    #: features of at most _SMALL categories or bins, their cdfs padded with +inf, the rest
    small: NDArray[np.int64]
    small_cdfs: NDArray[np.float64]
    large: list[int]
    #: per (numeric feature, bin), flattened as k * 4 + bin: the truncated normal's inverse
    #: CDF as ``loc + scale · sign · ndtri(base + u' · span)`` (u' = u, or 1 − u where the
    #: right tail is the stable side), and whether the bin spans more than one value
    loc: NDArray[np.float64]
    scale: NDArray[np.float64]
    sign: NDArray[np.float64]
    base: NDArray[np.float64]
    span: NDArray[np.float64]
    vary: NDArray[np.bool_]
    kept: OrderedDict[tuple[int, int], Any] = field(default_factory=OrderedDict, compare=False)
    lock: threading.Lock = field(default_factory=threading.Lock, compare=False)

    @staticmethod
    def of(codec: TabularCodec) -> Discretised:
        cached = _DISCRETISED.get(codec)
        if cached is not None:
            return cached
        q: list[NDArray[np.float64] | None] = []
        fr, cdfs, mu = [], [], []
        numeric: list[int] = []
        tables: dict[str, list[float]] = {k: [] for k in ("loc", "scale", "a", "b")}
        for j, (f, s) in enumerate(zip(codec.features, codec.stats.features, strict=True)):
            if f.type == "numeric" and s.bins is not None:
                numeric.append(j)
                q.append(np.asarray(s.quartiles or [], np.float64))
                freq = np.asarray([b.frequency for b in s.bins], np.float64)
                mu.append(np.asarray([b.mean for b in s.bins], np.float64))
                for k in range(_MAX_BINS):
                    bin_ = s.bins[min(k, len(s.bins) - 1)]
                    std = bin_.std + 1e-11  # as the package's discretizer
                    tables["loc"].append(bin_.mean)
                    tables["scale"].append(std)
                    tables["a"].append((bin_.min - bin_.mean) / std)
                    tables["b"].append((bin_.max - bin_.mean) / std)
            else:
                q.append(None)
                freq = np.asarray(s.frequencies or [1.0], np.float64)
                mu.append(np.zeros(0))
            fr.append(freq)
            cdf = np.cumsum(freq)
            cdfs.append(cdf / cdf[-1] if cdf[-1] > 0 else np.linspace(0, 1, len(cdf) + 1)[1:])
        a = np.asarray(tables["a"], np.float64)
        b = np.asarray(tables["b"], np.float64)
        left = a < 0
        f64 = np.float64
        small = [j for j, c in enumerate(cdfs) if len(c) <= _SMALL]
        # the last cdf entry is 1, which no draw reaches: it needs no column
        padded = np.full((len(small), max([len(cdfs[j]) - 1 for j in small] + [0])), np.inf)
        for k, j in enumerate(small):
            padded[k, : len(cdfs[j]) - 1] = cdfs[j][:-1]
        out = Discretised(
            q,
            fr,
            cdfs,
            mu,
            numeric,
            np.asarray(small, np.int64),
            padded,
            [j for j in range(len(cdfs)) if len(cdfs[j]) > _SMALL],
            np.asarray(tables["loc"], f64),
            np.asarray(tables["scale"], f64),
            np.asarray(np.where(left, 1.0, -1.0), f64),
            np.asarray(np.where(left, ndtr(a), ndtr(-b)), f64),
            np.asarray(np.where(left, ndtr(b) - ndtr(a), ndtr(-a) - ndtr(-b)), f64),
            np.asarray(a != b, np.bool_),
        )
        _DISCRETISED[codec] = out
        return out

    def discretise(self, x: NDArray[np.float64]) -> NDArray[np.int64]:
        """The row's bin of each numeric feature, its code of each other one."""
        out = np.empty(len(self.quartiles), np.int64)
        for j, qts in enumerate(self.quartiles):
            if qts is None:
                out[j] = int(x[j]) if np.isfinite(x[j]) else -1
            else:
                out[j] = int(np.searchsorted(qts, x[j]))
        return out


_MAX_BINS = 4
_SMALL = 8
_DISCRETISED: weakref.WeakKeyDictionary[TabularCodec, Discretised] = weakref.WeakKeyDictionary()


def _truncnorm(
    u: NDArray[np.float64],
    a: NDArray[np.float64],
    b: NDArray[np.float64],
    loc: NDArray[np.float64],
    scale: NDArray[np.float64],
) -> NDArray[np.float64]:
    """scipy.stats.truncnorm.ppf(u, a, b, loc, scale) — what its rvs does to uniforms —
    by the inverse normal CDF (from the left tail where a < 0, from the right otherwise)."""
    left = a < 0
    out = np.empty_like(u)
    pa, pb = ndtr(a[left]), ndtr(b[left])
    out[left] = ndtri(pa + u[left] * (pb - pa))
    r = ~left
    qa, qb = ndtr(-a[r]), ndtr(-b[r])
    out[r] = -ndtri(qb + (1.0 - u[r]) * (qa - qb))
    return loc + scale * out


def lime_draws(
    disc: Discretised, n: int, seed: int
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """What the package draws for ``n`` samples from ``seed`` — every sample's bin or
    category (d, n) and samples 1.. in feature space (n − 1, d). None of it depends on
    the row (only sample 0 and the binary representation do)."""
    d = len(disc.quartiles)
    rs = np.random.RandomState(seed)
    draws = rs.random_sample((d, n))  # RandomState.choice(p=...) draws column by column
    picked = np.empty((d, n), np.int64)
    small = disc.small
    if small.size:  # few bins or categories: count the cdf steps at or below each draw
        sd = draws[small]
        count = np.zeros(sd.shape, np.int64)
        for k in range(disc.small_cdfs.shape[1]):
            count += sd >= disc.small_cdfs[:, k : k + 1]
        picked[small] = count
    for j in disc.large:
        picked[j] = np.searchsorted(disc.cdfs[j], draws[j], side="right")
    picked = np.minimum(picked, np.asarray([len(f) - 1 for f in disc.frequencies])[:, None])
    tail = picked[:, 1:].T.astype(np.float64)
    # numeric values inside their bins, feature by feature, rows 1.. (the package's order:
    # its truncnorm.rvs is the inverse CDF of uniforms drawn in that order)
    if disc.numeric and n > 1:
        t = picked[disc.numeric, 1:] + (_MAX_BINS * np.arange(len(disc.numeric)))[:, None]
        values = disc.loc[t]  # a bin of one value: that value
        vary = disc.vary[t]
        tv = t[vary]
        u = rs.uniform(size=tv.size)
        u = np.where(disc.sign[tv] > 0, u, 1.0 - u)
        values[vary] = disc.loc[tv] + disc.scale[tv] * disc.sign[tv] * ndtri(
            disc.base[tv] + u * disc.span[tv]
        )
        tail[:, disc.numeric] = values.T
    return picked, tail


_DRAWS_KEPT = 4
_DRAWS_MAX_VALUES = 1_000_000  # samples × features: at most ~20 MB an entry
"""Draws kept per model (and their size): a model explained again and again with the same
sample count and seed reuses them (they do not depend on the row)."""


#: (bins and categories (d, n) — at most 10,000 categories: int16 —, samples 1.. in feature
#: space, and as the model's input)
_Draws = tuple[NDArray[np.int16], NDArray[np.float64], NDArray[np.float32]]


def _draws(codec: TabularCodec, disc: Discretised, n: int, seed: int) -> _Draws:
    """lime_draws and samples 1.. as the model's input, kept per model where small."""
    key = (n, seed)
    with disc.lock:
        hit: _Draws | None = disc.kept.get(key)
        if hit is not None:
            disc.kept.move_to_end(key)
            return hit
    picked, tail = lime_draws(disc, n, seed)
    entry: _Draws = (picked.astype(np.int16), tail, codec.to_model_input(tail))
    if n * len(disc.quartiles) <= _DRAWS_MAX_VALUES:
        for a in entry:
            a.setflags(write=False)
        with disc.lock:
            disc.kept[key] = entry
            while len(disc.kept) > _DRAWS_KEPT:
                disc.kept.popitem(last=False)
    return entry


def lime_samples(
    disc: Discretised, x: NDArray[np.float64], n: int, seed: int
) -> tuple[NDArray[np.uint8], NDArray[np.float64]]:
    """(binary representation (n, d), samples in feature space (n, d)); row 0 is ``x``."""
    picked, tail = lime_draws(disc, n, seed)
    return _binary(disc, picked, x), np.concatenate([x[None], tail])


def _binary(
    disc: Discretised, picked: NDArray[Any], x: NDArray[np.float64]
) -> NDArray[np.uint8]:
    """1 where a sample's bin or category is the row's; sample 0 (the row) all 1."""
    z: NDArray[np.uint8] = (picked == disc.discretise(x)[:, None]).T.astype(np.uint8)
    z[0] = 1
    return z


def conditions(codec: TabularCodec, disc: Discretised, x: NDArray[np.float64]) -> list[str]:
    """What each weight is of, as the package names it: "age <= 41.00", "city=Lyon"."""
    first = disc.discretise(x)
    out = []
    for j, f in enumerate(codec.features):
        qts = disc.quartiles[j]
        if qts is not None:
            b = int(first[j])
            if b == 0:
                out.append(f"{f.name} <= {qts[0]:.2f}")
            elif b >= len(qts):
                out.append(f"{f.name} > {qts[-1]:.2f}")
            else:
                out.append(f"{qts[b - 1]:.2f} < {f.name} <= {qts[b]:.2f}")
        elif f.type == "boolean":
            out.append(f"{f.name}={'true' if x[j] == 1 else 'false'}")
        else:
            code = int(x[j]) if np.isfinite(x[j]) else -1
            out.append(f"{f.name}={(f.values or [])[code] if code >= 0 else 'null'}")
    return out


def kernel_weights(z: NDArray[Any], width: float) -> NDArray[np.float64]:
    """sqrt(exp(-d²/w²)), d the euclidean distance of each binary row to the all-ones row."""
    d2 = (z.shape[1] - z.sum(axis=1, dtype=np.float64))
    out: NDArray[np.float64] = np.sqrt(np.exp(-d2 / width**2))
    return out


def ridge(
    z: NDArray[Any], y: NDArray[np.float64], w: NDArray[np.float64], alpha: float
) -> tuple[NDArray[np.float64], float, float, float]:
    """scikit-learn's weighted Ridge(alpha, fit_intercept=True) in closed form: (coef,
    intercept, weighted R², prediction at row 0). The centred Gram matrix is XᵀWX − W·x̄x̄ᵀ
    (no centred copy of the samples)."""
    x = np.asarray(z, np.float64)  # no copy when the caller has it as float64 already
    total = float(w.sum())
    xtw = x.T * w  # (d, n)
    xm = xtw.sum(axis=1) / total
    ym = float(w @ y) / total
    a = xtw @ x - total * np.outer(xm, xm)
    a[np.diag_indices_from(a)] += alpha
    coef = np.linalg.solve(a, xtw @ y - total * xm * ym)
    intercept = ym - float(xm @ coef)
    pred = x @ coef + intercept
    ss_res = float(w @ (y - pred) ** 2)
    ss_tot = float(w @ (y - ym) ** 2)
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 0.0
    return coef, intercept, r2, float(pred[0])


def lime(
    model: LoadedModel,
    row: TabularRow,
    objective: Objective,
    params: TabularLimeParams,
    progress: Progress,
) -> Result:
    codec = codec_of(model)
    disc = Discretised.of(codec)
    picked, _, tail_input = _draws(codec, disc, params.num_samples, params.seed)
    z = _binary(disc, picked, row.values).astype(np.float64)
    progress(0.1)
    x = np.concatenate([codec.item_input(row), tail_input])
    outputs = model.run(x, batch=model.fixed_batch or TABULAR_BATCH)
    y = objective.value(outputs)
    progress(0.9)
    d = z.shape[1]
    width = params.kernel_width or float(np.sqrt(d) * 0.75)
    with one_blas_thread():
        coef, intercept, r2, local = ridge(z, y, kernel_weights(z, width), params.alpha)
    progress(1.0)
    return feature_result(
        model,
        row,
        coef,
        params.num_samples,
        {
            "top_k": params.top_k,
            "intercept": intercept,
            "r2": r2,
            "local_prediction": local,
            "f_x": float(y[0]),
            "kernel_width": width,
            "num_samples": params.num_samples,
            "target_score": float(y[0]),
        },
        conditions=conditions(codec, disc, row.values),
        base=intercept,
        f_x=float(y[0]),
        output=outputs[:1] if objective.layer is None else None,
    )


def cost(params: TabularLimeParams, model: LoadedModel) -> int:
    return params.num_samples


def check(params: TabularLimeParams, model: LoadedModel) -> None:
    check_size("lime", params.num_samples, model)


SPEC = register(
    MethodSpec(
        name="lime",
        params_model=TabularLimeParams,
        fn=per_row(lime),
        description="LIME for a row: samples from the training statistics (quartile bins, "
        "category frequencies), a weighted linear surrogate on 'same bin as the row'.",
        kind="perturbation",
        execution="job",
        modalities=("tabular",),
        cost=cost,
        check=check,
    )
)
