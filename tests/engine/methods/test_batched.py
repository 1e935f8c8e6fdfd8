"""The batched entry points (``MethodSpec.batch_fn``) answer, item by item, what the method
answers for each item alone — each item with its own objective — from one pass over the
stacked items, on a tiny two-convolution model built with onnx.helper."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from engine.artifacts import AttributionMap, ImageArtifact, Result
from engine.column_table import ColumnTable
from engine.methods.activation_maps import ActivationMapsParams
from engine.methods.base import MethodSpec, no_progress
from engine.methods.cam import CamParams
from engine.methods.grad_cam import GradCamParams
from engine.methods.gradient_x_input import GradientXInputParams
from engine.methods.registry import get_method
from engine.methods.saliency import SaliencyParams
from engine.modalities.image import ImageInput
from engine.models.runtime import LoadedModel
from engine.objectives import Channel, ClassScore, LayerNorm, Neuron, Objective
from lantern_testing.batching import CLASSES, SIZE, two_conv_classifier
from lantern_testing.loaded import loaded


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    return loaded(tmp_path_factory.mktemp("batched"), two_conv_classifier(), SIZE, CLASSES)


def images(n: int, seed: int = 0) -> list[ImageInput]:
    rng = np.random.default_rng(seed)
    return [ImageInput(rng.uniform(0, 255, (SIZE, SIZE, 3)).astype(np.float32)) for _ in range(n)]


def classes(n: int, score: str = "logit") -> list[Objective]:
    """Distinct targets, cycling through the classes."""
    return [ClassScore(i % len(CLASSES), score, CLASSES[i % len(CLASSES)]) for i in range(n)]  # type: ignore[arg-type]


def assert_same(batched: Result, single: Result) -> None:
    """Every artifact, the cost, the extras and the output, as the single call's."""
    assert [a.name for a in batched.artifacts] == [a.name for a in single.artifacts]
    for b, s in zip(batched.artifacts, single.artifacts, strict=True):
        if isinstance(b, AttributionMap):
            assert isinstance(s, AttributionMap)
            assert b.values.shape == s.values.shape
            np.testing.assert_allclose(b.values, s.values, rtol=1e-5, atol=1e-6)
        elif isinstance(b, ImageArtifact):
            assert isinstance(s, ImageArtifact)
            assert b.caption == s.caption
            diff = np.abs(b.pixels.astype(np.int16) - s.pixels.astype(np.int16))
            assert diff.max() <= 1  # colour-mapped from maps equal to float rounding
        else:
            assert isinstance(b, ColumnTable) and isinstance(s, ColumnTable)
            assert b.name == s.name and list(b.columns) == list(s.columns)
            np.testing.assert_allclose(b.values, s.values, rtol=1e-5, atol=1e-6)
    assert batched.model_calls == single.model_calls
    assert batched.extras == single.extras
    assert batched.views == single.views
    if single.output is None:
        assert batched.output is None
    else:
        assert batched.output is not None
        np.testing.assert_allclose(batched.output, single.output, rtol=1e-5, atol=1e-5)


def check_batch(
    model: LoadedModel, method: str, params: Any, items: list[ImageInput], objs: list[Objective]
) -> list[Result]:
    spec: MethodSpec[Any] = get_method(method)
    assert spec.batch_fn is not None
    out = spec.batch_fn(model, items, objs, params)
    assert len(out) == len(items)
    for item, objective, b in zip(items, objs, out, strict=True):
        assert_same(b, spec.fn(model, item, objective, params, no_progress))
    return out


