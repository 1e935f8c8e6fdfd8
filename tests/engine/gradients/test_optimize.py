"""The optimisation passes keep results equal to the raw onnx-ad graph."""

from __future__ import annotations

import pathlib
from collections import Counter

import numpy as np
import onnx
import pytest
from gradient_testkit import MODELS, Tiny, session

from engine.gradients import optimize as opt
from engine.gradients.builder import build_vjp_model
from engine.gradients.optimize import OptimizeOptions


@pytest.fixture(scope="module")
def efficientnet(zoo_dir: pathlib.Path) -> onnx.ModelProto:
    """The built-in model, built once for the session (never skipped on a fresh clone)."""
    return onnx.load(str(zoo_dir / "efficientnet-lite0.onnx"))


def _ops(model: onnx.ModelProto) -> Counter[str]:
    return Counter(node.op_type for node in model.graph.node)


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
              opt.rewrite_conv_transpose, opt.sink_reshapes, opt.conv_clip_masks]
    for step in passes:
        _assert_same(want, _run(step(raw), feeds))
    for name in ("fold_constants", "simplify_masks", "rewrite_conv_transpose"):
        _assert_same(want, _run(opt.optimize(raw, OptimizeOptions.only(name)), feeds))


def test_options_name_the_passes() -> None:
    assert OptimizeOptions() == opt.DEFAULT_OPTIONS
    assert len(OptimizeOptions().passes()) == 9
    assert OptimizeOptions.only().passes() == ()
    only = OptimizeOptions.only("prune_dead", "sink_reshapes")
    assert only.passes() == (opt.prune_dead, opt.sink_reshapes, opt.prune_dead)
    assert not only.fold_constants and only.zero_insertion  # variants keep their defaults
    with pytest.raises(ValueError):
        OptimizeOptions.only("zero_insertion")
    with pytest.raises(ValueError):
        OptimizeOptions.only("polyphase")
    tiny = MODELS["cnn"]()
    raw = build_vjp_model(tiny.model, output="logits", wrt="input", batch=2, level="none")
    full = build_vjp_model(tiny.model, output="logits", wrt="input", batch=2, level="full")
    assert opt.optimize(raw.model) == full.model
    assert opt.optimize(raw.model, OptimizeOptions()) == full.model
    assert build_vjp_model(tiny.model, output="logits", wrt="input", batch=2,
                           options=OptimizeOptions()).model == full.model


@pytest.mark.parametrize("zero_insertion", [False, True])
def test_strided_conv_transpose(zero_insertion: bool) -> None:
    tiny = MODELS["cnn"]()  # a grouped stride-2 Conv, whose adjoint is a strided ConvTranspose
    raw = build_vjp_model(tiny.model, output="logits", wrt="input", batch=2, level="none")
    rewritten = opt.rewrite_conv_transpose(raw.model, zero_insertion=zero_insertion)
    feeds = _feeds(tiny, 2)
    _assert_same(_run(raw.model, feeds), _run(rewritten, feeds))


def test_depthwise_strided_conv_transpose() -> None:
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
        for zero_insertion in (False, True):
            rewritten = opt.rewrite_conv_transpose(raw.model, zero_insertion=zero_insertion)
            strided = [n for n in rewritten.graph.node if n.op_type == "ConvTranspose"
                       and any(a.name == "strides" and max(a.ints) > 1 for a in n.attribute)]
            # kept as is, or zero insertion by a 1x1 ConvTranspose of ones
            assert strided and all(
                any(a.name == "kernel_shape" and list(a.ints) == [1, 1] for a in n.attribute)
                for n in strided) == zero_insertion
            _assert_same(want, _run(rewritten, feeds))


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
    ops_raw, ops_pruned = _ops(raw), _ops(pruned)
    assert ops_pruned.get("ReduceSum", 0) < ops_raw.get("ReduceSum", 0)


@pytest.mark.parametrize(("wrt", "batch"), [("input", 1), ("head.act", 1), ("input", 16)])
def test_optimised_equals_raw_on_efficientnet(
    efficientnet: onnx.ModelProto, wrt: str, batch: int
) -> None:
    model = efficientnet
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


