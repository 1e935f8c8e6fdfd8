"""What the series methods share: gradients in (C, T), layers over time, results."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from engine.artifacts import AttributionMap, Result
from engine.errors import InvalidParams, UnsupportedModel
from engine.methods.backprop import gradients
from engine.modalities.time_series import SeriesInput, SeriesPlot, TimeSeriesCodec
from engine.models.heads import default_cam_layer
from engine.models.layers import discover_layers
from engine.models.runtime import LoadedModel
from engine.objectives import Objective

MODALITY = ("time_series",)

#: Rank-3 layers by model version (shape inference once per model, not per request).
_LAYERS: dict[str, list[str]] = {}


def codec_of(model: LoadedModel) -> TimeSeriesCodec:
    codec = model.codec
    if not isinstance(codec, TimeSeriesCodec):  # check_method refuses other models first
        raise TypeError(f"model {model.name!r} is not a time-series model")
    return codec


def require_fixed_length(model: LoadedModel, method: str) -> None:
    """Refuse gradient methods on a variable-length graph: the gradient models are built
    at static shapes (onnx-ad's reverse mode) and cached per model, not per length."""
    codec = model.codec
    if isinstance(codec, TimeSeriesCodec) and codec.manifest.length_mode == "max":
        raise UnsupportedModel(
            f"{method} differentiates the graph at a fixed shape; model {model.name!r} takes "
            "series of varying length (length_mode \"max\"). Use occlusion or lime, or "
            "register the model with a fixed length.",
            details={"method": method, "length_mode": "max"},
        )


def channel_names(model: LoadedModel) -> list[str]:
    names: list[str] = codec_of(model).manifest.names()
    return names


def input_gradient(
    model: LoadedModel, series: NDArray[np.float32], objective: Objective
) -> tuple[NDArray[np.float32], NDArray[np.float32], int]:
    """(output, d objective / d input as (N, C, T), passes) for items (N, C, T)."""
    codec = codec_of(model)
    out, g, _, passes = gradients(model, codec.to_model_input(series), objective)
    return out, codec.from_model_space(g), passes


def series_layers(model: LoadedModel) -> list[str]:
    """The graph's rank-3 float tensors (batch, channels, time), in graph order: the layers
    Grad-CAM can weigh. Inner layers are read as ONNX's Conv layout (N, C, t) whatever the
    input's layout (a Keras NTC graph transposes to NCT before its first Conv)."""
    found = _LAYERS.get(model.version)
    if found is None:
        found = [ly.name for ly in discover_layers(model.proto()) if len(ly.shape) == 3]
        if len(_LAYERS) >= 64:
            _LAYERS.pop(next(iter(_LAYERS)))
        _LAYERS[model.version] = found
    return found


def resolve_series_layer(model: LoadedModel, layer: str | None) -> str:
    layers = series_layers(model)
    if layer is None:
        found = default_cam_layer(model.proto(), layers)
        if found is None:
            raise InvalidParams(
                "This model has no rank-3 (batch, channels, time) layer to explain.",
            )
        return found
    if layer not in layers:
        raise InvalidParams(
            f"{layer!r} is not a (batch, channels, time) layer of this model. Pick one of "
            "the rank-3 layers in GET /v1/models/{model}.",
            details={"layer": layer, "series_layers": layers[-20:]},
        )
    return layer


def upsample_time(m: NDArray[np.float32], length: int) -> NDArray[np.float32]:
    """Linear interpolation of a (t,) map to (length,), cell centres aligned (as bilinear
    image upsampling with align_corners=False; edges repeated)."""
    t = m.shape[0]
    if t == length:
        return m.astype(np.float32)
    centres = (np.arange(length) + 0.5) * t / length - 0.5
    out: NDArray[np.float32] = np.interp(centres, np.arange(t), m.astype(np.float64)).astype(
        np.float32
    )
    return out


def series_result(
    model: LoadedModel,
    item: SeriesInput,
    values: NDArray[np.float32],
    *,
    extras: dict[str, Any],
    model_calls: int,
    output: NDArray[np.float32] | None = None,
    more: list[Any] | None = None,
) -> Result:
    """``attribution`` — (C, T) with axes (channel, time), or (T,) with axes (time,) — and
    ``plot``: the series with it, drawn as a heat band under the lines."""
    values = np.ascontiguousarray(values, np.float32)
    names = channel_names(model)
    axes = ("channel", "time") if values.ndim == 2 else ("time",)
    return Result(
        [
            AttributionMap("attribution", values, axes, names if values.ndim == 2 else None),
            SeriesPlot("plot", item.values, values, names),
            *(more or []),
        ],
        model_calls=model_calls,
        extras=extras,
        views={"png": "plot"},
        output=output,
    )


def batched_scores(
    model: LoadedModel,
    objective: Objective,
    x0: NDArray[np.float32],
    xb: NDArray[np.float32],
    masks: NDArray[Any],
    batch: int,
) -> NDArray[np.float64]:
    """The objective's value on every masked sample (masks (n, T) or (n, C, T); model-space
    ``x0``/``xb`` (1, ...)), ``batch`` samples per ONNX Runtime call."""
    codec = codec_of(model)
    n = masks.shape[0]
    out = np.empty(n, np.float64)
    buf = np.empty((min(batch, max(n, 1)), *x0.shape[1:]), np.float32)
    for a in range(0, n, batch):
        b = min(n, a + batch)
        xs = codec.masked_batch(x0, xb, masks[a:b], buf[: b - a])
        out[a:b] = objective.value(model.run(xs, batch=batch))
    return out
