"""Fitted 2-D maps (t-SNE, UMAP) of a layer's pooled activations over a dataset, stored so
that a later request places new inputs on the same map instead of fitting again.

A map is fitted once per (model version, dataset version, layer, pooled statistic, fitting
params) and kept beside that layer's activation shards::

    <cache root>/<model version>/<dataset version>/@maps/<layer key>/<params digest>.pkl

(``@`` never begins a cache target's key, and deleting the dataset's activations deletes
its maps too). Writes are atomic (temp file + rename); two workers fitting the same map at
once both write a valid map and the last rename wins.

**Pickle.** The file is a pickle of openTSNE's ``TSNEEmbedding`` (its affinities hold the
reference points' neighbour index, which ``transform`` queries) or of a ``umap.UMAP``
object: placing a point needs that state, and rebuilding it costs about as much as the
fit's neighbour search. Only files that Lantern itself wrote, under its own data dir, are
ever loaded; a file that does not unpickle (another library version, a torn disk) is
treated as missing and the map is fitted again.

**Threads.** openTSNE runs on one thread unless told otherwise: ``n_jobs`` is passed
explicitly (the ONNX Runtime thread setting, ``ort_threads``; 0 = every core). Its OpenMP
runtime spins while idle by default, which on a shared host made a 2-thread fit 5x slower
than one thread; ``OMP_WAIT_POLICY`` defaults to ``PASSIVE`` here (set before the runtime
loads; an explicit setting wins). openTSNE's answer for a seed depends on its thread count.
UMAP with a seed (``random_state``) runs on **one thread** whatever ``n_jobs`` says (its
seeded epochs are sequential); ``seed=None`` lets it use ``n_jobs`` threads, at the price
of an answer that differs from run to run (the first stored map is then the one reused).
umap-learn and pynndescent compile their numba code on first use in a process (numba
caches it on disk where it can write): a worker's first UMAP fit or placement is slower.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

Algorithm = Literal["tsne", "umap"]
FORMAT = 1
#: openTSNE's early-exaggeration phase (its default), before ``iterations`` normal ones.
EARLY_ITERATIONS = 250
TSNE_ITERATIONS = 500  # openTSNE's default normal phase
#: Progress is reported (and a cancel seen) every this many t-SNE iterations.
CALLBACK_EVERY = 50


@dataclass(frozen=True)
class MapKey:
    """What a map is fitted from: the versions, the layer's cache key, the statistic and
    the fitting params (those that change the map: never the colouring or the placing)."""

    model_version: str
    dataset_version: str
    layer_key: str
    statistic: str
    algorithm: Algorithm
    params: tuple[tuple[str, Any], ...]

    @property
    def digest(self) -> str:
        canon = json.dumps([self.statistic, self.algorithm, list(self.params)],
                           sort_keys=True, separators=(",", ":"))
        return f"{self.algorithm}-{hashlib.sha256(canon.encode()).hexdigest()[:16]}"


@dataclass
class FittedMap:
    """A fitted map: the dataset's points (N, 2), and the library's object that places new
    points on it."""

    algorithm: Algorithm
    coords: NDArray[np.float32]
    model: Any
    n_jobs: int
    params: dict[str, Any]

    def place(self, features: NDArray[np.float32]) -> NDArray[np.float32]:
        """New points' (P, 2) coordinates on this map (the map itself is not changed)."""
        x = np.ascontiguousarray(features, np.float32)
        if len(x) == 0:
            return np.zeros((0, 2), np.float32)
        if self.algorithm == "tsne":
            # transform re-centres the embedding it is called on; it was centred at the
            # fit, so it moves by rounding only (``coords`` is a copy, never moved)
            out = self.model.transform(x.astype(np.float64))
            return np.asarray(out, np.float32)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            placed = self.model.transform(x)
        return np.asarray(placed, np.float32)


def threads(setting: int) -> int:
    """The thread count for a fit: the ORT setting, 0 meaning every core."""
    return int(setting) if setting > 0 else max(1, os.cpu_count() or 1)


