"""activation_distributions: per channel of the chosen layers, the histogram of its pooled
activation (mean or max over positions) over a dataset, for one or several input sets side
by side (by label, by prediction, correct / incorrect, explicit ids: engine/datasets/sets.py)
— Summit's density bars (``distributions``: PNG, JSON, .npy) — and the channels ranked by
how much two of the sets differ (``differences``): the AUROC of a Mann–Whitney U test
(U / (n₁·n₂): the chance that an image of the first set exceeds one of the second, ties
half), Cohen's d on the pooled standard deviation, and the test's p-values corrected by
Benjamini–Hochberg (q-values). "What is different about the misclassified cats" is one
request: ``sets: [{"by": "label", "value": "cat"}, {"by": "incorrect"}]``... or any two.

Reads the activation cache (one extraction per model version, dataset version and layer,
chunked over workers by :class:`DatasetPlanBuilder`): an analysis of a layer that another
analysis has read runs no forward pass. Every number is computed at assembly from the
whole dataset's cached statistics, so one chunk and many give the same answer.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import Field, StrictInt, StrictStr, field_validator
from scipy.stats import false_discovery_control, mannwhitneyu

from engine.artifact_types.distributions import Distributions
from engine.artifacts import Result, Table
from engine.datasets.activations import OUTPUT, Target
from engine.datasets.sets import (
    InputSet,
    SetSpec,
    Shorthand,
    check_against_dataset,
    check_against_model,
    expand,
    resolve_sets,
)
from engine.datasets.store import DatasetReader
from engine.errors import InvalidParams, UnknownLayer
from engine.methods.base import MethodSpec, Progress, no_progress
from engine.methods.dataset.common import DatasetParams, DatasetPlanBuilder, cache_of, dataset_cost
from engine.methods.registry import register
from engine.models.runtime import LoadedModel
from engine.objectives import Objective

#: The most sets one request describes (after a shorthand is expanded).
MAX_SETS = 64


class DistributionParams(DatasetParams):
    layers: list[str] | None = Field(
        default=None, min_length=1, max_length=8,
        description="The layers whose channels to describe (one or several; a single name "
        "is taken as a list; the model's output gives one row per class). Default: the last "
        "spatial layer before global pooling.")
    statistic: Literal["mean", "max"] = Field(
        default="mean", description="A channel's value per image: the mean or the max of "
        "its activation over the layer's positions.")
    bins: int = Field(default=32, ge=2, le=256, description="Histogram bins per channel "
                      "(on the channel's range over the whole dataset).")
    sets: list[SetSpec] | Shorthand = Field(
        default="by_label",
        description='The input sets, side by side: a list of {"by": "label", "value": "3"}, '
        '{"by": "prediction", "value": "cat"}, {"by": "correct"}, {"by": "incorrect"}, '
        '{"by": "all"} or {"ids": [...]} (each with an optional "name"); or "by_label" / '
        '"by_prediction": one set per label present / per class predicted.')
    compare: list[StrictInt | StrictStr] | None = Field(
        default=None, min_length=2, max_length=2,
        description="The two sets whose difference ranks the channels, by position in "
        '`sets` or by name (a set\'s `name`, else its rule: "label 3", "prediction cat", '
        '"correct", ...). Default: the first two (no ranking with a single set).')
    rank_by: Literal["auroc", "cohens_d"] = Field(
        default="auroc", description="Rank channels by |AUROC − 0.5| or by |Cohen's d| (the "
        "other breaks ties).")

    @field_validator("layers", mode="before")
    @classmethod
    def _one_layer(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("sets")
    @classmethod
    def _some_sets(cls, v: Any) -> Any:
        if isinstance(v, list) and not 1 <= len(v) <= MAX_SETS:
            raise ValueError(f"give 1 to {MAX_SETS} sets")
        return v


def layers_of(model: LoadedModel, params: DistributionParams) -> list[str]:
    if params.layers:
        return list(dict.fromkeys(params.layers))
    layer = model.default_cam_layer()
    if layer is None:
        raise InvalidParams(
            "The model has no spatial layer to default to: name the layers to describe "
            "(`layers`, see GET /v1/models/{model}).", details={"field": "layers"})
    return [layer]


def targets(model: LoadedModel, objective: Objective, params: Any) -> list[Target]:
    """The logits (for sets by prediction, and the output as a layer) and each layer's
    pooled stats."""
    return [Target(OUTPUT), *(Target(layer) for layer in layers_of(model, params)
                              if layer != model.output_name)]


def check(params: DistributionParams, model: LoadedModel) -> None:
    """At submit: the layers exist, prediction values are the model's classes, and the
    compared sets are among the sets."""
    shapes = model.layer_shapes()
    for layer in layers_of(model, params):
        if layer not in shapes:
            raise UnknownLayer(
                f"The model has no layer {layer!r} to describe. Pick one listed by GET "
                "/v1/models/{model}.",
                details={"layer": layer, "layers": list(shapes)[-20:]})
    check_against_model(params.sets, model.labels)
    if params.compare is not None and not isinstance(params.sets, str):
        titles = [s.title for s in params.sets]
        _compared(params.compare, titles)


def check_dataset(params: DistributionParams, reader: DatasetReader) -> None:
    """At submit, with the dataset: its labels and ids exist (and the sets one per label,
    that the compared ones are among them)."""
    check_against_dataset(params.sets, reader)
    if params.sets == "by_label" and params.compare is not None:
        _compared(params.compare, [s.title for s in expand("by_label", reader, [])])


def _compared(compare: list[int | str] | None, titles: list[str]) -> list[int]:
    if compare is None:
        return [0, 1] if len(titles) >= 2 else []
    out: list[int] = []
    for ref in compare:
        if isinstance(ref, int):
            if not 0 <= ref < len(titles):
                raise InvalidParams(
                    f"compare: there is no set {ref}; the sets are 0..{len(titles) - 1} "
                    f"({', '.join(titles[:10])}).",
                    details={"compare": compare, "sets": titles[:MAX_SETS]})
            out.append(ref)
        elif ref in titles:
            out.append(titles.index(ref))
        else:
            raise InvalidParams(
                f"compare: no set is called {ref!r}; the sets are {titles[:10]}. Name two "
                "sets by their position or name.",
                details={"compare": compare, "sets": titles[:MAX_SETS]})
    if out[0] == out[1]:
        raise InvalidParams("compare: name two different sets.",
                            details={"compare": compare})
    return out


def histograms(values: NDArray[np.floating], sets: list[InputSet], bins: int,
               block: int = 1 << 22) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Counts (rows, sets, bins) on per-row edges (rows, bins + 1) spanning the row's range
    over every image — what ``np.histogram(values[members, r], edges[r])`` gives (a constant
    row spans value ± 0.5, as numpy does), for all rows at once, in blocks of rows of about
    ``block`` values (the bin indices of a block in memory, not of the whole dataset)."""
    n, rows = values.shape
    counts = np.zeros((rows, len(sets), bins), np.int64)
    edges = np.empty((rows, bins + 1), np.float64)
    step = max(1, block // max(1, n))
    for r0 in range(0, rows, step):
        v = np.asarray(values[:, r0 : r0 + step], np.float64)
        lo = v.min(axis=0)
        hi = v.max(axis=0)
        flat = hi <= lo
        lo = np.where(flat, lo - 0.5, lo)
        hi = np.where(flat, hi + 0.5, hi)
        e = np.linspace(lo, hi, bins + 1, axis=1)  # (rows of the block, bins + 1)
        edges[r0 : r0 + v.shape[1]] = e
        # the bin as numpy's uniform-bin histogram finds it, then its edge correction
        idx = np.clip(np.floor((v - lo) / (hi - lo) * bins).astype(np.int64), 0, bins - 1)
        r = np.arange(v.shape[1])[None, :]
        idx -= (v < e[r, idx]).astype(np.int64)
        idx += ((v >= e[r, idx + 1]) & (idx != bins - 1)).astype(np.int64)
        idx += r * bins
        for k, st in enumerate(sets):
            got = np.bincount(idx[st.members].ravel(), minlength=v.shape[1] * bins)
            counts[r0 : r0 + v.shape[1], k, :] = got.reshape(v.shape[1], bins)
    return counts, edges


def differences(a: NDArray[np.float64], b: NDArray[np.float64]
                ) -> dict[str, NDArray[np.float64]]:
    """Per column of a (n₁, rows) and b (n₂, rows): AUROC = U₁/(n₁·n₂) and the two-sided
    p-value of scipy's Mann–Whitney U test (normal approximation), its Benjamini–Hochberg
    q-value, and Cohen's d = (mean₁ − mean₂) / s with the pooled variance
    s² = ((n₁−1)s₁² + (n₂−1)s₂²)/(n₁+n₂−2) (NaN where undefined)."""
    n1, n2 = a.shape[0], b.shape[0]
    # the normal approximation with tie and continuity corrections for every channel (scipy's
    # "auto" would pick exact p-values for all channels or none, by the ties of any one)
    u, p = mannwhitneyu(a, b, alternative="two-sided", axis=0, method="asymptotic")
    auroc = np.asarray(u, np.float64) / (n1 * n2)
    p = np.nan_to_num(np.asarray(p, np.float64), nan=1.0)
    p = np.clip(p, 0.0, 1.0)
    q = np.asarray(false_discovery_control(p, method="bh"), np.float64)
    m1, m2 = a.mean(axis=0), b.mean(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        dof = n1 + n2 - 2
        v1 = a.var(axis=0, ddof=1) if n1 > 1 else np.zeros(a.shape[1])
        v2 = b.var(axis=0, ddof=1) if n2 > 1 else np.zeros(b.shape[1])
        pooled = np.sqrt(((n1 - 1) * v1 + (n2 - 1) * v2) / dof) if dof > 0 else np.full(
            a.shape[1], np.nan)
        d = np.where(pooled > 0, (m1 - m2) / pooled, np.where(m1 == m2, 0.0, np.nan))
    return {"auroc": auroc, "p": p, "q": q, "d": d, "mean_a": m1, "mean_b": m2}


def rank_rows(stats: dict[str, NDArray[np.float64]], rank_by: str) -> NDArray[np.int64]:
    """Rows, most different first: by |AUROC − 0.5| (or |d|), the other next, then the
    p-value, then the row (a stable, total order)."""
    effect = np.abs(stats["auroc"] - 0.5)
    size = np.nan_to_num(np.abs(stats["d"]), nan=0.0)
    first, second = (effect, size) if rank_by == "auroc" else (size, effect)
    rows = np.arange(effect.shape[0])
    return np.lexsort((rows, stats["p"], -second, -first)).astype(np.int64)


def _num(v: float) -> float | None:
    return float(v) if np.isfinite(v) else None


def _assemble(model: LoadedModel, reader: DatasetReader, objective: Objective, params: Any,
              passes: int, progress: Progress = no_progress) -> Result:
    cache = cache_of(reader)
    layers = layers_of(model, params)
    parts, row_layers, row_channels = [], [], []
    spatial: dict[str, list[int]] = {}
    logits = cache.values(model, reader, Target(OUTPUT)).reshape(len(reader), -1)
    for layer in layers:
        if layer == model.output_name:  # the output: one value per class
            v = logits.astype(np.float32)
            spatial[layer] = [1, 1]
        else:
            st = cache.layer(model, reader, layer)
            v = st.max if params.statistic == "max" else st.mean
            spatial[layer] = list(st.spatial)
        parts.append(v)
        row_layers += [layer] * v.shape[1]
        row_channels += list(range(v.shape[1]))
    values = np.concatenate(parts, axis=1)  # (N, rows)

    def predicted() -> NDArray[np.int64]:
        out: NDArray[np.int64] = np.argmax(logits, axis=1).astype(np.int64)
        return out

    sets = resolve_sets(params.sets, reader, model.labels, predicted)
    if len(sets) > MAX_SETS:
        raise InvalidParams(
            f"{len(sets)} sets: at most {MAX_SETS} can be described side by side. Give the "
            "sets as a list.", details={"sets": len(sets), "limit": MAX_SETS})
    titles = [s.name for s in sets]
    compared = _compared(params.compare, titles)
    counts, edges = histograms(values, sets, params.bins)
    means = np.stack([values[s.members].mean(axis=0, dtype=np.float64) for s in sets], axis=1)
    artifacts: list[Any] = []
    extras: dict[str, Any] = {
        "dataset": reader.name, "dataset_version": reader.version, "images": len(reader),
        "layers": layers, "layer_size": spatial, "statistic": params.statistic,
        "bins": params.bins, "sets": [{"name": s.name, "rule": s.rule, "size": len(s)}
                                      for s in sets],
        "forward_passes": passes,
    }
    order = list(range(values.shape[1]))
    if compared:
        a, b = (sets[i] for i in compared)
        stats = differences(values[a.members].astype(np.float64),
                            values[b.members].astype(np.float64))
        ranked = rank_rows(stats, params.rank_by)
        order = [int(r) for r in ranked]
        rows = [[k + 1, row_layers[r], row_channels[r], _num(stats["auroc"][r]),
                 _num(stats["d"][r]), _num(stats["mean_a"][r]), _num(stats["mean_b"][r]),
                 _num(stats["p"][r]), _num(stats["q"][r])] for k, r in enumerate(order)]
        artifacts.append(Table("differences", ["rank", "layer", "channel", "auroc",
                                               "cohens_d", "mean_a", "mean_b", "p_value",
                                               "q_value"], rows))
        top = order[0]
        extras["compared"] = [a.name, b.name]
        extras["rank_by"] = params.rank_by
        extras["top_channel"] = {"layer": row_layers[top], "channel": row_channels[top],
                                 "auroc": _num(stats["auroc"][top]),
                                 "cohens_d": _num(stats["d"][top]),
                                 "q_value": _num(stats["q"][top])}
        extras["significant_q_0_05"] = int(np.sum(stats["q"] < 0.05))
    dist = Distributions("distributions", counts, edges, means, titles,
                         [len(s) for s in sets], row_layers, row_channels, order, compared,
                         params.statistic)
    return Result(
        artifacts=[dist, *artifacts],
        model_calls=passes,
        extras=extras,
        views={"png": "distributions"},
        output=logits[:1],
    )


class DistributionsPlan(DatasetPlanBuilder):
    """The dataset plan, with the check the service runs at submit against the dataset."""

    def check_dataset(self, params: Any, reader: DatasetReader) -> None:
        check_dataset(params, reader)


PLAN = DistributionsPlan("activation_distributions", targets, _assemble)


def activation_distributions(model: LoadedModel, item: Any, objective: Objective,
                             params: DistributionParams, progress: Progress) -> Result:
    return PLAN.run(model, item, objective, params, progress)


SPEC = register(
    MethodSpec(
        name="activation_distributions",
        params_model=DistributionParams,
        fn=activation_distributions,
        description="Per channel of the chosen layers, the histogram of its pooled "
        "activation over a dataset for input sets side by side (by label, prediction, "
        "correct/incorrect or ids) as density bars, and the channels ranked by how much two "
        "sets differ (AUROC, Cohen's d, Benjamini–Hochberg q-values).",
        kind="dataset",
        execution="job",
        inputs="dataset",
        objectives=("class",),
        check=check,
        cost=dataset_cost,
        plan=PLAN,
    )
)
