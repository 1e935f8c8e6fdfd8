"""The model's side: the manifest's preprocessing and its adjoint, one batched VJP with a
seed per row, Lucid's diversity term, Adam, and the whole chain from the spectrum to an
objective inside a model against finite differences."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from engine.errors import InvalidParams
from engine.objectives import Channel, ClassScore, Direction, LayerNorm, Neuron
from engine.visualisation.adam import Adam
from engine.visualisation.diversity import diversity
from engine.visualisation.model_io import ModelInput, UnitGradients, unit_objectives
from engine.visualisation.param import ImageParam
from engine.visualisation.transforms import standard_transforms
from lantern_testing.loaded import loaded
from lantern_testing.models import linear_classifier

IMAGENET = {"scale": 1 / 255, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


def conv_model(size: int, channels: int = 4, seed: int = 0) -> onnx.ModelProto:
    """Conv 3x3 (pads 1) -> Relu -> GlobalAveragePool -> Flatten -> Gemm (3 classes)."""
    rng = np.random.default_rng(seed)
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["input", "cw"], ["conv"], name="conv", pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["conv"], ["act"], name="act"),
            helper.make_node("GlobalAveragePool", ["act"], ["pool"], name="pool"),
            helper.make_node("Flatten", ["pool"], ["flat"], name="flatten"),
            helper.make_node("Gemm", ["flat", "fw"], ["logits"], name="fc", transB=1),
        ],
        "conv",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])],
        initializer=[
            numpy_helper.from_array(rng.normal(size=(channels, 3, 3, 3)).astype(np.float32),
                                    "cw"),
            numpy_helper.from_array(rng.normal(size=(3, channels)).astype(np.float32), "fw"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.mark.parametrize(
    ("layout", "extra"),
    [
        ("NCHW", {}),
        ("NCHW", IMAGENET),
        ("NHWC", IMAGENET),
        ("NCHW", {**IMAGENET, "channel_order": "BGR"}),
        ("NHWC", {"scale": 2.0, "mean": [1.0, -2.0, 3.0], "std": [0.5, 4.0, 1.5],
                  "channel_order": "BGR"}),
    ],
)
def test_model_input_is_the_manifest_preprocessing(
    tmp_path: Path, layout: str, extra: dict[str, object]
) -> None:
    size = 8
    w = np.random.default_rng(0).normal(
        size=(2, 3, size, size) if layout == "NCHW" else (2, size, size, 3)
    ).astype(np.float32)
    model = loaded(tmp_path, linear_classifier(w, layout=layout), size, ["a", "b"],
                   layout=layout, **extra)
    mi = ModelInput(model)
    rng = np.random.default_rng(1)
    x01 = rng.uniform(0, 1, (3, 3, size, size)).astype(np.float32)
    want = model.to_model_input(np.ascontiguousarray(x01.transpose(0, 2, 3, 1)) * 255)
    got = mi.forward(x01)
    assert got.shape == want.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
    # the adjoint: <L x, g> = <x, L^T g> for the linear part L
    g = rng.normal(size=want.shape).astype(np.float32)
    lin = mi.forward(x01) - mi.forward(np.zeros_like(x01))
    lhs = float(np.sum(lin.astype(np.float64) * g))
    rhs = float(np.sum(x01.astype(np.float64) * mi.adjoint(g)))
    assert lhs == pytest.approx(rhs, rel=1e-4)


def test_unit_gradients_seed_each_row_with_its_own_unit(tmp_path: Path) -> None:
    """One VJP of a batch of 3 with three channel objectives = three separate gradients."""
    model = loaded(tmp_path, conv_model(8), 8, ["a", "b", "c"])
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (3, 3, 8, 8)).astype(np.float32)
    units = [Channel("conv", 1, c) for c in (0, 2, 3)]
    values, grad, passes = UnitGradients(model, units)(x)
    assert passes == 3 and grad.shape == x.shape
    for i, u in enumerate(units):
        v1, g1, _ = UnitGradients(model, [u])(x[i : i + 1])
        assert values[i] == pytest.approx(v1[0], rel=1e-5)
        np.testing.assert_allclose(grad[i], g1[0], rtol=1e-4, atol=1e-6)
    # a value-dependent objective takes a forward pass first
    _, _, passes = UnitGradients(model, [LayerNorm("conv", 1)] * 3)(x)
    assert passes == 6


def test_unit_objectives(tmp_path: Path) -> None:
    model = loaded(tmp_path, conv_model(8), 8, ["a", "b", "c"])
    units, names = unit_objectives(model, Channel("conv", 1, 1), [3, 1, 0])
    assert names == ["unit_1", "unit_3", "unit_0"]
    assert [u.channel for u in units] == [1, 3, 0]  # type: ignore[attr-defined]
    units, names = unit_objectives(model, Neuron("conv", 1, 2, 4, 4), [0])
    assert names == ["unit_2", "unit_0"] and units[1] == Neuron("conv", 1, 0, 4, 4)
    units, names = unit_objectives(model, ClassScore(0, label="a"), [2])
    assert names == ["unit_0", "unit_2"] and units[1] == ClassScore(2, label="c")
    assert unit_objectives(model, LayerNorm("conv", 1), None)[1] == ["unit_0"]
    with pytest.raises(InvalidParams, match="do not exist"):
        unit_objectives(model, Channel("conv", 1, 0), [4])
    with pytest.raises(InvalidParams, match="do not exist"):
        unit_objectives(model, ClassScore(0), [3])
    with pytest.raises(InvalidParams, match="has none"):
        unit_objectives(model, Direction("conv", 1, (1.0, 0.0, 0.0, 0.0)), [1])


@pytest.mark.parametrize("channel_axis", [1, -1])
def test_diversity_gradient(channel_axis: int) -> None:
    rng = np.random.default_rng(0)
    t = rng.normal(size=(3, 4, 5, 6))
    value, grad = diversity(t, channel_axis)
    # by hand: Gram matrices over positions, normalised, summed over pairs i != j, / n
    f = np.moveaxis(t, channel_axis, -1).reshape(3, -1, np.moveaxis(t, channel_axis, -1).shape[-1])
    grams = [fi.T @ fi for fi in f]
    grams = [gm / np.linalg.norm(gm) for gm in grams]
    want = sum(np.sum(grams[i] * grams[j]) for i in range(3) for j in range(3) if i != j) / 3
    assert value == pytest.approx(want)
    for _ in range(4):
        d = rng.normal(size=t.shape)
        fd = (diversity(t + 1e-6 * d, channel_axis)[0] - diversity(t - 1e-6 * d, channel_axis)[0])
        assert fd / 2e-6 == pytest.approx(np.sum(grad.astype(np.float64) * d), rel=1e-4)
    assert diversity(t[:1], channel_axis)[0] == 0.0


def test_adam_matches_its_definition() -> None:
    p = np.array([1.0, -2.0])
    adam = Adam((2,), lr=0.1, dtype=np.float64)
    g1, g2 = np.array([0.5, -1.0]), np.array([0.25, 2.0])
    adam.ascend(p, g1)
    # step 1: m̂ = g, v̂ = g², so the step is lr · sign(g)
    np.testing.assert_allclose(p, [1.1, -2.1], rtol=1e-6)
    adam.ascend(p, g2)
    m = 0.9 * 0.1 * g1 + 0.1 * g2
    v = 0.999 * 0.001 * g1**2 + 0.001 * g2**2
    step = 0.1 * (m / (1 - 0.81)) / (np.sqrt(v / (1 - 0.999**2)) + 1e-8)
    np.testing.assert_allclose(p, np.array([1.1, -2.1]) + step, rtol=1e-6)


@pytest.mark.parametrize(("layout", "objective"), [
    ("NCHW", "class"), ("NHWC", "class"), ("NCHW", "channel"), ("NCHW", "layer_norm"),
])
def test_the_chain_from_spectrum_to_objective(
    tmp_path: Path, layout: str, objective: str
) -> None:
    """d objective / d spectrum through the model (ORT's VJP), the preprocessing
    (ImageNet's mean/std), the resize to the model's input, the random transforms, the
    sigmoid, the colour matrix and the inverse FFT — against finite differences of the
    objective as the model computes it."""
    size, model_size = 12, 16
    rng = np.random.default_rng(3)
    if objective == "class":
        shape = (2, 3, model_size, model_size) if layout == "NCHW" else (2, model_size,
                                                                          model_size, 3)
        onnx_model = linear_classifier(rng.normal(size=shape).astype(np.float32), layout=layout)
        labels = ["a", "b"]
        unit = ClassScore(1)
    else:
        onnx_model = conv_model(model_size)
        labels = ["a", "b", "c"]
        unit = Channel("conv", 1, 2) if objective == "channel" else LayerNorm("conv", 1)
    model = loaded(tmp_path, onnx_model, model_size, labels, layout=layout, **IMAGENET)
    ip = ImageParam(size, size)
    p = ip.init(rng, 1, sd=0.3)  # float64: the chain in double, the model in float32
    chain = standard_transforms(rng, (size, size), (model_size, model_size))
    mi = ModelInput(model)
    grads = UnitGradients(model, [unit])

    def value(q: np.ndarray) -> float:
        x = mi.forward(chain.forward(ip.image(q)))
        return float(grads(x)[0][0])

    x = mi.forward(chain.forward(ip.image(p)))
    _, g, _ = grads(x)
    gp = ip.backward(chain.adjoint(mi.adjoint(g)))
    for _ in range(3):
        d = rng.normal(size=p.shape)
        d /= np.linalg.norm(d)
        eps = 1e-2
        fd = (value(p + eps * d) - value(p - eps * d)) / (2 * eps)
        assert fd == pytest.approx(float(np.sum(gp * d)), rel=2e-3, abs=1e-3 * abs(fd) + 1e-4)
