"""Tiny ONNX classifiers built with onnx.helper, whose answers are computed by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from numpy.typing import NDArray
from onnx import TensorProto, helper, numpy_helper

from api_schemas.models import ModelManifest
from engine.models.runtime import LoadedModel, RuntimeOptions


def linear_classifier(
    weights: NDArray[np.float32],
    *,
    layout: str = "NCHW",
    bias: NDArray[np.float32] | None = None,
    batch: int | str = "N",
) -> onnx.ModelProto:
    """logits = flatten(x) @ W + b, for x of shape (N, 3, H, W) or (N, H, W, 3).

    ``weights`` has shape (classes, 3, H, W) (NCHW) or (classes, H, W, 3) (NHWC), so that
    logit k = sum(weights[k] * x).
    """
    classes = weights.shape[0]
    in_shape = [batch, *weights.shape[1:]]
    w = weights.reshape(classes, -1).T.astype(np.float32)
    b = np.zeros(classes, np.float32) if bias is None else bias.astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["input"], ["flat"], name="flatten", axis=1),
            helper.make_node("MatMul", ["flat", "W"], ["mm"], name="fc"),
            helper.make_node("Add", ["mm", "B"], ["logits"], name="bias"),
        ],
        "linear",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, classes])],
        initializer=[numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "B")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def conv_classifier(height: int = 16, width: int = 16, classes: int = 3) -> onnx.ModelProto:
    """Conv -> Relu -> GlobalAveragePool -> Flatten -> Gemm: a model with spatial layers."""
    rng = np.random.default_rng(0)
    cw = rng.normal(size=(4, 3, 3, 3)).astype(np.float32)
    fw = rng.normal(size=(classes, 4)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["input", "cw"], ["conv"], name="conv", pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["conv"], ["act"], name="act"),
            helper.make_node("GlobalAveragePool", ["act"], ["pool"], name="pool"),
            helper.make_node("Flatten", ["pool"], ["flat"], name="flatten"),
            helper.make_node("Gemm", ["flat", "fw"], ["logits"], name="fc", transB=1),
        ],
        "conv",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, height, width])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])],
        initializer=[numpy_helper.from_array(cw, "cw"), numpy_helper.from_array(fw, "fw")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def manifest(name: str, size: int, labels: list[str], layout: str = "NCHW") -> dict[str, object]:
    """Identity preprocessing: the model sees raw pixel values 0..255."""
    return {
        "name": name,
        "layout": layout,
        "input_size": [size, size],
        "scale": 1.0,
        "mean": [0.0, 0.0, 0.0],
        "std": [1.0, 1.0, 1.0],
        "resize": "nearest",
        "labels": labels,
    }


def region_classifier(
    size: int, y0: int, y1: int, x0: int, x1: int, *, channel: int = 0
) -> onnx.ModelProto:
    """NCHW, two classes: logit 0 = sum of one channel over rows y0:y1, cols x0:x1; logit 1 = 0.

    The output depends on that region only, so every method should point at it.
    """
    w = np.zeros((2, 3, size, size), np.float32)
    w[0, channel, y0:y1, x0:x1] = 1.0
    return linear_classifier(w)


def load_tiny(
    directory: Path,
    model: onnx.ModelProto,
    size: int,
    labels: list[str] | None = None,
    *,
    layout: str = "NCHW",
    max_batch: int = 16,
) -> LoadedModel:
    """Save ``model`` under ``directory`` and load it with identity preprocessing."""
    path = directory / "tiny.onnx"
    onnx.save(model, path)
    names = labels if labels is not None else ["a", "b"]
    m = ModelManifest.model_validate(manifest("tiny", size, names, layout))
    return LoadedModel("tiny", "v", path, m, RuntimeOptions(max_batch=max_batch))


class CountingModel:
    """Wraps a LoadedModel's ``run`` to record the batch size of every ONNX Runtime call."""

    def __init__(self, model: LoadedModel) -> None:
        self.model = model
        self.batches: list[int] = []
        self._run = model.run
        model.run = self._counted  # type: ignore[method-assign]

    def _counted(self, x: NDArray[np.float32]) -> NDArray[np.float32]:
        self.batches.append(int(x.shape[0]))
        return self._run(x)

    @property
    def images(self) -> int:
        return sum(self.batches)
