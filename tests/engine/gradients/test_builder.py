"""Builder: capability check, torch-style shape arithmetic, signature and errors."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from gradient_testkit import MODELS, finite_difference, reference_head, relative_error, session
from onnx import TensorProto, helper, numpy_helper

from engine.errors import InvalidParams, UnknownLayer, UnsupportedModel
from engine.gradients import _onnx_ad
from engine.gradients.builder import build_vjp_model, check_differentiable
from engine.gradients.vjp import vjp


def _roi_model(op_domain: str = "") -> onnx.ModelProto:
    """Conv -> MaxRoiPool (no onnx-ad rule) -> Flatten -> Gemm."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    rois = numpy_helper.from_array(np.array([[0, 0, 0, 5, 5]], dtype=np.float32), "rois")
    fc = numpy_helper.from_array(rng.standard_normal((2, 16)).astype(np.float32), "fc")
    nodes = [
        helper.make_node("Conv", ["input", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("MaxRoiPool", ["c", "rois"], ["pooled"], name="roi_pool",
                         pooled_shape=[2, 2], domain=op_domain),
        helper.make_node("Flatten", ["pooled"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "fc"], ["logits"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes, "roi", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 2])], [w, rois, fc])
    opsets = [helper.make_opsetid("", 17)]
    if op_domain:
        opsets.append(helper.make_opsetid(op_domain, 1))
    return helper.make_model(graph, opset_imports=opsets)


def test_reverse_rules() -> None:
    assert not _onnx_ad.has_reverse_rule("MaxRoiPool")
    assert _onnx_ad.has_reverse_rule("Conv") and _onnx_ad.has_reverse_rule("Clip")
    # spec functions and lowered ops count as differentiable
    assert _onnx_ad.has_reverse_rule("GroupNormalization", opset=21)
    assert _onnx_ad.has_reverse_rule("LRN")


def test_op_without_rule_is_refused_with_its_name() -> None:
    model = _roi_model()
    with pytest.raises(UnsupportedModel) as caught:
        check_differentiable(model, wrt="input")
    error = caught.value
    assert error.details["op_type"] == "MaxRoiPool"
    assert error.details["node"] == "roi_pool"
    assert "MaxRoiPool" in error.message and "roi_pool" in error.message
    # the builder refuses before reverse() runs
    with pytest.raises(UnsupportedModel) as built:
        build_vjp_model(model, output="logits", wrt="input", batch=1)
    assert built.value.details["op_type"] == "MaxRoiPool"


def test_node_off_the_path_is_fine() -> None:
    # downstream of the unsupported node only: the layer after it is differentiable
    check_differentiable(_roi_model(), wrt="flat")
    gm = build_vjp_model(_roi_model(), output="logits", wrt="flat", batch=1)
    assert gm.is_layer


def test_custom_domain_op_is_refused() -> None:
    with pytest.raises(UnsupportedModel) as caught:
        check_differentiable(_roi_model("com.example"), wrt="input")
    assert caught.value.details["node"] == "roi_pool"
    assert "com.example" in caught.value.message


def test_attribute_restrictions_are_refused() -> None:
    model = _roi_model()
    graph = model.graph
    del graph.node[1:]
    graph.node.extend([
        helper.make_node("Pad", ["c", "pads"], ["p"], name="reflect_pad", mode="reflect"),
        helper.make_node("ReduceSum", ["p"], ["s"], keepdims=0, name="r")])
    graph.initializer.append(numpy_helper.from_array(
        np.array([0, 0, 1, 1, 0, 0, 1, 1], dtype=np.int64), "pads"))
    graph.output[0].CopyFrom(helper.make_tensor_value_info("s", TensorProto.FLOAT, []))
    with pytest.raises(UnsupportedModel) as caught:
        check_differentiable(model, wrt="input", output="s")
    assert caught.value.details["op_type"] == "Pad"
    assert caught.value.details["node"] == "reflect_pad"
    assert "mode" in caught.value.message


@pytest.mark.parametrize("mode", ["SAME_UPPER", "SAME_LOWER"])
def test_auto_pad_same_is_made_explicit(mode: str) -> None:
    """TF-style exports: auto_pad=SAME with stride 2 means asymmetric pads, whose raw
    onnx-ad adjoint (ConvTranspose with output_shape) ORT would shift by a pixel."""
    from gradient_testkit import _Graph

    g = _Graph(4)
    c = g.node("Conv", ["input", g.weight("w", (4, 3, 3, 3))], "conv", strides=[2, 2],
               auto_pad=mode)
    p = g.node("AveragePool", [c], "pool", kernel_shape=[2, 2], strides=[2, 2],
               auto_pad=mode)
    f = g.node("Flatten", [p], "flat")
    g.node("Gemm", [f, g.weight("fc", (3, 4 * 2 * 2))], "logits", transB=1)
    tiny = g.build("same", (1, 3, 8, 8), "logits", 3, ())
    check_differentiable(tiny.model, wrt="input")
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 8, 8))
    seed = rng.standard_normal((2, 3))
    want = finite_difference(reference_head(tiny.model64, None, "logits"), x.copy(), seed)
    for level in ("none", "full"):
        gm = build_vjp_model(tiny.model, output="logits", wrt="input", batch=2,
                             level=level)  # type: ignore[arg-type]
        result = vjp(session(gm.model), gm, x.astype(np.float32), seed.astype(np.float32))
        assert relative_error(result.grad, want) <= 1e-3


