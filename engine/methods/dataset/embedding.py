"""embedding: a 2-D map (t-SNE by openTSNE, or UMAP by umap-learn) of a layer's pooled
activations over a dataset — each image a point with its label, the model's prediction and
whether that is correct — and, with ``place``, where the caller's own images fall on that
map among the dataset's ("where does this input fall among the training data").

The layer is named through the objective vocabulary: a layer objective
(``{"kind": "layer_norm", "layer": "conv3"}``) embeds that layer's per-image pooled
``statistic`` (mean or max over positions, per channel); the class objective (the default
when a request names none) embeds the model's output (logits). The activations come from
the activation cache through :class:`DatasetPlanBuilder` (a second embedding of the same
layer runs no forward pass). The fitted map is stored (:mod:`engine.datasets.maps`) per
model version, dataset version, layer, statistic and fitting params: a later request with
``place`` reuses it and fits nothing; its forward passes are the placed images' only.

Threads: openTSNE gets ``n_jobs`` = the ONNX Runtime thread setting (0 = every core; its
own default is one thread). UMAP with a ``seed`` is single-threaded (umap-learn's seeded
epochs are sequential); ``seed: null`` lets it use the threads, not reproducibly.
"""

from __future__ import annotations

import base64
import binascii
import time
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import Field

from engine.artifact_types.embedding import Embedding
from engine.artifacts import Result
from engine.datasets.activations import OUTPUT, Target, _stats
from engine.datasets.maps import FittedMap, MapKey, MapStore, fit, threads
from engine.datasets.store import DatasetReader
from engine.errors import InvalidInput, InvalidParams
from engine.methods.base import MethodSpec, Progress, ScaledProgress, no_progress
from engine.methods.dataset.common import (
    DatasetParams,
    DatasetPlanBuilder,
    cache_of,
    dataset_cost,
    reader_of,
)
from engine.methods.dataset.dataset_predictions import _label_index
from engine.methods.registry import register
from engine.models.runtime import LoadedModel
from engine.objectives import ClassScore, Objective

MAX_PLACE = 16
#: base64 characters of one placed image (about 3 MiB of file)
MAX_PLACE_CHARS = 4 * 1024 * 1024
#: the fewest images a map is fitted on
MIN_POINTS = 5


class EmbeddingParams(DatasetParams):
    algorithm: Literal["tsne", "umap"] = Field(
        default="tsne", description="t-SNE (openTSNE) or UMAP (umap-learn).")
    statistic: Literal["mean", "max"] = Field(
        default="mean", description="Each channel's pooled value per image: its mean or max "
        "over the layer's positions (the output's logits have one value).")
    perplexity: float = Field(
        default=30.0, ge=2.0, le=100.0, description="t-SNE's perplexity (lowered to a third "
        "of the images less one on a small dataset).")
    n_neighbors: int = Field(
        default=15, ge=2, le=200, description="UMAP's neighbourhood size (at most the images "
        "less one).")
    min_dist: float = Field(default=0.1, ge=0.0, le=1.0,
                            description="UMAP's minimum distance between embedded points.")
    iterations: int | None = Field(
        default=None, ge=10, le=5000, description="t-SNE: iterations after the 250 of early "
        "exaggeration (default 500); UMAP: epochs (default: umap-learn's, 200 or 500).")
    seed: int | None = Field(
        default=0, ge=0, le=2**31 - 1, description="Random seed (same seed, same map). null: "
        "unseeded — UMAP then uses every thread, but answers differ from run to run.")
    colour_by: Literal["label", "prediction", "correct"] = Field(
        default="label", description="What the scatter's colours show.")
    place: list[str] = Field(
        default_factory=list, max_length=MAX_PLACE, description="Up to 16 images (base64) "
        "to place on the stored map, each with its nearest dataset images.")
    neighbours: int = Field(default=5, ge=1, le=50,
                            description="Nearest dataset images listed per placed image.")


def layer_of(objective: Objective) -> str | None:
    """The layer embedded (None: the output's logits)."""
    return None if isinstance(objective, ClassScore) else objective.layer


def targets(model: LoadedModel, objective: Objective, params: Any) -> list[Target]:
    layer = layer_of(objective)
    return [Target(OUTPUT)] if layer is None else [Target(OUTPUT), Target(layer)]


def _decode_b64(text: str, k: int) -> bytes:
    if len(text) > MAX_PLACE_CHARS:
        raise InvalidParams(
            f"place[{k}] is {len(text)} base64 characters; the most is {MAX_PLACE_CHARS}. "
            "Send a smaller image.", details={"field": f"place[{k}]", "limit": MAX_PLACE_CHARS})
    if text.startswith("data:") and "," in text:
        text = text.split(",", 1)[1]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidParams(
            f"place[{k}] is not valid base64. Encode each image file's bytes with standard "
            "base64 (RFC 4648).", details={"field": f"place[{k}]"}) from None


