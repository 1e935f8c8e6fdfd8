"""The optimisation passes keep results equal to the raw onnx-ad graph."""

from __future__ import annotations

import pathlib

import numpy as np
import onnx
import pytest
from gradient_testkit import MODELS, Tiny, session

from engine.gradients import optimize as opt
from engine.gradients.builder import build_vjp_model

EFFICIENTNET = pathlib.Path("/tmp/lantern-zoo/efficientnet-lite0.onnx")


def _run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    return [np.asarray(v) for v in session(model).run(None, feeds)]


def _feeds(tiny: Tiny, batch: int, seed: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"input": rng.standard_normal((batch, *tiny.input_shape[1:])).astype(np.float32),
            "seed": rng.standard_normal((batch, tiny.classes)).astype(np.float32)}


def _assert_same(raw: list[np.ndarray], other: list[np.ndarray]) -> None:
    assert len(raw) == len(other)
    for a, b in zip(raw, other, strict=True):
        assert a.shape == b.shape
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("batch", [1, 3])
def test_optimised_equals_raw(tiny: Tiny, batch: int) -> None:
    output = tiny.model.graph.output[0].name
    feeds = _feeds(tiny, batch)
    for wrt in ("input", *tiny.layers):
        raw = build_vjp_model(tiny.model, output=output, wrt=wrt, batch=batch, level="none")
        full = build_vjp_model(tiny.model, output=output, wrt=wrt, batch=batch, level="full")
        assert full.outputs == raw.outputs
        assert len(full.model.graph.node) < len(raw.model.graph.node)
        _assert_same(_run(raw.model, feeds), _run(full.model, feeds))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_each_pass_alone_keeps_results(name: str) -> None:
    tiny = MODELS[name]()
    output = tiny.model.graph.output[0].name
    raw = build_vjp_model(tiny.model, output=output, wrt="input", batch=2, level="none").model
    feeds = _feeds(tiny, 2)
    want = _run(raw, feeds)
    passes = [opt.prune_dead, opt.fold_constants, opt.simplify_reshapes, opt.simplify_masks,
              opt.rewrite_conv_transpose, opt.sink_reshapes]
    for step in passes:
        _assert_same(want, _run(opt.optimize(raw, [step]), feeds))


@pytest.mark.parametrize("strategy", ["none", "polyphase", "polyphase_split", "pad",
                                      "depth_to_space", "conv_transpose"])
def test_strided_conv_transpose_strategies(strategy: str, monkeypatch: pytest.MonkeyPatch
                                           ) -> None:
    tiny = MODELS["cnn"]()  # a grouped stride-2 Conv, whose adjoint is a strided ConvTranspose
    raw = build_vjp_model(tiny.model, output="logits", wrt="input", batch=2, level="none")
    monkeypatch.setattr(opt, "ZERO_INSERTION", strategy)
    rewritten = opt.rewrite_conv_transpose(raw.model)
    feeds = _feeds(tiny, 2)
    _assert_same(_run(raw.model, feeds), _run(rewritten, feeds))


def test_depthwise_strided_conv_transpose_strategies(monkeypatch: pytest.MonkeyPatch) -> None:
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    for stride, kernel, pads, size in [(2, 3, 1, 9), (2, 5, 2, 8), (2, 3, 0, 8)]:
        w = rng.standard_normal((6, 1, kernel, kernel)).astype(np.float32)
        conv = helper.make_node("Conv", ["input", "w"], ["y"], group=6, strides=[stride] * 2,
                                pads=[pads] * 4)
        flat = helper.make_node("Flatten", ["y"], ["flat"])
        fc = rng.standard_normal((4, 1)).astype(np.float32)
        out = (size + 2 * pads - kernel) // stride + 1
        fcw = rng.standard_normal((6 * out * out, 4)).astype(np.float32)
        nodes = [conv, flat, helper.make_node("MatMul", ["flat", "fcw"], ["logits"])]
        graph = helper.make_graph(
            nodes, "dw", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                        ["N", 6, size, size])],
            [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 4])],
            [numpy_helper.from_array(w, "w"), numpy_helper.from_array(fcw, "fcw")])
        del fc
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        raw = build_vjp_model(model, output="logits", wrt="input", batch=2, level="none")
        feeds = {"input": rng.standard_normal((2, 6, size, size)).astype(np.float32),
                 "seed": rng.standard_normal((2, 4)).astype(np.float32)}
        want = _run(raw.model, feeds)
        for strategy in ["polyphase", "polyphase_split", "pad", "depth_to_space",
                         "conv_transpose"]:
            monkeypatch.setattr(opt, "ZERO_INSERTION", strategy)
            _assert_same(want, _run(opt.rewrite_conv_transpose(raw.model), feeds))