def test_torch_style_pad_is_folded_and_differentiated() -> None:
    tiny = MODELS["torch_style"]()
    raw = build_vjp_model(tiny.model, output="logits", wrt="input", batch=2, level="none")
    ops = [n.op_type for n in raw.model.graph.node]
    assert "Pad" in ops
    # the widths came out of Shape/Slice/Concat/Cast and are constants now
    assert "Shape" not in ops and "Mod" not in ops
    pad = next(n for n in raw.model.graph.node if n.op_type == "Pad")
    assert pad.input[1] in {t.name for t in raw.model.graph.initializer}
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 3, 7, 7))
    seed = rng.standard_normal((2, 3))
    for level in ("none", "full"):
        gm = build_vjp_model(tiny.model, output="logits", wrt="input", batch=2,
                             level=level)  # type: ignore[arg-type]
        result = vjp(session(gm.model), gm, x.astype(np.float32), seed.astype(np.float32))
        want = finite_difference(reference_head(tiny.model64, None, "logits"), x.copy(), seed)
        assert relative_error(result.grad, want) <= 1e-3


def test_signature() -> None:
    tiny = MODELS["cnn"]()
    gm = build_vjp_model(tiny.model, output="logits", wrt="clip", batch=8)
    assert gm.inputs == ("input", "seed")
    assert gm.outputs == ("logits", "grad", "activation")
    assert (gm.batch, gm.wrt, gm.output_shape, gm.seed_shape) == (8, "clip", (5,), (8, 5))
    graph = gm.model.graph
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in list(graph.input) + list(graph.output)}
    assert shapes["seed"] == [8, 5]
    assert shapes["input"] == [8, 4, 12, 12]
    assert shapes["grad"] == shapes["activation"] == [8, 8, 3, 3]
    onnx.checker.check_model(gm.model)
    gi = build_vjp_model(tiny.model, output="logits", wrt="input", batch=1)
    assert gi.outputs == ("logits", "grad") and not gi.is_layer


def test_errors() -> None:
    tiny = MODELS["cnn"]()
    with pytest.raises(UnknownLayer):
        build_vjp_model(tiny.model, output="logits", wrt="nope", batch=1)
    with pytest.raises(UnknownLayer):
        build_vjp_model(tiny.model, output="logits", wrt="w1", batch=1)  # a weight
    with pytest.raises(InvalidParams):
        build_vjp_model(tiny.model, output="nope", wrt="input", batch=1)
    with pytest.raises(InvalidParams):
        build_vjp_model(tiny.model, output="logits", wrt="input", batch=0)
    # an inner output is fine (tests/engine/gradients/test_inner_output.py)
    assert build_vjp_model(tiny.model, output="clip", wrt="input",
                           batch=1).output_shape == (8, 3, 3)
    fixed = MODELS["cnn"]()
    dim = fixed.model.graph.input[0].type.tensor_type.shape.dim[0]
    dim.Clear()
    dim.dim_value = 4
    with pytest.raises(InvalidParams):
        build_vjp_model(fixed.model, output="logits", wrt="input", batch=8)
    assert build_vjp_model(fixed.model, output="logits", wrt="input", batch=4).batch == 4