def placed_pixels(model: LoadedModel, params: EmbeddingParams) -> list[NDArray[np.float32]]:
    """The placed images decoded by the model's codec (typed refusals name the image)."""
    out = []
    for k, text in enumerate(params.place):
        raw = _decode_b64(text, k)
        item = model.codec.decode(raw)  # its own typed refusals (invalid_image, ...)
        pixels = getattr(item, "pixels", None)
        if pixels is None:  # pragma: no cover - image models only (spec.modalities)
            raise InvalidParams("place holds images, for an image model.",
                                details={"field": "place"})
        out.append(np.asarray(pixels, np.float32))
    return out


def check(params: EmbeddingParams, model: LoadedModel) -> None:
    """At submit: every placed image decodes (base64, then the model's codec)."""
    placed_pixels(model, params)


def _features(model: LoadedModel, reader: DatasetReader, objective: Objective,
              params: EmbeddingParams) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """(the embedded features (N, D), the logits (N, classes)) from the cache."""
    cache = cache_of(reader)
    logits = cache.values(model, reader, Target(OUTPUT)).reshape(len(reader), -1)
    layer = layer_of(objective)
    if layer is None:
        return logits.astype(np.float32), logits
    stats = cache.layer(model, reader, layer)
    x = stats.mean if params.statistic == "mean" else stats.max
    return np.asarray(x, np.float32).reshape(len(reader), -1), logits


def _placed_features(model: LoadedModel, objective: Objective, params: EmbeddingParams
                     ) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """The placed images' features and logits, as the cache computes them (one pass)."""
    pixels = placed_pixels(model, params)
    x = model.to_model_input(np.stack(pixels))
    layer = layer_of(objective)
    if layer is None:
        logits = model.run(x).reshape(len(pixels), -1)
        return logits.astype(np.float32), logits
    value, logits = model.probe(x, [layer])
    stats = _stats(value, model.channels_last)
    feats = stats["mean"] if params.statistic == "mean" else stats["max"]
    return (np.asarray(feats, np.float32).reshape(len(pixels), -1),
            logits.reshape(len(pixels), -1))


def _check_features(x: NDArray[np.float32], reader: DatasetReader, layer: str | None) -> None:
    where = "the model's output" if layer is None else f"layer {layer!r}"
    if len(x) < MIN_POINTS:
        raise InvalidInput(
            f"Dataset {reader.name!r} has {len(x)} images; a map needs at least {MIN_POINTS}. "
            "Embed a larger dataset.", details={"dataset": reader.name, "images": len(x)})
    if not np.isfinite(x).all():
        raise InvalidInput(
            f"The pooled activations of {where} hold NaN or infinite values over dataset "
            f"{reader.name!r}: there is nothing to embed. Pick another layer.",
            details={"layer": layer})
    if float(np.ptp(x, axis=0).max()) == 0.0:
        raise InvalidInput(
            f"The pooled activations of {where} are the same for every image of "
            f"{reader.name!r}: there is nothing to embed. Pick another layer or statistic.",
            details={"layer": layer, "statistic": "logits" if layer is None else None})


def fitting_params(params: EmbeddingParams, n: int) -> dict[str, Any]:
    """The params that make the map (small datasets lower perplexity / n_neighbors)."""
    if params.algorithm == "tsne":
        perplexity = min(float(params.perplexity), max(1.0, (n - 1) / 3.0))
        return {"perplexity": perplexity, "iterations": params.iterations, "seed": params.seed}
    return {"n_neighbors": min(int(params.n_neighbors), n - 1), "min_dist": params.min_dist,
            "iterations": params.iterations, "seed": params.seed}


def map_key(model: LoadedModel, reader: DatasetReader, objective: Objective,
            params: EmbeddingParams) -> MapKey:
    layer = layer_of(objective)
    return MapKey(model.version, reader.version, Target(layer or OUTPUT).key,
                  "logits" if layer is None else params.statistic, params.algorithm,
                  tuple(sorted(fitting_params(params, len(reader)).items())))


def fitted_map(model: LoadedModel, reader: DatasetReader, objective: Objective,
               params: EmbeddingParams, x: NDArray[np.float32], progress: Progress
               ) -> tuple[FittedMap, bool]:
    """The stored map, or one fitted now and stored; (the map, whether it was fitted)."""
    store = MapStore(cache_of(reader).root)
    key = map_key(model, reader, objective, params)
    stored = store.load(key, len(x))
    if stored is not None:
        return stored, False
    fitted = fit(params.algorithm, x, fitting_params(params, len(x)),
                 threads(model.options.intra_op_threads), progress)
    store.save(key, fitted)
    return fitted, True