def test_pruning_removes_dead_nodes_without_changing_outputs(tiny: Tiny) -> None:
    output = tiny.model.graph.output[0].name
    raw = build_vjp_model(tiny.model, output=output, wrt="input", batch=2, level="none").model
    pruned = opt.prune_dead(raw)
    before, after = len(raw.graph.node), len(pruned.graph.node)
    assert after < before, (before, after)
    # nothing left that no output reads
    assert len(opt.prune_dead(pruned).graph.node) == after
    assert len(pruned.graph.initializer) <= len(raw.graph.initializer)
    feeds = _feeds(tiny, 2)
    _assert_same(_run(raw, feeds), _run(pruned, feeds))


def test_pruning_drops_weight_adjoints() -> None:
    # onnx-ad emits the adjoint of the fc weight and of the Clip bounds; nothing reads them
    tiny = MODELS["cnn"]()
    raw = build_vjp_model(tiny.model, output="logits", wrt="input", batch=1, level="none").model
    pruned = opt.prune_dead(raw)
    ops_raw, ops_pruned = opt.op_histogram(raw), opt.op_histogram(pruned)
    assert ops_pruned.get("ReduceSum", 0) < ops_raw.get("ReduceSum", 0)


@pytest.mark.skipif(not EFFICIENTNET.is_file(), reason="built-in model not built")
@pytest.mark.parametrize(("wrt", "batch"), [("input", 1), ("head.act", 1), ("input", 16)])
def test_optimised_equals_raw_on_efficientnet(wrt: str, batch: int) -> None:
    model = onnx.load(str(EFFICIENTNET))
    rng = np.random.default_rng(0)
    feeds = {"input": rng.standard_normal((batch, 3, 224, 224)).astype(np.float32),
             "seed": rng.standard_normal((batch, 1000)).astype(np.float32)}
    raw = build_vjp_model(model, output="logits", wrt=wrt, batch=batch, level="none")
    pruned = build_vjp_model(model, output="logits", wrt=wrt, batch=batch, level="prune")
    full = build_vjp_model(model, output="logits", wrt=wrt, batch=batch, level="full")
    assert len(full.model.graph.node) < len(pruned.model.graph.node) < \
        len(raw.model.graph.node)
    want = _run(raw.model, feeds)
    _assert_same(want, _run(pruned.model, feeds))
    _assert_same(want, _run(full.model, feeds))