def test_exact_masks_match_raw_on_the_bounds() -> None:
    """The default Clip masks (depthwise-Conv masks, and with those off the
    Equal(x, Clip(x)) form) equal the raw graph even for inputs exactly on a bound.
    With mask_from_output on (opt-in), only such inputs -- the kink -- differ."""
    model = _clip_model()
    x = _bound_inputs()
    feeds = {"input": x, "seed": np.ones((1, 3), np.float32)}
    raw = build_vjp_model(model, output="logits", wrt="input", batch=1, level="none")
    want = _run(raw.model, feeds)
    default = build_vjp_model(model, output="logits", wrt="input", batch=1, level="full")
    assert "LeakyRelu" in _ops(default.model)
    assert "Equal" not in _ops(default.model)
    _assert_same(want, _run(default.model, feeds))
    np.testing.assert_array_equal(_run(default.model, feeds)[0], want[0])  # forward exact
    exact = build_vjp_model(model, output="logits", wrt="input", batch=1, level="full",
                            options=OptimizeOptions(conv_clip_masks=False))
    assert "Equal" in _ops(exact.model)
    _assert_same(want, _run(exact.model, feeds))
    fast = build_vjp_model(model, output="logits", wrt="input", batch=1, level="full",
                           options=OptimizeOptions(conv_clip_masks=False,
                                                   mask_from_output=True))
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
    rewritten = opt.optimize(raw, OptimizeOptions(fold_constants=False,
                                                  rewrite_conv_transpose=False))
    if "Clip" in _ops(tiny.model):
        assert "LeakyRelu" in _ops(rewritten)
    _assert_same(want, _run(rewritten, feeds))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_opt_in_mask_form_keeps_results(name: str) -> None:
    tiny = MODELS[name]()
    output = tiny.model.graph.output[0].name
    feeds = _feeds(tiny, 2)
    options = OptimizeOptions(mask_from_output=True)
    for wrt in ("input", *tiny.layers):
        raw = build_vjp_model(tiny.model, output=output, wrt=wrt, batch=2, level="none")
        fast = build_vjp_model(tiny.model, output=output, wrt=wrt, batch=2, level="full",
                               options=options)
        _assert_same(_run(raw.model, feeds), _run(fast.model, feeds))


@pytest.mark.parametrize(("output", "wrts"), [("clip", ("input", "bn")),
                                              ("se_out", ("input", "clip")),
                                              ("cat", ("input", "bn", "se_out"))])
def test_optimised_equals_raw_for_an_inner_output(output: str, wrts: tuple[str, ...]) -> None:
    tiny = MODELS["cnn"]()
    rng = np.random.default_rng(1)
    for wrt in wrts:
        raw = build_vjp_model(tiny.model, output=output, wrt=wrt, batch=2, level="none")
        full = build_vjp_model(tiny.model, output=output, wrt=wrt, batch=2, level="full")
        assert full.outputs == raw.outputs and full.output_shape == raw.output_shape
        feeds = {"input": rng.standard_normal((2, *tiny.input_shape[1:])).astype(np.float32),
                 "seed": rng.standard_normal(full.seed_shape).astype(np.float32)}
        _assert_same(_run(raw.model, feeds), _run(full.model, feeds))


@pytest.mark.parametrize(("output", "wrt"), [("blocks.5.expand_act", "input"),
                                             ("blocks.5.depthwise_act", "blocks.3.expand_act")])
def test_optimised_equals_raw_on_an_efficientnet_inner_output(
    efficientnet: onnx.ModelProto, output: str, wrt: str
) -> None:
    model = efficientnet
    raw = build_vjp_model(model, output=output, wrt=wrt, batch=1, level="none")
    full = build_vjp_model(model, output=output, wrt=wrt, batch=1, level="full")
    assert full.output_shape == raw.output_shape and len(full.output_shape) == 3
    assert len(full.model.graph.node) < len(raw.model.graph.node)
    rng = np.random.default_rng(0)
    feeds = {"input": rng.standard_normal((1, 3, 224, 224)).astype(np.float32),
             "seed": rng.standard_normal(full.seed_shape).astype(np.float32)}
    _assert_same(_run(raw.model, feeds), _run(full.model, feeds))