def _neighbours(x: NDArray[np.float32], q: NDArray[np.float32], k: int
                ) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
    """The k nearest rows of ``x`` to each row of ``q`` (Euclidean; ties by index)."""
    if len(q) == 0:
        return np.zeros((0, k), np.int64), np.zeros((0, k), np.float32)
    a = x.astype(np.float64)
    b = q.astype(np.float64)
    d2 = (b * b).sum(1)[:, None] - 2.0 * b @ a.T + (a * a).sum(1)[None, :]
    d2 = np.maximum(d2, 0.0)
    order = np.argsort(d2, axis=1, kind="stable")[:, :k]
    dist = np.sqrt(np.take_along_axis(d2, order, axis=1))
    return order.astype(np.int64), dist.astype(np.float32)


def knn_accuracy(xy: NDArray[np.float32], labels: NDArray[np.int64], k: int = 5) -> float | None:
    """Leave-one-out k-NN accuracy of the labels in 2-D (None without two labelled)."""
    known = np.flatnonzero(labels >= 0)
    if len(known) <= k:
        return None
    from sklearn.neighbors import NearestNeighbors

    pts = xy[known].astype(np.float64)
    lab = labels[known]
    idx = NearestNeighbors(n_neighbors=k + 1).fit(pts).kneighbors(pts, return_distance=False)
    votes = lab[idx[:, 1:]]
    n_classes = int(lab.max()) + 1
    counts = np.stack([(votes == c).sum(axis=1) for c in range(n_classes)], axis=1)
    return float(np.mean(np.argmax(counts, axis=1) == lab))


def _assemble(model: LoadedModel, reader: DatasetReader, objective: Objective, params: Any,
              passes: int, progress: Progress = no_progress) -> Result:
    x, logits = _features(model, reader, objective, params)
    layer = layer_of(objective)
    _check_features(x, reader, layer)
    started = time.perf_counter()
    fitted, fitted_now = fitted_map(model, reader, objective, params, x, progress)
    fit_s = time.perf_counter() - started
    prediction = np.argmax(logits, axis=1).astype(np.int64)
    truth = _label_index(model, reader)
    correct = np.where(truth >= 0, (truth == prediction).astype(np.int8), -1).astype(np.int8)
    n_out = logits.shape[1]
    names = model.labels if len(model.labels) == n_out else [str(i) for i in range(n_out)]
    placed_xy = np.zeros((0, 2), np.float32)
    placed_pred = np.zeros(0, np.int64)
    k = min(params.neighbours, len(x))
    near, dist = np.zeros((0, k), np.int64), np.zeros((0, k), np.float32)
    placed_passes = 0
    if params.place:
        q, q_logits = _placed_features(model, objective, params)
        placed_passes = len(q)
        placed_xy = fitted.place(q)
        placed_pred = np.argmax(q_logits, axis=1).astype(np.int64)
        near, dist = _neighbours(x, q, k)
    xy = fitted.coords
    statistic = "logits" if layer is None else params.statistic
    info: dict[str, Any] = {"algorithm": params.algorithm, "layer": layer or "output",
                            "statistic": statistic, "dataset": reader.name,
                            "dataset_version": reader.version}
    artifact = Embedding(
        "embedding", xy, np.arange(len(x), dtype=np.int64), reader.ids(),
        np.asarray(reader.labels, np.int64).copy(), prediction, correct, list(reader.classes),
        list(names), params.colour_by, placed_xy, placed_pred, near, dist,
        [f"place[{i}]" for i in range(len(placed_xy))], info)
    extras: dict[str, Any] = {
        **info,
        "images": len(reader),
        "features": int(x.shape[1]),
        **fitting_params(params, len(x)),
        "map": "fitted" if fitted_now else "reused",
        "fit_s": round(fit_s, 3) if fitted_now else 0.0,
        "threads": fitted.n_jobs,
        "placed": len(placed_xy),
        "forward_passes": passes,
        "placed_passes": placed_passes,
        "knn_accuracy_2d": knn_accuracy(xy, truth),
    }
    return Result(artifacts=[artifact], model_calls=passes + placed_passes, extras=extras,
                  views={"png": "embedding"}, output=logits[:1])


PLAN = DatasetPlanBuilder("embedding", targets, _assemble)


def embedding(model: LoadedModel, item: Any, objective: Objective, params: EmbeddingParams,
              progress: Progress) -> Result:
    """The whole analysis here: the activations (0-50 %), then the map (50-100 %)."""
    reader = reader_of(item)
    passes = cache_of(reader).ensure(model, reader, targets(model, objective, params), 0, None,
                                     ScaledProgress(progress, 0.0, 0.5))
    return _assemble(model, reader, objective, params, passes,
                     ScaledProgress(progress, 0.5, 0.5))


SPEC = register(
    MethodSpec(
        name="embedding",
        params_model=EmbeddingParams,
        fn=embedding,
        description="A 2-D map (t-SNE or UMAP) of a layer's pooled activations over a "
        "dataset, coloured by label, prediction or correctness; `place` puts your own images "
        "on the stored map, each with its nearest dataset images.",
        kind="dataset",
        execution="job",
        inputs="dataset",
        objectives=("class", "layer_norm"),
        check=check,
        cost=dataset_cost,
        plan=PLAN,
    )
)