def _clip_model() -> onnx.ModelProto:
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(5)
    nodes = [helper.make_node("Clip", ["input", "lo", "hi"], ["r"], name="relu6"),
             helper.make_node("Flatten", ["r"], ["f"]),
             helper.make_node("Gemm", ["f", "fc"], ["logits"], transB=1)]
    graph = helper.make_graph(
        nodes, "clip", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                      ["N", 2, 3, 3])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])],
        [numpy_helper.from_array(np.array(0.0, np.float32), "lo"),
         numpy_helper.from_array(np.array(1.0, np.float32), "hi"),
         numpy_helper.from_array(rng.standard_normal((3, 18)).astype(np.float32), "fc")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _bound_inputs() -> np.ndarray:
    tiny = np.float32(2.0**-100)
    values = [0.0, 1.0, 0.5, -0.2, 1.3, -0.0, np.nextafter(np.float32(1), np.float32(2)),
              np.nextafter(np.float32(1), np.float32(0)), 1e-38, -1e-20, -2 * tiny, 3e38,
              -3e38, 1e-45, 0.99, 0.01, 7.0, -7.0]
    return np.array(values, dtype=np.float32).reshape(1, 2, 3, 3)


def test_exact_masks_match_raw_on_the_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    """The default Clip masks (depthwise-Conv masks, and with those off the
    Equal(x, Clip(x)) form) equal the raw graph even for inputs exactly on a bound.
    With MASK_FROM_OUTPUT on (opt-in), only such inputs -- the kink -- differ."""
    model = _clip_model()
    x = _bound_inputs()
    feeds = {"input": x, "seed": np.ones((1, 3), np.float32)}
    raw = build_vjp_model(model, output="logits", wrt="input", batch=1, level="none")
    want = _run(raw.model, feeds)
    default = build_vjp_model(model, output="logits", wrt="input", batch=1, level="full")
    assert "LeakyRelu" in opt.op_histogram(default.model)
    assert "Equal" not in opt.op_histogram(default.model)
    _assert_same(want, _run(default.model, feeds))
    np.testing.assert_array_equal(_run(default.model, feeds)[0], want[0])  # forward exact
    monkeypatch.setattr(opt, "EXACT_CONV_MASKS", False)
    exact = build_vjp_model(model, output="logits", wrt="input", batch=1, level="full")
    assert "Equal" in opt.op_histogram(exact.model)
    _assert_same(want, _run(exact.model, feeds))
    monkeypatch.setattr(opt, "MASK_FROM_OUTPUT", True)
    fast = build_vjp_model(model, output="logits", wrt="input", batch=1, level="full")
    got = _run(fast.model, feeds)
    on_bound = (x == 0.0) | (x == 1.0)
    np.testing.assert_allclose(got[1][~on_bound], want[1][~on_bound], rtol=1e-5, atol=1e-6)
    assert np.all(got[1][on_bound] == 0.0)  # a bound counts as clipped (raw: as inside)


@pytest.mark.parametrize("hi", [6.0, 1.0, 0.5, 3.7, 255.0, 1e-3, 1e6])
def test_conv_mask_constants_are_exact(hi: float) -> None:
    """The mask arithmetic of `conv_clip_masks`, replayed in float32 numpy, is the exact
    indicator of [0, hi] on the bounds, their neighbours, zeros and extremes."""
    consts = opt.conv_mask_constants(hi)
    assert consts is not None
    w, alpha = consts
    f32 = np.float32
    bound = f32(hi)
    up, down = np.nextafter(bound, f32(np.inf)), np.nextafter(bound, f32(0))
    rng = np.random.default_rng(0)
    x = np.concatenate([
        np.array([0.0, -0.0, bound, up, down, 2 * bound, -bound, 1e-45, -2.0**-99, 1e-30,
                  -1e-20, 3e38, -3e38, np.inf, -np.inf], f32),
        (rng.standard_normal(10000) * float(bound)).astype(f32),
    ]).astype(f32)
    with np.errstate(over="ignore", invalid="ignore"):
        scaled = x * f32(w)
        vee = np.where(scaled >= 0, scaled, scaled * f32(alpha)).astype(f32)
        mask = np.clip(f32(-1.0) * vee + f32(w * float(bound) + 1.0), f32(0), f32(1))
    want = ((x >= 0) & (x <= bound)).astype(f32)
    np.testing.assert_array_equal(mask, want)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_conv_clip_masks_keep_results(name: str) -> None:
    tiny = MODELS[name]()
    output = tiny.model.graph.output[0].name
    raw = build_vjp_model(tiny.model, output=output, wrt="input", batch=2, level="none").model
    feeds = _feeds(tiny, 2)
    want = _run(raw, feeds)
    rewritten = opt.optimize(raw, [opt.prune_dead, opt.simplify_reshapes, opt.simplify_masks,
                                   opt.sink_reshapes, opt.conv_clip_masks])
    if "Clip" in opt.op_histogram(tiny.model):
        assert "LeakyRelu" in opt.op_histogram(rewritten)
    _assert_same(want, _run(rewritten, feeds))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_opt_in_mask_forms_keep_results(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    tiny = MODELS[name]()
    output = tiny.model.graph.output[0].name
    feeds = _feeds(tiny, 2)
    monkeypatch.setattr(opt, "MASK_FROM_OUTPUT", True)
    monkeypatch.setattr(opt, "MASK_AS_CONV", True)
    for wrt in ("input", *tiny.layers):
        raw = build_vjp_model(tiny.model, output=output, wrt=wrt, batch=2, level="none")
        fast = build_vjp_model(tiny.model, output=output, wrt=wrt, batch=2, level="full")
        _assert_same(_run(raw.model, feeds), _run(fast.model, feeds))
