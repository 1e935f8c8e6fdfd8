"""Tiny series models built with onnx.helper, loaded as the engine loads them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from api_schemas.modalities.time_series import TimeSeriesManifest
from engine.gradients import GradientCache
from engine.models.runtime import LoadedModel, RuntimeOptions


def _init(name: str, a: Any) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(a, np.float32), name)


def spike_cnn(length: int, layout: str = "NCT") -> onnx.ModelProto:
    """A 1-D CNN that fires on a spike: conv1 (kernel 5, pad 2) holds a spike detector
    ``[-1, -1, 4, -1, -1]`` minus a threshold of 1, ReLU; conv2 (kernel 3, pad 1) spreads it,
    ReLU -> ``features`` (1, 2, T); global average pooling; class 0 ("spike") = 8·channel 0,
    class 1 ("flat") = 1 − 8·channel 0. Smooth inputs give 0 at the detector; a spike of
    height h at t0 gives (4h − 1) at t0 alone (less on its neighbours), so every map should
    peak at t0."""
    w1 = np.zeros((2, 1, 5), np.float32)
    w1[0, 0] = [-1, -1, 4, -1, -1]
    w1[1, 0] = [0.2, 0.2, 0.2, 0.2, 0.2]  # a smoother, irrelevant to the head
    b1 = np.array([-1.0, 0.0], np.float32)
    w2 = np.zeros((2, 2, 3), np.float32)
    w2[0, 0] = [0.25, 1.0, 0.25]
    w2[1, 1] = [0.0, 1.0, 0.0]
    wf = np.array([[8.0, 0.0], [-8.0, 0.0]], np.float32)  # Gemm (K=2 -> 2 classes), transB
    bf = np.array([0.0, 1.0], np.float32)
    nodes = []
    x_shape: list[Any] = ["N", 1, length] if layout == "NCT" else ["N", length, 1]
    src = "x"
    if layout == "NTC":
        nodes.append(helper.make_node("Transpose", ["x"], ["x_nct"], perm=[0, 2, 1]))
        src = "x_nct"
    nodes += [
        helper.make_node("Conv", [src, "w1", "b1"], ["c1"], kernel_shape=[5], pads=[2, 2]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], kernel_shape=[3], pads=[1, 1]),
        helper.make_node("Relu", ["c2"], ["features"]),
        helper.make_node("GlobalAveragePool", ["features"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "wf", "bf"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "spike_cnn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])],
        [_init("w1", w1), _init("b1", b1), _init("w2", w2), _init("wf", wf), _init("bf", bf)],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def linear_series(w: Any, layout: str = "NCT") -> onnx.ModelProto:
    """logits = [Σ w ⊙ x, 0]: class 0 is a weighted sum of the series (w: (C, T))."""
    w = np.asarray(w, np.float32)
    c, t = w.shape
    wt = w if layout == "NCT" else w.T
    full = np.stack([wt.reshape(-1), np.zeros(c * t, np.float32)])
    x_shape: list[Any] = ["N", c, t] if layout == "NCT" else ["N", t, c]
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["x"], ["flat"], axis=1),
            helper.make_node("Gemm", ["flat", "w"], ["logits"], transB=1),
        ],
        "linear_series",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])],
        [_init("w", full)],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def series_manifest(
    length: int, channels: int = 1, layout: str = "NCT", **kw: Any
) -> TimeSeriesManifest:
    return TimeSeriesManifest.model_validate(
        {"modality": "time_series", "name": "tiny-series", "labels": ["spike", "flat"],
         "channels": channels, "length": length, "layout": layout, **kw}
    )


def loaded_series(
    directory: Path, model: onnx.ModelProto, length: int, channels: int = 1, layout: str = "NCT"
) -> LoadedModel:
    path = directory / "series.onnx"
    onnx.save(model, path)
    m = series_manifest(length, channels, layout)
    cache = GradientCache(directory / "gradients")
    return LoadedModel("tiny-series", "s" + str(abs(hash(path))), path, m, RuntimeOptions(), cache)


def spiky_series(length: int, at: int, height: float = 3.0, seed: int = 0) -> np.ndarray:
    """A smooth wave (amplitude 0.3) with a spike of ``height`` at ``at``: (1, T) float32."""
    t = np.arange(length)
    rng = np.random.default_rng(seed)
    x = 0.3 * np.sin(2 * np.pi * t / 37.0 + rng.uniform(0, 6))
    x[at] += height
    return x[None, :].astype(np.float32)
