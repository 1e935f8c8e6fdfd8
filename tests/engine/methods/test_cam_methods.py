"""CAM, Grad-CAM, Grad-CAM++ and activation maps on a Conv -> ReLU -> GAP -> Gemm model,
whose head is known: logit_c = sum_k W[c, k] mean(A_k)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from engine.errors import InvalidParams, UnsupportedModel
from engine.methods.activation_maps import ActivationMapsParams, activation_maps
from engine.methods.base import no_progress
from engine.methods.cam import CamParams, cam
from engine.methods.grad_cam import GradCamParams, grad_cam
from engine.methods.grad_cam_plus_plus import grad_cam_plus_plus
from engine.modalities.image import ImageInput
from engine.models.runtime import LoadedModel
from engine.objectives import ClassScore
from lantern_testing.loaded import loaded
from lantern_testing.models import conv_classifier, linear_classifier

SIZE = 16


@pytest.fixture
def model(tmp_path: Path) -> LoadedModel:
    return loaded(tmp_path, conv_classifier(SIZE, SIZE, 3), SIZE, ["a", "b", "c"])


@pytest.fixture
def image() -> ImageInput:
    rng = np.random.default_rng(5)
    return ImageInput(rng.uniform(0, 255, (SIZE, SIZE, 3)).astype(np.float32))


def head_weights(m: LoadedModel) -> np.ndarray:
    init = {t.name: numpy_helper.to_array(t) for t in m.proto().graph.initializer}
    return init["fw"]  # (classes, channels), Gemm with transB=1


def activation(m: LoadedModel, image: ImageInput) -> np.ndarray:
    act, _ = m.probe(m.to_model_input(image.pixels[None]), ["act"])
    return act[0]


def normalise(v: np.ndarray) -> np.ndarray:
    return v / v.max()


def test_cam_by_hand(model: LoadedModel, image: ImageInput) -> None:
    a = activation(model, image)
    expected = np.maximum(np.tensordot(head_weights(model)[1], a, axes=(0, 0)), 0)
    out = cam(model, image, ClassScore(1), CamParams(), no_progress)
    assert out.extras["layer"] == "act"
    np.testing.assert_allclose(out.artifact("cam").values, expected, rtol=1e-5, atol=1e-6)
    assert out.values.shape == (SIZE, SIZE)  # same size as the layer: no resampling
    np.testing.assert_allclose(out.values, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("target", [0, 1, 2])
def test_grad_cam_equals_cam_after_normalisation(
    model: LoadedModel, image: ImageInput, target: int
) -> None:
    c = cam(model, image, ClassScore(target), CamParams(), no_progress).values
    g = grad_cam(model, image, ClassScore(target), GradCamParams(), no_progress).values
    if c.max() <= 0:
        pytest.skip("no positive evidence for this class")
    np.testing.assert_allclose(normalise(g), normalise(c), atol=1e-5)
    # Grad-CAM's weights are W / (h * w): the raw maps differ by that factor
    np.testing.assert_allclose(g * SIZE * SIZE, c, rtol=1e-4, atol=1e-5)


def test_grad_cam_plus_plus_by_hand(model: LoadedModel, image: ImageInput) -> None:
    a = activation(model, image).astype(np.float64)
    g = np.broadcast_to(head_weights(model)[2][:, None, None] / (SIZE * SIZE), a.shape)
    g2, g3 = g**2, g**3
    alpha = g2 / (2 * g2 + a.sum(axis=(1, 2), keepdims=True) * g3 + 1e-7)
    alpha = np.where(g != 0, alpha, 0)
    w = (np.maximum(g, 0) * alpha).sum(axis=(1, 2))
    expected = np.maximum(np.tensordot(w, a, axes=(0, 0)), 0)
    out = grad_cam_plus_plus(model, image, ClassScore(2), GradCamParams(), no_progress)
    np.testing.assert_allclose(out.artifact("cam").values, expected, rtol=1e-4, atol=1e-6)


def test_named_layer_and_bad_layer(model: LoadedModel, image: ImageInput) -> None:
    out = grad_cam(
        model, image, ClassScore(0), GradCamParams(layer="conv", relu=False), no_progress,
    )
    assert out.extras["layer"] == "conv"
    with pytest.raises(InvalidParams, match="not a spatial layer"):
        grad_cam(model, image, ClassScore(0), GradCamParams(layer="flat"), no_progress)
    with pytest.raises(InvalidParams):
        grad_cam(model, image, ClassScore(0), GradCamParams(layer="nope"), no_progress)


def test_maps_are_upsampled_bilinearly(tmp_path: Path) -> None:
    # a stride-2 conv halves the map: the CAM is resized back to the input
    model = conv_classifier(SIZE, SIZE, 3)
    model.graph.node[0].attribute.append(helper.make_attribute("strides", [2, 2]))
    model.graph.value_info.clear()
    onnx.checker.check_model(model)
    m = loaded(tmp_path, model, SIZE, ["a", "b", "c"])
    img = ImageInput(np.random.default_rng(0).uniform(0, 255, (SIZE, SIZE, 3)).astype(np.float32))
    out = grad_cam(m, img, ClassScore(0), GradCamParams(relu=False), no_progress)
    assert out.artifact("cam").values.shape == (SIZE // 2, SIZE // 2)
    assert out.values.shape == (SIZE, SIZE)
    np.testing.assert_allclose(out.values.mean(), out.artifact("cam").values.mean(), rtol=0.05)


def test_cam_needs_a_linear_head(tmp_path: Path) -> None:
    m = loaded(tmp_path, linear_classifier(np.ones((2, 3, 8, 8), np.float32)), 8, ["a", "b"])
    with pytest.raises(UnsupportedModel, match="grad_cam"):
        m.cam_head()


def test_cam_head_from_matmul_plus_add(tmp_path: Path) -> None:
    # Conv -> GAP -> Reshape -> MatMul -> Add: the other common export of a linear head
    rng = np.random.default_rng(1)
    cw = rng.normal(size=(4, 3, 3, 3)).astype(np.float32)
    w = rng.normal(size=(4, 2)).astype(np.float32)
    b = rng.normal(size=(2,)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["input", "cw"], ["feat"], pads=[1, 1, 1, 1]),
            helper.make_node("GlobalAveragePool", ["feat"], ["pool"]),
            helper.make_node("Reshape", ["pool", "shape"], ["flat"]),
            helper.make_node("MatMul", ["flat", "w"], ["mm"]),
            helper.make_node("Add", ["mm", "b"], ["logits"]),
        ],
        "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])],
        initializer=[
            numpy_helper.from_array(cw, "cw"),
            numpy_helper.from_array(w, "w"),
            numpy_helper.from_array(b, "b"),
            numpy_helper.from_array(np.array([-1, 4], np.int64), "shape"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    m = loaded(tmp_path, model, 8, ["a", "b"])
    head = m.cam_head()
    assert head.layer == "feat"
    np.testing.assert_allclose(head.weights, w.T)
    np.testing.assert_allclose(head.bias, b)


def test_activation_maps(model: LoadedModel, image: ImageInput) -> None:
    a = activation(model, image)
    out = activation_maps(model, image, ClassScore(0), ActivationMapsParams(top_k=2), no_progress)
    means = a.mean(axis=(1, 2))
    assert out.extras["channels"] == list(np.argsort(-means, kind="stable")[:2])
    stats = out.artifact("channel_stats").data()
    assert stats["columns"] == ["channel", "mean", "max", "min", "std", "active_fraction"]
    cols = np.asarray(stats["rows"], np.float64).T
    np.testing.assert_allclose(cols[1], means, rtol=1e-5)
    np.testing.assert_allclose(cols[5], (a > 0).mean(axis=(1, 2)))
    assert "channel_stats" not in out.extras  # the table only, not twice
    grid = out.artifact("grid").pixels
    assert grid.dtype == np.uint8 and grid.ndim == 3 and grid.shape[2] == 3
    chosen = activation_maps(
        model, image, ClassScore(0), ActivationMapsParams(channels=[3, 1]), no_progress,
    )
    assert chosen.extras["channels"] == [3, 1]
    np.testing.assert_allclose(chosen.values, a[[3, 1]].mean(axis=0), rtol=1e-5, atol=1e-5)
    with pytest.raises(InvalidParams, match="do not exist"):
        activation_maps(
            model, image, ClassScore(0), ActivationMapsParams(channels=[4]), no_progress,
        )
