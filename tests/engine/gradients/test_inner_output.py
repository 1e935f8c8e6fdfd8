"""VJP models of an inner output (a 4-D conv layer, a rank-2 tensor), checked against
gradients computed by hand in numpy.

The graph: input -> Conv(w1, b1) "c1" -> Relu "r1" -> Conv(w2) "c2" -> Relu "r2" ->
Flatten "flat" -> Gemm "logits". For ``L = sum(seed * out)``:

* out = r1, wrt = input: dL/dx = conv1^T(seed * [c1 > 0]);
* out = r1, wrt = c1:    dL/dc1 = seed * [c1 > 0];
* out = c2, wrt = r1:    dL/dr1 = conv2^T(seed);
* out = c2, wrt = input: dL/dx = conv1^T(conv2^T(seed) * [c1 > 0]);
* out = flat, wrt = r1:  dL/dr1 = conv2^T(reshape(seed) * [c2 > 0]),

where conv^T is the transposed (adjoint) convolution, written out below with loops.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from gradient_testkit import session
from onnx import TensorProto, helper, numpy_helper

from engine.errors import InvalidInput, InvalidParams, UnknownLayer, UnsupportedModel
from engine.gradients import (
    GradientCache,
    GradientModel,
    VJPResult,
    build_vjp_model,
    check_differentiable,
    vjp,
)
from engine.gradients.builder import OptimizeLevel

C_IN, C1, C2, SIZE, CLASSES = 2, 3, 4, 5, 3
RNG = np.random.default_rng(42)
W1 = RNG.standard_normal((C1, C_IN, 3, 3))
B1 = RNG.standard_normal(C1) * 0.3
W2 = RNG.standard_normal((C2, C1, 3, 3))
FC = RNG.standard_normal((CLASSES, C2 * SIZE * SIZE))


def _model(extra: list[onnx.NodeProto] | None = None) -> onnx.ModelProto:
    nodes = [
        helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], name="conv1", pads=[1] * 4),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], name="conv2", pads=[1] * 4),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("Flatten", ["r2"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "fc"], ["logits"], name="fc", transB=1),
        *(extra or []),
    ]
    inits = [numpy_helper.from_array(a.astype(np.float32), n)
             for n, a in (("w1", W1), ("b1", B1), ("w2", W2), ("fc", FC))]
    graph = helper.make_graph(
        nodes, "conv_relu_conv",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", C_IN, SIZE, SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", CLASSES])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


# -- numpy, by hand: stride-1 3x3 convolutions with padding 1 --------------------------


def conv(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    n, _, h, width = x.shape
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = np.zeros((n, w.shape[0], h, width))
    for i in range(3):
        for j in range(3):
            out += np.einsum("nchw,oc->nohw", padded[:, :, i:i + h, j:j + width], w[:, :, i, j])
    return out if b is None else out + b[None, :, None, None]


def conv_t(g: np.ndarray, w: np.ndarray) -> np.ndarray:
    """d sum(g * conv(x, w)) / dx: each output cell sends g * w back to its window."""
    n, _, h, width = g.shape
    padded = np.zeros((n, w.shape[1], h + 2, width + 2))
    for i in range(3):
        for j in range(3):
            padded[:, :, i:i + h, j:j + width] += np.einsum("nohw,oc->nchw", g, w[:, :, i, j])
    return padded[:, :, 1:-1, 1:-1]


def forward(x: np.ndarray) -> dict[str, np.ndarray]:
    c1 = conv(x, W1, B1)
    r1 = np.maximum(c1, 0)
    c2 = conv(r1, W2)
    r2 = np.maximum(c2, 0)
    return {"c1": c1, "r1": r1, "c2": c2, "r2": r2, "flat": r2.reshape(len(x), -1)}


def _x(batch: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, C_IN, SIZE, SIZE))


def _run(output: str, wrt: str, x: np.ndarray, seed: np.ndarray,
         level: OptimizeLevel = "full") -> tuple[GradientModel, VJPResult]:
    gm = build_vjp_model(_model(), output=output, wrt=wrt, batch=len(x), level=level)
    return gm, vjp(session(gm.model), gm, x.astype(np.float32), seed.astype(np.float32))


def _close(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


# -- output = the first Relu (4-D) -------------------------------------------------------


@pytest.mark.parametrize("level", ["none", "full"])
def test_one_hot_seed_on_inner_relu_wrt_input(level: OptimizeLevel) -> None:
    x = _x(2)
    c1 = forward(x)["c1"]
    # one image, channel 1: a position where the Relu passes and one where it does not
    on = next((i, j) for i in range(1, 4) for j in range(1, 4) if c1[0, 1, i, j] > 0.1)
    off = next((i, j) for i in range(SIZE) for j in range(SIZE) if c1[1, 1, i, j] < -0.1)
    seed = np.zeros((2, C1, SIZE, SIZE))
    seed[0, 1, on[0], on[1]] = 1.0
    seed[1, 1, off[0], off[1]] = 1.0
    gm, result = _run("r1", "input", x, seed, level)
    assert gm.output_shape == (C1, SIZE, SIZE)
    # by hand: d r1[0, 1, i, j] / d x[0, :, i-1+a, j-1+b] = w1[1, :, a, b] (inside, c1 > 0)
    want = np.zeros_like(x)
    i, j = on
    want[0, :, i - 1:i + 2, j - 1:j + 2] = W1[1]
    _close(result.grad, want)
    assert not np.any(result.grad[1])
    _close(result.output, np.maximum(c1, 0))
    assert result.logits is result.output
    assert result.activation is None


@pytest.mark.parametrize("level", ["none", "full"])
def test_random_seed_on_inner_relu_wrt_input(level: OptimizeLevel) -> None:
    x = _x(3, seed=1)
    seed = np.random.default_rng(2).standard_normal((3, C1, SIZE, SIZE))
    _, result = _run("r1", "input", x, seed, level)
    c1 = forward(x)["c1"]
    _close(result.grad, conv_t(seed * (c1 > 0), W1))


def test_inner_output_prunes_what_comes_after() -> None:
    gm = build_vjp_model(_model(), output="r1", wrt="input", batch=2)
    graph = gm.model.graph
    assert [v.name for v in graph.output] == ["r1", "grad"]
    assert {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in graph.input}["seed"] == [2, C1, SIZE, SIZE]
    names = {t.name for t in graph.initializer}
    assert not names & {"w2", "fc"}
    read = {name for node in graph.node for name in node.input}
    produced = {name for node in graph.node for name in node.output}
    assert not (read | produced) & {"c2", "r2", "flat", "logits", "w2", "fc"}
    onnx.checker.check_model(gm.model)


# -- wrt an inner layer, output an inner layer --------------------------------------------


@pytest.mark.parametrize("level", ["none", "full"])
def test_inner_layer_to_inner_output(level: OptimizeLevel) -> None:
    x = _x(2, seed=3)
    values = forward(x)
    rng = np.random.default_rng(4)
    # out = r1, wrt = c1: the Relu's mask
    seed = rng.standard_normal((2, C1, SIZE, SIZE))
    gm, result = _run("r1", "c1", x, seed, level)
    assert gm.is_layer and gm.outputs == ("r1", "grad", "activation")
    assert result.activation is not None
    _close(result.activation, values["c1"])
    _close(result.grad, seed * (values["c1"] > 0))
    # out = c2, wrt = r1: the second conv's adjoint
    seed2 = rng.standard_normal((2, C2, SIZE, SIZE))
    gm, result = _run("c2", "r1", x, seed2, level)
    assert gm.output_shape == (C2, SIZE, SIZE)
    assert result.activation is not None
    _close(result.activation, values["r1"])
    _close(result.output, values["c2"])
    _close(result.grad, conv_t(seed2, W2))
    # out = c2, wrt = input: through both convs and the Relu between them
    _, result = _run("c2", "input", x, seed2, level)
    want = conv_t(conv_t(seed2, W2) * (values["c1"] > 0), W1)
    _close(result.grad, want)


@pytest.mark.parametrize("level", ["none", "full"])
def test_rank_two_inner_output(level: OptimizeLevel) -> None:
    x = _x(2, seed=5)
    values = forward(x)
    seed = np.random.default_rng(6).standard_normal((2, C2 * SIZE * SIZE))
    gm, result = _run("flat", "r1", x, seed, level)
    assert gm.output_shape == (C2 * SIZE * SIZE,)
    _close(result.output, values["flat"])
    g = seed.reshape(values["c2"].shape) * (values["c2"] > 0)
    _close(result.grad, conv_t(g, W2))


def test_finite_differences_agree_with_the_hand_gradient() -> None:
    """The hand formulas themselves, against central differences of the numpy forward."""
    x = _x(1, seed=7)
    seed = np.random.default_rng(8).standard_normal((1, C2, SIZE, SIZE))

    def loss(v: np.ndarray) -> float:
        return float(np.sum(seed * forward(v)["c2"]))

    fd = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[index] += 1e-6
        down[index] -= 1e-6
        fd[index] = (loss(up) - loss(down)) / 2e-6
    want = conv_t(conv_t(seed, W2) * (forward(x)["c1"] > 0), W1)
    np.testing.assert_allclose(want, fd, rtol=1e-5, atol=1e-6)


# -- refusals ------------------------------------------------------------------------------


def test_seed_of_the_wrong_shape_is_refused() -> None:
    gm = build_vjp_model(_model(), output="r1", wrt="input", batch=2)
    sess = session(gm.model)
    x = _x(2).astype(np.float32)
    for shape in [(2, CLASSES), (2, C1, SIZE, SIZE - 1), (1, C1, SIZE, SIZE),
                  (2, C1 * SIZE * SIZE), (2, C1, SIZE, SIZE, 1)]:
        with pytest.raises(InvalidInput) as caught:
            vjp(sess, gm, x, np.zeros(shape, np.float32))
        assert caught.value.details["expected"] == [2, C1, SIZE, SIZE]
    vjp(sess, gm, x, np.zeros((2, C1, SIZE, SIZE), np.float32))   # the right one runs
    # and the head still wants [n, C]
    head = build_vjp_model(_model(), output="logits", wrt="input", batch=2)
    with pytest.raises(InvalidInput):
        vjp(session(head.model), head, x, np.zeros((2, C1, SIZE, SIZE), np.float32))


def test_wrt_not_upstream_of_the_output_is_refused() -> None:
    model = _model()
    for wrt in ("c2", "r2", "logits"):     # downstream of r1
        with pytest.raises(UnknownLayer) as caught:
            build_vjp_model(model, output="r1", wrt=wrt, batch=1)
        assert caught.value.details == {"layer": wrt, "output": "r1"}
        with pytest.raises(UnknownLayer):
            check_differentiable(model, wrt=wrt, output="r1")
    with pytest.raises(UnknownLayer):       # a weight
        build_vjp_model(model, output="r1", wrt="w2", batch=1)
    with pytest.raises(InvalidParams):      # the output itself
        check_differentiable(model, wrt="r1", output="r1")
    check_differentiable(model, wrt="input", output="r1")
    check_differentiable(model, wrt="c1", output="c2")


def test_output_that_is_not_a_float_tensor_is_refused() -> None:
    extra = [helper.make_node("ArgMax", ["logits"], ["top"], name="argmax", keepdims=0),
             helper.make_node("Shape", ["r1"], ["r1_shape"], name="shape")]
    model = _model(extra)
    for output in ("top", "r1_shape"):
        with pytest.raises(InvalidParams) as caught:
            build_vjp_model(model, output=output, wrt="input", batch=1)
        assert caught.value.details["output"] == output
        with pytest.raises(InvalidParams):
            check_differentiable(model, wrt="input", output=output)
    for output in ("w1", "nope"):           # a weight; no such tensor
        with pytest.raises(InvalidParams):
            build_vjp_model(model, output=output, wrt="input", batch=1)


def test_output_without_a_batch_axis_is_refused() -> None:
    total = helper.make_node("ReduceSum", ["r1"], ["total"], name="total", keepdims=0)
    model = _model([total])
    check_differentiable(model, wrt="input", output="total")
    with pytest.raises(UnsupportedModel):
        build_vjp_model(model, output="total", wrt="input", batch=2)


# -- the cache -----------------------------------------------------------------------------


def test_cache_keys_inner_outputs_apart(tmp_path: Path) -> None:
    model = _model()
    cache = GradientCache(tmp_path)
    _, head = cache.get_session(model, "h", "input", "logits", 1)
    sess, inner = cache.get_session(model, "h", "input", "r1", 1)
    _, layer = cache.get_session(model, "h", "c1", "r1", 1)
    assert cache.builds == 3 and cache.cached_sessions() == 3
    assert (head.output_shape, inner.output_shape) == ((CLASSES,), (C1, SIZE, SIZE))
    assert layer.is_layer and layer.output == "r1"
    assert cache.path_for("h", "input", "r1", 1) != cache.path_for("h", "input", "logits", 1)
    x = _x(1, seed=9)
    seed = np.random.default_rng(10).standard_normal((1, C1, SIZE, SIZE))
    result = vjp(sess, inner, x.astype(np.float32), seed.astype(np.float32))
    _close(result.grad, conv_t(seed * (forward(x)["c1"] > 0), W1))
    fresh = GradientCache(tmp_path)        # another process: from disk, same signature
    _, loaded = fresh.get_session(model, "h", "input", "r1", 1)
    assert fresh.builds == 0 and loaded.output_shape == (C1, SIZE, SIZE)
    assert loaded.outputs == inner.outputs