def fit_tsne(x: NDArray[np.float32], perplexity: float, iterations: int | None, seed: int | None,
             n_jobs: int, callback: Callable[[float], None] | None = None) -> Any:
    """openTSNE's TSNE with its defaults but ``perplexity``, the normal phase's
    ``iterations``, the seed and ``n_jobs``; the embedding centred as ``transform`` would
    centre it. ``callback(fraction)`` every 50 iterations (it may raise to stop)."""
    from openTSNE import TSNE

    n_iter = TSNE_ITERATIONS if iterations is None else iterations
    total = EARLY_ITERATIONS + n_iter
    kwargs: dict[str, Any] = {}
    if callback is not None:
        done = [0]

        def report(iteration: int, error: float, embedding: Any) -> bool:
            done[0] += CALLBACK_EVERY
            callback(min(done[0] / total, 1.0))
            return False

        kwargs = {"callbacks": [report], "callbacks_every_iters": CALLBACK_EVERY}
    tsne = TSNE(n_components=2, perplexity=perplexity, n_iter=n_iter,
                early_exaggeration_iter=EARLY_ITERATIONS, n_jobs=n_jobs, random_state=seed,
                **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        emb = tsne.fit(np.ascontiguousarray(x, np.float64))
    emb -= (np.max(emb, axis=0) + np.min(emb, axis=0)) / 2
    # the callback is this request's: neither pickled nor called by a later transform
    emb.gradient_descent_params["callbacks"] = None
    return emb


def fit_umap(x: NDArray[np.float32], n_neighbors: int, min_dist: float, iterations: int | None,
             seed: int | None, n_jobs: int) -> Any:
    """umap-learn's UMAP (single-threaded when seeded: see the module doc)."""
    import umap

    model = umap.UMAP(n_components=2, n_neighbors=n_neighbors, min_dist=min_dist,
                      n_epochs=iterations, random_state=seed,
                      n_jobs=1 if seed is not None else n_jobs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(np.ascontiguousarray(x, np.float32))
    return model


def fit(algorithm: Algorithm, x: NDArray[np.float32], params: dict[str, Any], n_jobs: int,
        callback: Callable[[float], None] | None = None) -> FittedMap:
    """Fit a map of ``x`` (N, D). ``params``: perplexity (t-SNE) or n_neighbors and
    min_dist (UMAP), iterations (None: the library's default) and seed."""
    if algorithm == "tsne":
        emb = fit_tsne(x, float(params["perplexity"]), params.get("iterations"),
                       params.get("seed"), n_jobs, callback)
        coords = np.asarray(emb, np.float32)
        return FittedMap("tsne", coords, emb, n_jobs, dict(params))
    model = fit_umap(x, int(params["n_neighbors"]), float(params["min_dist"]),
                     params.get("iterations"), params.get("seed"), n_jobs)
    coords = np.asarray(model.embedding_, np.float32)
    return FittedMap("umap", coords, model, n_jobs, dict(params))


class MapStore:
    """The stored maps under an activation cache's root (see the module doc)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, key: MapKey) -> Path:
        return (self.root / key.model_version / key.dataset_version / "@maps" / key.layer_key
                / f"{key.digest}.pkl")

    def load(self, key: MapKey, n_points: int) -> FittedMap | None:
        """The stored map, or None (none yet, or one that cannot be read: fit again)."""
        path = self.path(key)
        try:
            with path.open("rb") as fh:
                state = pickle.load(fh)
        except FileNotFoundError:
            return None
        except Exception:  # another library version, a torn file: fitted again
            return None
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            return None
        coords = np.asarray(state["coords"], np.float32)
        if coords.shape != (n_points, 2):
            return None
        return FittedMap(state["algorithm"], coords, state["model"], int(state["n_jobs"]),
                         dict(state["params"]))

    def save(self, key: MapKey, fitted: FittedMap) -> Path:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {"format": FORMAT, "algorithm": fitted.algorithm, "coords": fitted.coords,
                 "model": fitted.model, "n_jobs": fitted.n_jobs, "params": fitted.params,
                 "key": [key.model_version, key.dataset_version, key.layer_key, key.statistic]}
        fd, tmp = tempfile.mkstemp(prefix=".map.", suffix=".pkl", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                pickle.dump(state, fh, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path
