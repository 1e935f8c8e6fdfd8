"""Tiny models built with onnx.helper, and numerical helpers, for the gradient-engine tests.

Finite differences run in float64 through ``onnx.reference`` (ONNX Runtime's CPU provider
has no double Conv/ConvTranspose/AveragePool kernels); the gradients under test come from
the float32 VJP model run by ONNX Runtime. The same weights feed both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

OPSET = 17


@dataclass
class Tiny:
    """A float32 model and its float64 twin (same weights)."""

    name: str
    model: onnx.ModelProto
    model64: onnx.ModelProto
    input_shape: tuple[int, ...]
    layers: tuple[str, ...]   # inner tensors worth differentiating against
    classes: int


class _Graph:
    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.weights: dict[str, np.ndarray] = {}

    def weight(self, name: str, shape: tuple[int, ...], scale: float = 0.5,
               positive: bool = False) -> str:
        value = self.rng.standard_normal(shape) * scale
        self.weights[name] = np.abs(value) + 0.5 if positive else value
        return name

    def const(self, name: str, value: np.ndarray) -> str:
        self.weights[name] = value
        return name

    def node(self, op: str, inputs: list[str], output: str, **attrs: object) -> str:
        self.nodes.append(helper.make_node(op, inputs, [output], name=f"{op}_{output}", **attrs))
        return output

    def build(self, name: str, input_shape: tuple[int, ...], output: str, classes: int,
              layers: tuple[str, ...], dynamic_batch: bool = True) -> Tiny:
        models = []
        for dtype, elem in ((np.float32, TensorProto.FLOAT), (np.float64, TensorProto.DOUBLE)):
            inits = []
            for key, value in self.weights.items():
                array = value.astype(dtype) if value.dtype.kind == "f" else value
                inits.append(numpy_helper.from_array(array, key))
            nodes = []
            for node in self.nodes:
                copy = onnx.NodeProto()
                copy.CopyFrom(node)
                for attribute in copy.attribute:
                    if attribute.name == "to" and attribute.i == TensorProto.FLOAT:
                        attribute.i = elem
                nodes.append(copy)
            batch: str | int = "N" if dynamic_batch else input_shape[0]
            graph = helper.make_graph(
                nodes, name,
                [helper.make_tensor_value_info("input", elem, [batch, *input_shape[1:]])],
                [helper.make_tensor_value_info(output, elem, [batch, classes])], inits)
            models.append(helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)]))
        return Tiny(name, models[0], models[1], input_shape, layers, classes)


def cnn(seed: int = 0) -> Tiny:
    """Grouped/depthwise/strided/padded Conv, BatchNorm, Relu, Clip, MaxPool, an SE block
    (GlobalAveragePool, Sigmoid, Mul), AveragePool, Concat, Add, Flatten, Gemm."""
    g = _Graph(seed)
    c = g.node("Conv", ["input", g.weight("w1", (8, 2, 3, 3))], "c1", group=2,
               strides=[2, 2], pads=[1, 1, 1, 1])
    b = g.node("BatchNormalization", [c, g.weight("bn_s", (8,)), g.weight("bn_b", (8,)),
                                      g.weight("bn_m", (8,), 0.1),
                                      g.weight("bn_v", (8,), positive=True)], "bn")
    r = g.node("Relu", [b], "r1")
    d = g.node("Conv", [r, g.weight("wd", (8, 1, 3, 3)), g.weight("bd", (8,))], "dw",
               group=8, pads=[1, 1, 1, 1])
    # MaxPool before Clip: a clipped tensor is full of ties, where max has no derivative
    m = g.node("MaxPool", [d], "mp", kernel_shape=[2, 2], strides=[2, 2])
    k = g.node("Clip", [m, g.const("lo", np.array(0.0)), g.const("hi", np.array(1.0))], "clip")
    p = g.node("Conv", [k, g.weight("wp", (6, 8, 1, 1))], "pw")
    s = g.node("GlobalAveragePool", [p], "se_pool")
    s = g.node("Conv", [s, g.weight("wse", (6, 6, 1, 1)), g.weight("bse", (6,))], "se_fc")
    s = g.node("Sigmoid", [s], "se_gate")
    e = g.node("Mul", [p, s], "se_out")
    a = g.node("AveragePool", [e], "ap", kernel_shape=[2, 2], strides=[1, 1],
               pads=[0, 0, 1, 1])
    a = g.node("Add", [a, g.weight("shift", (1, 6, 1, 1))], "ap_shift")
    cat = g.node("Concat", [a, e], "cat", axis=1)
    gp = g.node("GlobalAveragePool", [cat], "gap")
    f = g.node("Flatten", [gp], "flat", axis=1)
    g.node("Gemm", [f, g.weight("fc", (5, 12)), g.weight("fcb", (5,))], "logits", transB=1)
    return g.build("cnn", (2, 4, 12, 12), "logits", 5, ("bn", "clip", "se_out", "cat"))


def mlp(seed: int = 1) -> Tiny:
    """Reshape, MatMul, Add, Sigmoid, Mul, Relu, Gemm, Softmax."""
    g = _Graph(seed)
    x = g.node("Reshape", ["input", g.const("shape", np.array([-1, 12], dtype=np.int64))],
               "x2")
    h = g.node("MatMul", [x, g.weight("w1", (12, 10))], "h1")
    h = g.node("Add", [h, g.weight("b1", (10,))], "h1b")
    gate = g.node("Sigmoid", [h], "gate")
    h = g.node("Mul", [h, gate], "swish")
    h = g.node("Relu", [h], "h2")
    h = g.node("Gemm", [h, g.weight("w2", (10, 4)), g.weight("b2", (4,))], "h3")
    g.node("Softmax", [h], "probs", axis=1)
    return g.build("mlp", (3, 3, 4), "probs", 4, ("h1b", "h2"))


def torch_style(seed: int = 2) -> Tiny:
    """torch.onnx.export style: a Pad whose widths are computed from Shape/Slice/Concat/Cast
    (with a dynamic batch), then Conv, Relu, Reshape via a computed target, Gemm."""
    g = _Graph(seed)
    shape = g.node("Shape", ["input"], "in_shape")
    batch = g.node("Slice", [shape, g.const("s0", np.array([0], dtype=np.int64)),
                             g.const("s1", np.array([1], dtype=np.int64))], "batch_dim")
    zeros = g.node("Sub", [batch, batch], "zero_dim")  # computed 0, as exporters do
    hw = g.node("Slice", [shape, g.const("s2", np.array([2], dtype=np.int64)),
                          g.const("s4", np.array([4], dtype=np.int64))], "hw")
    odd = g.node("Mod", [hw, g.const("two", np.array([2], dtype=np.int64))], "odd")
    one = g.const("one", np.array([1], dtype=np.int64))
    pads64 = g.node("Concat", [zeros, zeros, one, one, zeros, zeros,
                               g.node("Add", [odd, one], "pad_after_h")], "pads_f", axis=0)
    pads_f = g.node("Cast", [pads64], "pads_float", to=TensorProto.FLOAT)
    pads = g.node("Cast", [pads_f], "pads", to=TensorProto.INT64)
    # 2 + 2 = 4 entries needed after the leading 4: [0,0,1,1, 0,0,odd_h+1, odd_w+1]
    padded = g.node("Pad", ["input", pads], "padded", mode="constant")
    c = g.node("Conv", [padded, g.weight("w", (4, 3, 3, 3))], "conv", strides=[2, 2])
    r = g.node("Relu", [c], "relu")
    n = g.node("Shape", [r], "r_shape")
    n0 = g.node("Gather", [n, g.const("i0", np.array([0], dtype=np.int64))], "n0")
    target = g.node("Concat", [n0, g.const("m1", np.array([-1], dtype=np.int64))], "target",
                    axis=0)
    f = g.node("Reshape", [r, target], "flat")
    g.node("Gemm", [f, g.weight("fc", (3, 4 * 4 * 4))], "logits", transB=1)
    return g.build("torch_style", (2, 3, 7, 7), "logits", 3, ("relu",))


MODELS: dict[str, Callable[[], Tiny]] = {"cnn": cnn, "mlp": mlp, "torch_style": torch_style}


def session(model: onnx.ModelProto) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options,
                                providers=["CPUExecutionProvider"])


def reference_head(model64: onnx.ModelProto, layer: str | None, output: str
                   ) -> Callable[[np.ndarray, np.ndarray], float]:
    """L(value) = sum(seed * output) in float64, as a function of the input or a layer.

    For a layer the graph is cut there: the layer becomes the input of the head."""
    if layer is None:
        evaluator = ReferenceEvaluator(model64)
        feed = "input"
    else:
        head = onnx.utils.Extractor(onnx.shape_inference.infer_shapes(model64)).extract_model(
            [layer], [output])
        evaluator = ReferenceEvaluator(head)
        feed = layer

    def loss(value: np.ndarray, seed: np.ndarray) -> float:
        (out,) = evaluator.run([output], {feed: value})
        return float(np.sum(seed * np.asarray(out, dtype=np.float64)))

    return loss


def layer_value(model64: onnx.ModelProto, layer: str, x: np.ndarray) -> np.ndarray:
    evaluator = ReferenceEvaluator(model64)
    (value,) = evaluator.run([layer], {"input": x})
    return np.asarray(value, dtype=np.float64)


def finite_difference(loss: Callable[[np.ndarray, np.ndarray], float], point: np.ndarray,
                      seed: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central differences of `loss` at `point`, every element."""
    grad = np.zeros_like(point, dtype=np.float64)
    flat = point.reshape(-1)
    out = grad.reshape(-1)
    for i in range(flat.size):
        original = flat[i]
        flat[i] = original + eps
        up = loss(point, seed)
        flat[i] = original - eps
        down = loss(point, seed)
        flat[i] = original
        out[i] = (up - down) / (2 * eps)
    return grad


def relative_error(got: np.ndarray, want: np.ndarray) -> float:
    scale = max(float(np.linalg.norm(want)), 1e-12)
    return float(np.linalg.norm(got.astype(np.float64) - want) / scale)
