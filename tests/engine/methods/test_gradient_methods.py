"""Saliency, gradient × input, integrated gradients and SmoothGrad against values computed
by hand on linear models (whose gradient is the weight), the IG completeness axiom on
a nonlinear one, and SmoothGrad's two averages on a model whose gradient changes sign."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from engine.errors import InvalidParams
from engine.methods.base import no_progress
from engine.methods.gradient_x_input import GradientXInputParams, gradient_x_input
from engine.methods.integrated_gradients import (
    IntegratedGradientsParams,
    integrated_gradients,
    quadrature,
    schedule,
)
from engine.methods.registry import get_method
from engine.methods.saliency import SaliencyParams, saliency
from engine.methods.smoothgrad import SmoothGradParams, smoothgrad
from engine.modalities.image import ImageInput
from engine.models.runtime import LoadedModel
from engine.objectives import ClassScore
from lantern_testing.loaded import loaded
from lantern_testing.models import conv_classifier, linear_classifier

RNG = np.random.default_rng(42)
W = RNG.normal(size=(2, 3, 8, 8)).astype(np.float32)  # logit k = sum(W[k] * pixels)
PIXELS = RNG.uniform(0, 255, (8, 8, 3)).astype(np.float32)


@pytest.fixture
def linear(tmp_path: Path) -> LoadedModel:
    return loaded(tmp_path, linear_classifier(W), 8, ["a", "b"])


def chw(pixels: np.ndarray) -> np.ndarray:
    return pixels.transpose(2, 0, 1)


def test_saliency_is_the_weight(linear: LoadedModel) -> None:
    img = ImageInput(PIXELS)
    for reduce, expected in (
        ("abs_max", np.abs(W[1]).max(axis=0)),
        ("abs_sum", np.abs(W[1]).sum(axis=0)),
        ("signed", W[1].sum(axis=0)),
    ):
        a = saliency(linear, img, ClassScore(1), SaliencyParams(reduce=reduce), no_progress)
        np.testing.assert_allclose(a.values, expected, rtol=1e-5, atol=1e-6)
        assert a.model_calls == 1


def test_saliency_of_a_probability(linear: LoadedModel) -> None:
    # two classes: dp0/dx = p0 (1 - p0) (W0 - W1)
    small = ImageInput(PIXELS / 1000.0)
    z = (W * chw(small.pixels)).reshape(2, -1).sum(axis=1)
    p0 = 1 / (1 + np.exp(z[1] - z[0]))
    params = SaliencyParams(reduce="signed", score="probability")
    a = saliency(linear, small, ClassScore(0, "probability"), params, no_progress)
    np.testing.assert_allclose(a.values, (p0 * (1 - p0) * (W[0] - W[1])).sum(axis=0),
                               rtol=1e-4, atol=1e-7)
    assert a.model_calls == 2  # the seed needs the logits first


def test_gradient_x_input(linear: LoadedModel) -> None:
    a = gradient_x_input(
        linear, ImageInput(PIXELS), ClassScore(0), GradientXInputParams(), no_progress,
    )
    np.testing.assert_allclose(a.values, (W[0] * chw(PIXELS)).sum(axis=0), rtol=1e-4)


def test_preprocessing_is_part_of_the_gradient(tmp_path: Path) -> None:
    # x = (p * s - mean) / std: d logit / d x = W, whatever the preprocessing
    model = loaded(tmp_path, linear_classifier(W), 8, ["a", "b"], scale=0.5,
                   mean=[1.0, 2.0, 3.0], std=[2.0, 4.0, 8.0])
    a = saliency(
        model, ImageInput(PIXELS), ClassScore(0), SaliencyParams(reduce="signed"), no_progress,
    )
    np.testing.assert_allclose(a.values, W[0].sum(axis=0), rtol=1e-5)


@pytest.mark.parametrize("rule", ["gausslegendre", "riemann_trapezoid", "riemann_middle"])
def test_integrated_gradients_on_a_linear_model_is_exact(linear: LoadedModel, rule: str) -> None:
    # IG of a linear f with a black baseline: (x - 0) * W, summed over channels
    params = IntegratedGradientsParams(steps=8, method=rule, baseline="zero")  # type: ignore[arg-type]
    a = integrated_gradients(linear, ImageInput(PIXELS), ClassScore(0), params, no_progress)
    np.testing.assert_allclose(a.values, (W[0] * chw(PIXELS)).sum(axis=0), rtol=1e-4, atol=1e-3)
    assert abs(a.extras["completeness_delta"]) < 1e-2
    assert a.model_calls == 2 + 8


def test_quadrature_weights() -> None:
    for rule in ("gausslegendre", "riemann_trapezoid", "riemann_middle", "riemann_left",
                 "riemann_right"):
        alphas, weights = quadrature(rule, 7)  # type: ignore[arg-type]
        assert weights.sum() == pytest.approx(1.0)
        assert ((alphas >= 0) & (alphas <= 1)).all()
        if rule not in ("riemann_left", "riemann_right"):  # symmetric rules: x is exact
            assert (alphas * weights).sum() == pytest.approx(0.5)
    left, _ = quadrature("riemann_left", 4)
    right, _ = quadrature("riemann_right", 4)
    np.testing.assert_allclose(left, [0, 0.25, 0.5, 0.75])
    np.testing.assert_allclose(right, [0.25, 0.5, 0.75, 1.0])


def test_integrated_gradients_completeness_on_a_nonlinear_model(tmp_path: Path) -> None:
    model = loaded(tmp_path, conv_classifier(16, 16, 3), 16, ["a", "b", "c"])
    img = ImageInput(np.random.default_rng(1).uniform(0, 255, (16, 16, 3)).astype(np.float32))
    errors = []
    for steps in (8, 64, 512):
        params = IntegratedGradientsParams(steps=steps, method="riemann_trapezoid",
                                           internal_batch_size=32)
        a = integrated_gradients(model, img, ClassScore(2), params, no_progress)
        errors.append(a.extras["completeness_error"])
    assert errors[-1] < 1e-3
    assert errors[1] < 0.01


def test_integrated_gradients_tolerance_rounds_are_nested_trapezoids(tmp_path: Path) -> None:
    """Each round equals a direct trapezoid rule with that many points, and every point of
    the path is evaluated once (5 + 4 + 8 + 16 = 33)."""
    model = loaded(tmp_path, conv_classifier(16, 16, 3), 16, ["a", "b", "c"])
    img = ImageInput(np.random.default_rng(1).uniform(0, 255, (16, 16, 3)).astype(np.float32))
    params = IntegratedGradientsParams(steps=5, tolerance=1e-12, max_steps=40,
                                       internal_batch_size=3)
    assert schedule(params) == [5, 9, 17, 33]
    seen: list[float] = []
    out = integrated_gradients(model, img, ClassScore(2), params, seen.append)
    rounds = out.extras["rounds"]
    assert [r["steps"] for r in rounds] == [5, 9, 17, 33]
    assert out.extras["tolerance_met"] is False and out.extras["steps"] == 33
    assert out.model_calls == 2 + 33
    assert seen == sorted(seen) and seen[-1] == 1.0
    for r in rounds:
        direct = integrated_gradients(
            model, img, ClassScore(2),
            IntegratedGradientsParams(steps=r["steps"], method="riemann_trapezoid"),
            no_progress)
        assert direct.extras["completeness_error"] > 1e-6  # the path crosses ReLU kinks
        assert r["completeness_error"] == pytest.approx(
            direct.extras["completeness_error"], rel=1e-3)
    np.testing.assert_allclose(out.values, direct.values, rtol=1e-4, atol=1e-6)
    assert out.extras["completeness_error"] == pytest.approx(
        direct.extras["completeness_error"], rel=1e-3)


def test_integrated_gradients_stops_at_the_first_round_within_tolerance(tmp_path: Path) -> None:
    model = loaded(tmp_path, conv_classifier(16, 16, 3), 16, ["a", "b", "c"])
    img = ImageInput(np.random.default_rng(1).uniform(0, 255, (16, 16, 3)).astype(np.float32))
    every = integrated_gradients(
        model, img, ClassScore(
            2,
        ), IntegratedGradientsParams(steps=3, tolerance=1e-12, max_steps=65),
        no_progress).extras["rounds"]
    errors = [r["completeness_error"] for r in every]
    tolerance = min(errors[1:])
    first = next(i for i, e in enumerate(errors) if e <= tolerance)
    assert first > 0  # the first round alone is not enough
    seen: list[float] = []
    out = integrated_gradients(
        model, img, ClassScore(
            2,
        ), IntegratedGradientsParams(steps=3, tolerance=tolerance, max_steps=65),
        seen.append)
    assert out.extras["tolerance_met"] is True
    assert [r["steps"] for r in out.extras["rounds"]] == [r["steps"] for r in every[: first + 1]]
    assert out.extras["completeness_error"] <= tolerance
    assert out.model_calls == 2 + every[first]["steps"]
    assert seen == sorted(seen) and seen[-1] == 1.0


def test_integrated_gradients_tolerance_on_a_linear_model_takes_one_round(
    linear: LoadedModel,
) -> None:
    # the trapezoid rule is exact on a linear path: the first round meets any tolerance
    params = IntegratedGradientsParams(steps=4, tolerance=1e-4, baseline="zero")
    a = integrated_gradients(linear, ImageInput(PIXELS), ClassScore(0), params, no_progress)
    assert a.extras["method"] == "riemann_trapezoid" and a.extras["steps"] == 4
    assert len(a.extras["rounds"]) == 1 and a.extras["tolerance_met"] is True
    np.testing.assert_allclose(a.values, (W[0] * chw(PIXELS)).sum(axis=0), rtol=1e-4, atol=1e-3)


def test_integrated_gradients_tolerance_refusals(linear: LoadedModel) -> None:
    spec = get_method("integrated_gradients")
    with pytest.raises(InvalidParams, match="riemann_trapezoid"):
        spec.check(spec.parse_params({"tolerance": 0.01, "method": "gausslegendre"}), linear)
    with pytest.raises(InvalidParams, match="max_steps"):
        spec.check(spec.parse_params({"tolerance": 0.01, "steps": 100, "max_steps": 50}), linear)
    spec.check(spec.parse_params({"tolerance": 0.01, "method": "riemann_trapezoid"}), linear)
    # without a tolerance max_steps plays no part
    spec.check(spec.parse_params({"steps": 100, "max_steps": 50}), linear)


def test_integrated_gradients_reports_progress(linear: LoadedModel) -> None:
    seen: list[float] = []
    params = IntegratedGradientsParams(steps=10, internal_batch_size=4)
    integrated_gradients(linear, ImageInput(PIXELS), ClassScore(0), params, seen.append)
    assert seen == pytest.approx([0.4, 0.8, 1.0])


def test_smoothgrad_of_a_linear_model_is_the_weight(linear: LoadedModel) -> None:
    # the gradient is W at every noisy copy, so the mean is W whatever the noise
    params = SmoothGradParams(samples=5, reduce="abs_sum")
    a = smoothgrad(linear, ImageInput(PIXELS), ClassScore(1), params, no_progress)
    np.testing.assert_allclose(a.values, np.abs(W[1]).sum(axis=0), rtol=1e-5)
    sq = smoothgrad(linear, ImageInput(PIXELS), ClassScore(1),
                    SmoothGradParams(samples=5, squared=True, reduce="abs_sum"), no_progress)
    np.testing.assert_allclose(sq.values, (W[1] ** 2).sum(axis=0), rtol=1e-5)
    assert a.model_calls == 5


def test_smoothgrad_is_seeded(tmp_path: Path) -> None:
    model = loaded(tmp_path, conv_classifier(16, 16, 3), 16, ["a", "b", "c"])
    img = ImageInput(np.random.default_rng(2).uniform(0, 255, (16, 16, 3)).astype(np.float32))
    a = smoothgrad(model, img, ClassScore(0), SmoothGradParams(samples=6, seed=3), no_progress)
    b = smoothgrad(model, img, ClassScore(0), SmoothGradParams(samples=6, seed=3), no_progress)
    c = smoothgrad(model, img, ClassScore(0), SmoothGradParams(samples=6, seed=4), no_progress)
    np.testing.assert_array_equal(a.values, b.values)
    assert not np.array_equal(a.values, c.values)


def sign_flip_classifier(weights: np.ndarray) -> onnx.ModelProto:
    """logit k = sum(weights[k] * (x * Relu(x) - 0.5 x)), x of shape (N, 3, H, W).

    d logit k / dx = weights[k] * (2 Relu(x) - 0.5): of one sign where x < 0.25 (-0.5
    weights[k] below 0), of the other above, so noise around x = 0.25 flips it.
    """
    classes = weights.shape[0]
    graph = helper.make_graph(
        [
            helper.make_node("Relu", ["input"], ["relu"], name="relu"),
            helper.make_node("Mul", ["input", "relu"], ["xrelu"], name="xrelu"),
            helper.make_node("Mul", ["half", "input"], ["half_x"], name="half_x"),
            helper.make_node("Sub", ["xrelu", "half_x"], ["f"], name="f"),
            helper.make_node("Flatten", ["f"], ["flat"], name="flatten", axis=1),
            helper.make_node("MatMul", ["flat", "W"], ["logits"], name="fc"),
        ],
        "sign_flip",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", *weights.shape[1:]])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])],
        initializer=[
            numpy_helper.from_array(
                np.ascontiguousarray(weights.reshape(classes, -1).T, np.float32), "W"
            ),
            numpy_helper.from_array(np.array(0.5, np.float32), "half"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def sign_flip_input(pixels: np.ndarray) -> np.ndarray:
    """The model input of ``sign_flip`` (below): x = pixels / 127.5 - 1, NCHW, float32."""
    out: np.ndarray = chw(pixels)[None] * np.float32(1 / 127.5) + np.float32(-1.0)
    return out


def smoothgrad_reference(
    pixels: np.ndarray, weight: np.ndarray, params: SmoothGradParams
) -> np.ndarray:
    """SmoothGrad of ``sign_flip_classifier`` by hand, before the channel reduction: the
    model input x = pixels / 127.5 - 1, σ = noise · (max x − min x), the noise drawn as the
    method draws it (one standard_normal per chunk of internal_batch_size samples)."""
    x = sign_flip_input(pixels)
    sigma = params.noise * float(x.max() - x.min())
    rng = np.random.default_rng(params.seed)
    grads = []
    for start in range(0, params.samples, params.internal_batch_size):
        n = min(params.internal_batch_size, params.samples - start)
        noisy = x + np.float32(sigma) * rng.standard_normal((n, *x.shape[1:]), dtype=np.float32)
        grads.append(weight[None].astype(np.float64) * (2 * np.maximum(noisy, 0) - 0.5))
    g = np.concatenate(grads)
    assert g.shape[0] == params.samples
    assert (np.sign(g) != np.sign(g[:1])).any(axis=0).mean() > 0.2  # many signs do flip
    out: np.ndarray = np.abs(g).mean(axis=0) if params.average == "abs" else g.mean(axis=0)
    return out


@pytest.fixture
def sign_flip(tmp_path: Path) -> LoadedModel:
    # model input x = pixels / 127.5 - 1, in [-1, 1]: the noise crosses 0.25 often
    return loaded(tmp_path, sign_flip_classifier(W), 8, ["a", "b"], scale=1 / 127.5,
                  mean=[1.0, 1.0, 1.0], std=[1.0, 1.0, 1.0])


def test_smoothgrad_average_abs_is_the_mean_absolute_gradient(sign_flip: LoadedModel) -> None:
    # samples 7 in chunks of 3: the noise comes from three draws of the generator
    common = {"samples": 7, "internal_batch_size": 3, "noise": 0.2, "seed": 5}
    img = ImageInput(PIXELS)
    for reduce in ("signed", "abs_max"):
        params = SmoothGradParams(average="abs", reduce=reduce, **common)  # type: ignore[arg-type]
        a = smoothgrad(sign_flip, img, ClassScore(1), params, no_progress)
        ref = smoothgrad_reference(PIXELS, W[1], params)
        expected = ref.sum(axis=0) if reduce == "signed" else ref.max(axis=0)
        np.testing.assert_allclose(a.values, expected, rtol=1e-6, atol=1e-6)
        assert a.extras["average"] == "abs"
        x = sign_flip_input(PIXELS)
        assert a.extras["sigma"] == pytest.approx(0.2 * float(x.max() - x.min()))
        assert a.model_calls == 7


def test_smoothgrad_averages_differ_when_the_gradient_changes_sign(
    sign_flip: LoadedModel,
) -> None:
    common = {"samples": 7, "internal_batch_size": 3, "noise": 0.2, "seed": 5,
              "reduce": "abs_max"}
    img = ImageInput(PIXELS)
    grad = smoothgrad(sign_flip, img, ClassScore(1), SmoothGradParams(**common), no_progress)  # type: ignore[arg-type]
    absolute = smoothgrad(sign_flip, img, ClassScore(1), SmoothGradParams(average="abs", **common),  # type: ignore[arg-type]
                          no_progress)
    assert grad.extras["average"] == "gradient"
    # the default still averages the gradient itself (then |·|, max over channels)
    ref = smoothgrad_reference(PIXELS, W[1], SmoothGradParams(**common))  # type: ignore[arg-type]
    np.testing.assert_allclose(grad.values, np.abs(ref).max(axis=0), rtol=1e-6, atol=1e-6)
    # mean |g| >= |mean g| everywhere, and strictly more where the signs cancel
    assert (absolute.values >= grad.values - 1e-6).all()
    assert np.abs(absolute.values - grad.values).max() > 0.1


def test_smoothgrad_refuses_squared_with_average_abs(sign_flip: LoadedModel) -> None:
    spec = get_method("smoothgrad")
    params = spec.parse_params({"squared": True, "average": "abs"})
    with pytest.raises(InvalidParams) as refused:
        spec.check(params, sign_flip)
    assert "squared" in refused.value.message and '"gradient"' in refused.value.message
    with pytest.raises(InvalidParams):
        smoothgrad(sign_flip, ImageInput(PIXELS), ClassScore(0), params, no_progress)
    # each on its own is fine
    spec.check(spec.parse_params({"squared": True}), sign_flip)
    spec.check(spec.parse_params({"average": "abs"}), sign_flip)


def test_the_measured_vjp_batch_changes_no_path_or_noise_map(tmp_path: Path) -> None:
    """``internal_batch_size`` unset: integrated gradients and SmoothGrad take the model's
    measured VJP batch, and give the maps of any explicit batch (the noise is drawn in the
    same order whatever the chunks: numpy's generator streams)."""
    model = loaded(tmp_path, conv_classifier(16, 16, 3), 16, ["a", "b", "c"])
    img = ImageInput(np.random.default_rng(4).uniform(0, 255, (16, 16, 3)).astype(np.float32))
    ig = [
        integrated_gradients(
            model, img, ClassScore(1),
            IntegratedGradientsParams(steps=21, internal_batch_size=b), no_progress,
        )
        for b in (None, 1, 16)
    ]
    assert model.vjp_batch_timings  # the default was measured
    sg = [
        smoothgrad(
            model, img, ClassScore(1),
            SmoothGradParams(samples=11, noise=0.2, seed=3, internal_batch_size=b), no_progress,
        )
        for b in (None, 1, 16)
    ]
    for runs in (ig, sg):
        for other in runs[1:]:
            np.testing.assert_allclose(runs[0].values, other.values, rtol=1e-5, atol=1e-6)
            assert runs[0].model_calls == other.model_calls
    assert ig[0].extras["completeness_error"] == pytest.approx(
        ig[1].extras["completeness_error"], abs=1e-5
    )
