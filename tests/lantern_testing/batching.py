"""A tiny two-convolution classifier for the batching tests (engine, runner, API)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SIZE = 12
CLASSES = ["a", "b", "c", "d"]


def two_conv_classifier() -> onnx.ModelProto:
    """Conv -> Relu (act1) -> Conv -> Relu (act2) -> GlobalAveragePool -> Flatten -> Gemm:
    gradients through a ReLU, a CAM head on act2."""
    rng = np.random.default_rng(3)
    c1 = rng.normal(0, 0.05, (5, 3, 3, 3)).astype(np.float32)
    c2 = rng.normal(0, 0.3, (6, 5, 3, 3)).astype(np.float32)
    fw = rng.normal(size=(len(CLASSES), 6)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["input", "c1"], ["conv1"], name="conv1", pads=[1] * 4),
            helper.make_node("Relu", ["conv1"], ["act1"], name="act1"),
            helper.make_node("Conv", ["act1", "c2"], ["conv2"], name="conv2", pads=[1] * 4),
            helper.make_node("Relu", ["conv2"], ["act2"], name="act2"),
            helper.make_node("GlobalAveragePool", ["act2"], ["pool"], name="pool"),
            helper.make_node("Flatten", ["pool"], ["flat"], name="flatten"),
            helper.make_node("Gemm", ["flat", "fw"], ["logits"], name="fc", transB=1),
        ],
        "two_conv",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", len(CLASSES)])],
        initializer=[
            numpy_helper.from_array(c1, "c1"),
            numpy_helper.from_array(c2, "c2"),
            numpy_helper.from_array(fw, "fw"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model
