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

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field
from scipy.special import ndtr, ndtri

from engine.artifacts import Result
from engine.methods.base import MethodSpec, Progress
from engine.methods.registry import register
from engine.methods.tabular.common import codec_of, feature_result, model_outputs
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
    """Each feature's bins (numeric) or categories as the sampling distribution."""

    quartiles: list[NDArray[np.float64] | None]  # None for categorical and boolean
    frequencies: list[NDArray[np.float64]]
    means: list[NDArray[np.float64]]
    stds: list[NDArray[np.float64]]
    mins: list[NDArray[np.float64]]
    maxs: list[NDArray[np.float64]]

    @staticmethod
    def of(codec: TabularCodec) -> Discretised:
        q: list[NDArray[np.float64] | None] = []
        fr, mu, sd, lo, hi = [], [], [], [], []
        for f, s in zip(codec.features, codec.stats.features, strict=True):
            if f.type == "numeric" and s.bins is not None:
                q.append(np.asarray(s.quartiles or [], np.float64))
                fr.append(np.asarray([b.frequency for b in s.bins], np.float64))
                mu.append(np.asarray([b.mean for b in s.bins], np.float64))
                sd.append(np.asarray([b.std for b in s.bins], np.float64) + 1e-11)
                lo.append(np.asarray([b.min for b in s.bins], np.float64))
                hi.append(np.asarray([b.max for b in s.bins], np.float64))
            else:
                q.append(None)
                fr.append(np.asarray(s.frequencies or [1.0], np.float64))
                for lst in (mu, sd, lo, hi):
                    lst.append(np.zeros(0))
        return Discretised(q, fr, mu, sd, lo, hi)

    def discretise(self, x: NDArray[np.float64]) -> NDArray[np.int64]:
        """The row's bin of each numeric feature, its code of each other one."""
        out = np.empty(len(self.quartiles), np.int64)
        for j, qts in enumerate(self.quartiles):
            if qts is None:
                out[j] = int(x[j]) if np.isfinite(x[j]) else -1
            else:
                out[j] = int(np.searchsorted(qts, x[j]))
        return out


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


def lime_samples(
    disc: Discretised, x: NDArray[np.float64], n: int, seed: int
) -> tuple[NDArray[np.uint8], NDArray[np.float64]]:
    """(binary representation (n, d), samples in feature space (n, d)); row 0 is ``x``."""
    d = len(disc.quartiles)
    rs = np.random.RandomState(seed)
    first = disc.discretise(x)
    draws = rs.random_sample((d, n))  # RandomState.choice(p=...) draws column by column
    picked = np.empty((d, n), np.int64)
    for j in range(d):
        cdf = np.cumsum(disc.frequencies[j])
        cdf /= cdf[-1]
        picked[j] = np.searchsorted(cdf, draws[j], side="right")
    picked = np.minimum(picked, np.asarray([len(f) - 1 for f in disc.frequencies])[:, None])
    z = (picked == first[:, None]).T.astype(np.uint8)
    z[0] = 1
    samples = picked.T.astype(np.float64)
    samples[0] = x
    # numeric values inside their bins, feature by feature, rows 1.. (the package's order)
    numeric = [j for j, q in enumerate(disc.quartiles) if q is not None]
    if numeric and n > 1:
        idx = picked[numeric, 1:]
        mins = np.stack([disc.mins[j][idx[k]] for k, j in enumerate(numeric)])
        maxs = np.stack([disc.maxs[j][idx[k]] for k, j in enumerate(numeric)])
        means = np.stack([disc.means[j][idx[k]] for k, j in enumerate(numeric)])
        stds = np.stack([disc.stds[j][idx[k]] for k, j in enumerate(numeric)])
        a = (mins - means) / stds
        b = (maxs - means) / stds
        vary = a != b
        values = means.copy()  # a bin of one value: that value
        u = rs.uniform(size=int(vary.sum()))  # row-major: feature by feature, as the package
        values[vary] = _truncnorm(u, a[vary], b[vary], means[vary], stds[vary])
        samples[1:, numeric] = values.T
    return z, samples


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


def kernel_weights(z: NDArray[np.uint8], width: float) -> NDArray[np.float64]:
    """sqrt(exp(-d²/w²)), d the euclidean distance of each binary row to the all-ones row."""
    d2 = (z.shape[1] - z.sum(axis=1, dtype=np.float64))
    out: NDArray[np.float64] = np.sqrt(np.exp(-d2 / width**2))
    return out


def ridge(
    z: NDArray[Any], y: NDArray[np.float64], w: NDArray[np.float64], alpha: float
) -> tuple[NDArray[np.float64], float, float, float]:
    """scikit-learn's weighted Ridge(alpha, fit_intercept=True) in closed form: (coef,
    intercept, weighted R², prediction at row 0)."""
    x = z.astype(np.float64)
    sw = w / w.sum()
    xm = sw @ x
    ym = float(sw @ y)
    xc = x - xm
    yc = y - ym
    xw = xc * w[:, None]
    a = xc.T @ xw
    a[np.diag_indices_from(a)] += alpha
    coef = np.linalg.solve(a, xw.T @ yc)
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
    z, samples = lime_samples(disc, row.values, params.num_samples, params.seed)
    progress(0.1)
    outputs = model_outputs(model, samples)
    y = objective.value(outputs)
    progress(0.9)
    d = z.shape[1]
    width = params.kernel_width or float(np.sqrt(d) * 0.75)
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


SPEC = register(
    MethodSpec(
        name="lime",
        params_model=TabularLimeParams,
        fn=lime,
        description="LIME for a row: samples from the training statistics (quartile bins, "
        "category frequencies), a weighted linear surrogate on 'same bin as the row'.",
        kind="perturbation",
        execution="job",
        modalities=("tabular",),
        cost=cost,
    )
)