class Calls:
    """Counts a LoadedModel method's calls (and their batch sizes), calling it through."""

    def __init__(self, model: LoadedModel, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sizes: list[int] = []
        original: Callable[..., Any] = getattr(model, name)

        def counted(x: np.ndarray, *args: Any, **kwargs: Any) -> Any:
            self.sizes.append(int(x.shape[0]))
            return original(x, *args, **kwargs)

        monkeypatch.setattr(model, name, counted)


# 9 items: the VJP runs as the 8-bucket and the 1-bucket gradient models, against 1 alone
@pytest.mark.parametrize("n", [2, 5, 9])
def test_grad_cam_batch_equals_single(model: LoadedModel, n: int) -> None:
    check_batch(model, "grad_cam", GradCamParams(), images(n), classes(n))


@pytest.mark.parametrize("relu", [True, False])
def test_grad_cam_batch_through_an_inner_layer(model: LoadedModel, relu: bool) -> None:
    """Grad-CAM of act1, whose gradient runs back through conv2 and a ReLU (per image)."""
    out = check_batch(
        model, "grad_cam", GradCamParams(layer="act1", relu=relu), images(6, 1), classes(6)
    )
    assert not np.allclose(out[0].values, out[1].values)  # distinct images and targets


def test_grad_cam_batch_probability_score(model: LoadedModel) -> None:
    """A probability seed depends on each image's own output: one forward, then one VJP."""
    check_batch(model, "grad_cam", GradCamParams(score="probability"), images(4, 2),
                classes(4, "probability"))


def test_grad_cam_batch_is_one_vjp(model: LoadedModel, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = Calls(model, "vjp", monkeypatch)
    get_method("grad_cam").batch_fn(model, images(8), classes(8), GradCamParams())  # type: ignore[misc]
    assert calls.sizes == [8]


@pytest.mark.parametrize("layer", [None, "act1"])
def test_grad_cam_plus_plus_batch_equals_single_in_one_vjp(
    model: LoadedModel, layer: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = GradCamParams(layer=layer)
    out = check_batch(model, "grad_cam_plus_plus", params, images(5, 10), classes(5))
    assert not np.allclose(out[0].values, out[1].values)  # distinct images and targets
    calls = Calls(model, "vjp", monkeypatch)
    get_method("grad_cam_plus_plus").batch_fn(model, images(8), classes(8), params)  # type: ignore[misc]
    assert calls.sizes == [8]


@pytest.mark.parametrize("reduce", ["signed", "abs_max"])
def test_gradient_x_input_batch_equals_single(
    model: LoadedModel, reduce: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Class scores and layer objectives mixed: one VJP per tensor the objectives read."""
    params = GradientXInputParams(reduce=reduce)  # type: ignore[arg-type]
    objs: list[Objective] = [
        ClassScore(2, "logit", "c"),
        Channel("act1", channel=1),
        ClassScore(0, "logit", "a"),
        Neuron("act2", channel=0, y=3, x=5),
    ]
    check_batch(model, "gradient_x_input", params, images(4, 11), objs)
    calls = Calls(model, "vjp", monkeypatch)
    get_method("gradient_x_input").batch_fn(model, images(4, 11), objs, params)  # type: ignore[misc]
    assert sorted(calls.sizes) == [1, 1, 2]  # act1, act2, the outputs


def test_cam_batch_equals_single_in_one_forward(
    model: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    for relu in (True, False):
        check_batch(model, "cam", CamParams(relu=relu), images(5, 3), classes(5))
    calls = Calls(model, "probe", monkeypatch)
    get_method("cam").batch_fn(model, images(7), classes(7), CamParams())  # type: ignore[misc]
    assert calls.sizes == [7]


@pytest.mark.parametrize("reduce", ["abs_max", "abs_sum", "signed"])
def test_saliency_batch_equals_single(model: LoadedModel, reduce: str) -> None:
    check_batch(model, "saliency", SaliencyParams(reduce=reduce), images(5, 4), classes(5))  # type: ignore[arg-type]


def test_saliency_batch_mixed_objectives(
    model: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Class scores (logit and probability) and layer objectives (a channel, a neuron, a
    layer norm whose seed needs the layer's value) in one batch: one VJP per tensor read."""
    objs: list[Objective] = [
        ClassScore(0, "logit", "a"),
        Channel("act1", channel=2),
        ClassScore(3, "logit", "d"),
        LayerNorm("act1"),
        Neuron("act2", channel=1, y=4, x=7),
        Channel("act1", channel=4),
    ]
    check_batch(model, "saliency", SaliencyParams(), images(6, 5), objs)
    prob = [ClassScore(i, "probability", CLASSES[i]) for i in (1, 2, 0)]
    check_batch(model, "saliency", SaliencyParams(score="probability"), images(3, 6), prob)
    calls = Calls(model, "vjp", monkeypatch)
    get_method("saliency").batch_fn(model, images(6, 5), objs, SaliencyParams())  # type: ignore[misc]
    assert sorted(calls.sizes) == [1, 2, 3]  # act2 (the neuron), the outputs, act1


def test_activation_maps_batch_equals_single(
    model: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    check_batch(model, "activation_maps", ActivationMapsParams(top_k=3), images(4, 7),
                classes(4))
    objs: list[Objective] = [
        Channel("act1", channel=1),
        ClassScore(0, "logit", "a"),
        Channel("act1", channel=3),
        LayerNorm("act2"),
    ]
    check_batch(model, "activation_maps", ActivationMapsParams(channels=[0, 4]), images(4, 8),
                [objs[0], objs[2], Channel("act1", channel=0), LayerNorm("act1")])
    check_batch(model, "activation_maps", ActivationMapsParams(top_k=2), images(4, 9), objs)
    calls = Calls(model, "probe", monkeypatch)
    get_method("activation_maps").batch_fn(  # type: ignore[misc]
        model, images(4, 9), objs, ActivationMapsParams(top_k=2)
    )
    assert calls.sizes == [2, 2]  # act1 (the channels), act2 (the layer norm's, the default)


def test_a_batch_with_a_wrong_objective_raises(model: LoadedModel) -> None:
    """Grad-CAM explains classes: a channel objective in the batch refuses the batch (the
    runner then runs each item alone, so only that one fails)."""
    from engine.errors import InvalidObjective

    with pytest.raises(InvalidObjective):
        get_method("grad_cam").batch_fn(  # type: ignore[misc]
            model, images(2), [ClassScore(0), Channel("act2", channel=0)], GradCamParams()
        )
