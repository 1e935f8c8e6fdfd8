"""What the tabular methods share: scoring rows, bounds, BLAS threads, several rows, and
the answer."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from numpy.typing import NDArray

from engine.artifact_types.features import FeatureWeights
from engine.artifacts import AttributionMap, Result
from engine.methods.base import MethodFn, Progress, ScaledProgress
from engine.modalities.tabular import TabularCodec, TabularRow, TabularRows, rows_of
from engine.models.runtime import LoadedModel
from engine.objectives import Objective

#: Rows per ONNX Runtime call: tabular models are small, so few large calls beat many.
TABULAR_BATCH = 8192


_controller: Any = None
_controller_lock = threading.Lock()
#: BLAS's thread count is the process's: one limit at a time, so that two threads' limits
#: never restore each other's (a limit entered while another is held would restore 1)
_limit_lock = threading.RLock()


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """BLAS on one thread: the surrogates' small products (30 × 5,000) run 10-20× slower
    when OpenBLAS's threads contend with ONNX Runtime's and the host's other work."""
    global _controller
    if _controller is None:
        with _controller_lock:
            if _controller is None:
                from threadpoolctl import ThreadpoolController

                _controller = ThreadpoolController()
    with _limit_lock, _controller.limit(limits=1, user_api="blas"):
        yield


MAX_SAMPLE_VALUES = 25_000_000
"""The most feature values one request's perturbed rows may hold (samples × features):
about 200 MB in float64, what a worker is asked to hold at once."""


def check_size(method: str, samples: int, model: LoadedModel) -> None:
    """Refuse (before queueing) a sample count that, with this model's width, would hold
    more than MAX_SAMPLE_VALUES values."""
    from engine.errors import InvalidParams

    codec = model.codec
    if not isinstance(codec, TabularCodec):
        return
    values = samples * codec.width
    if values > MAX_SAMPLE_VALUES:
        most = MAX_SAMPLE_VALUES // codec.width
        raise InvalidParams(
            f"{method} with {samples} samples on this model's {codec.width} input columns "
            f"would hold {values} values at once; the limit is {MAX_SAMPLE_VALUES}. Ask for "
            f"at most {most} samples.",
            details={"samples": samples, "limit": MAX_SAMPLE_VALUES, "most": most},
        )


def codec_of(model: LoadedModel) -> TabularCodec:
    codec = model.codec
    if not isinstance(codec, TabularCodec):  # check_method refuses this before
        raise TypeError(f"model {model.name!r} is not tabular")
    return codec


def model_outputs(
    model: LoadedModel, rows: NDArray[Any], batch: int = TABULAR_BATCH
) -> NDArray[np.float32]:
    """The explained output (n, classes) of rows (n, d) in feature space."""
    return model.run(model.to_model_input(rows), batch=model.fixed_batch or batch)


def feature_result(
    model: LoadedModel,
    row: TabularRow,
    weights: NDArray[np.float64],
    model_calls: int,
    extras: dict[str, Any],
    *,
    conditions: list[str] | None = None,
    base: float | None = None,
    f_x: float | None = None,
    backward_passes: int = 0,
    output: NDArray[np.float32] | None = None,
) -> Result:
    """A weight per feature as an attribution (axis ``feature``, with the names) and as
    feature weights (the bar chart: the result's png). ``output``: the model's output on
    the row where the method ran it (the reported score then costs no pass)."""
    codec = codec_of(model)
    order = np.argsort(-np.abs(weights), kind="stable")
    top_k = int(extras.pop("top_k", 5))
    pos = [codec.names[i] for i in order if weights[i] > 0][:top_k]
    neg = [codec.names[i] for i in order if weights[i] < 0][:top_k]
    out_extras: dict[str, Any] = {
        "top_positive": pos,
        "top_negative": neg,
        **extras,
    }
    if backward_passes:
        out_extras["backward_passes"] = backward_passes
    return Result(
        [
            AttributionMap(
                "attribution", np.asarray(weights, np.float32), ("feature",), list(codec.names)
            ),
            FeatureWeights(
                "features",
                list(codec.names),
                np.asarray(weights, np.float64),
                [row.shown(i) for i in range(len(codec.names))],
                conditions,
                base,
                f_x,
            ),
        ],
        model_calls=model_calls,
        extras=out_extras,
        views={"png": "features", "overlay": "features"},
        output=output,
    )


def per_row(fn: MethodFn[Any]) -> MethodFn[Any]:
    """A method of one row that explains each of several rows (``rows``, a CSV file) too:
    the attribution is then (rows, features), the bar chart each feature's mean |weight|,
    and every per-row number of the extras a list over the rows."""

    def run(
        model: LoadedModel, item: Any, objective: Objective, params: Any, progress: Progress
    ) -> Result:
        if not isinstance(item, TabularRows):
            return fn(model, item, objective, params, progress)
        rows = rows_of(item)
        n = len(rows)
        results = [
            fn(model, row, objective, params, ScaledProgress(progress, i / n, 1 / n))
            for i, row in enumerate(rows)
        ]
        return _stacked(model, results)

    run.__name__ = getattr(fn, "__name__", "per_row")
    run.__doc__ = fn.__doc__
    return run


def _stacked(model: LoadedModel, results: list[Result]) -> Result:
    codec = codec_of(model)
    values = np.stack([np.asarray(r.values, np.float64) for r in results])
    importance = np.abs(values).mean(axis=0)
    extras: dict[str, Any] = {"rows": len(results)}
    for key, v in results[0].extras.items():
        if isinstance(v, int | float) and not isinstance(v, bool):
            extras[key] = [r.extras.get(key) for r in results]
    order = np.argsort(-importance, kind="stable")
    extras["top_features"] = [codec.names[i] for i in order[:5]]
    outputs = [r.output for r in results]
    return Result(
        [
            AttributionMap(
                "attribution", values.astype(np.float32), ("row", "feature"), list(codec.names)
            ),
            FeatureWeights("features", list(codec.names), importance, [], None, None, None),
        ],
        model_calls=sum(r.model_calls for r in results),
        extras=extras,
        views={"png": "features", "overlay": "features"},
        output=None if any(o is None for o in outputs) else np.concatenate(outputs),  # type: ignore[arg-type]
    )
