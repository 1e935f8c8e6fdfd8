"""A tiny CNN whose layer activations and gradients are computed by hand: a 1×1
convolution (a per-pixel linear map of the colours to C channels), ReLU ("act"), global
average pooling and a linear head with no bias. So at "act", A_p = relu(K x_p), and the
gradient of logit t w.r.t. A_pc is head[t, c] / positions: Σ gradient × activation over the
layer is the logit itself."""

from __future__ import annotations

import numpy as np
import onnx
from numpy.typing import NDArray
from onnx import TensorProto, helper, numpy_helper


def pointwise_cnn(
    kernel: NDArray[np.float32], head: NDArray[np.float32], size: int
) -> onnx.ModelProto:
    """kernel (C, 3), head (classes, C); input (N, 3, size, size) -> logits (N, classes)."""
    c = kernel.shape[0]
    classes = head.shape[0]
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["input", "k"], ["conv"], name="conv"),
            helper.make_node("Relu", ["conv"], ["act"], name="act"),
            helper.make_node("GlobalAveragePool", ["act"], ["pool"], name="pool"),
            helper.make_node("Flatten", ["pool"], ["flat"], name="flatten"),
            helper.make_node("Gemm", ["flat", "head"], ["logits"], name="fc", transB=1),
        ],
        "pointwise",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])],
        initializer=[
            numpy_helper.from_array(kernel.reshape(c, 3, 1, 1).astype(np.float32), "k"),
            numpy_helper.from_array(head.astype(np.float32), "head"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def by_hand(kernel: NDArray[np.float32], pixels: NDArray[np.float32]) -> NDArray[np.float64]:
    """The activations at "act" for one image (h, w, 3) with identity preprocessing, as
    (positions × channels), row-major over (y, x)."""
    x = pixels.reshape(-1, 3).astype(np.float64)
    out: NDArray[np.float64] = np.maximum(x @ kernel.astype(np.float64).T, 0.0)
    return out


def scene(seed: int = 0, channels: int = 6, size: int = 8, classes: int = 3) -> tuple[
    NDArray[np.float32], NDArray[np.float32], NDArray[np.float32]
]:
    """A kernel, a head and an image (size, size, 3) in 0..255 whose activations have
    structure (two colour regions) and no all-zero rows."""
    rng = np.random.default_rng(seed)
    kernel = rng.normal(size=(channels, 3)).astype(np.float32)
    kernel[0] = np.abs(kernel[0])  # one channel positive everywhere
    head = rng.normal(size=(classes, channels)).astype(np.float32)
    img = np.zeros((size, size, 3), np.float32)
    img[: size // 2] = (200.0, 40.0, 10.0)
    img[size // 2 :] = (10.0, 60.0, 220.0)
    img += rng.uniform(0, 30, img.shape).astype(np.float32)
    return kernel, head, img
