"""Occlusion against values computed by hand on linear models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from api_schemas.models import ModelManifest
from engine.errors import InvalidParams
from engine.methods.base import no_progress
from engine.methods.occlusion import OcclusionParams, occlusion, window_positions
from engine.modalities.image import ImageInput
from engine.models.runtime import LoadedModel, RuntimeOptions
from engine.objectives import ClassScore
from lantern_testing.models import CountingModel, linear_classifier, manifest


def load(tmp_path: Path, model: onnx.ModelProto, size: int, layout: str = "NCHW") -> LoadedModel:
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    m = ModelManifest.model_validate(manifest("tiny", size, ["a", "b"], layout))
    return LoadedModel("tiny", "v", path, m, RuntimeOptions(max_batch=4))


def one_pixel_model(size: int, y: int, x: int, layout: str = "NCHW") -> onnx.ModelProto:
    """Class 0's logit is the red value of pixel (y, x); class 1's is constant 0."""
    if layout == "NCHW":
        w = np.zeros((2, 3, size, size), np.float32)
        w[0, 0, y, x] = 1.0
    else:
        w = np.zeros((2, size, size, 3), np.float32)
        w[0, y, x, 0] = 1.0
    return linear_classifier(w, layout=layout)


def test_window_positions() -> None:
    assert window_positions(224, 16, 8) == list(range(0, 209, 8))
    assert len(window_positions(224, 16, 8)) ** 2 == 729
    assert window_positions(8, 4, 2) == [0, 2, 4]
    assert window_positions(8, 8, 3) == [0]


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_overlapping_windows_average_the_drops(tmp_path: Path, layout: str) -> None:
    # f(x) = red value v of pixel (0, 0). 8x8 image, window 4, stride 2: windows start at
    # 0, 2, 4 on each axis. Only the window at (0, 0) covers (0, 0), and hiding it with a
    # black baseline drops f by v. A pixel's attribution is the mean drop over the windows
    # covering it: (1, 1) is covered by 1 window -> v; (2, 0) and (0, 3) by 2 -> v/2;
    # (2, 2) by 4 -> v/4;
    # (0, 4) by 1 window that does not cover (0, 0) -> 0; (7, 7) -> 0.
    v = 200.0
    model = load(tmp_path, one_pixel_model(8, 0, 0, layout), 8, layout)
    pixels = np.full((8, 8, 3), 50.0, np.float32)
    pixels[0, 0, 0] = v
    params = OcclusionParams(window=4, stride=2, baseline="zero", batch_size=4)
    attr = occlusion(model, ImageInput(pixels), ClassScore(0), params, no_progress)
    assert attr.model_calls == 1 + 9
    assert attr.values.shape == (8, 8)
    assert attr.values[1, 1] == pytest.approx(v)
    assert attr.values[0, 1] == pytest.approx(v)
    assert attr.values[0, 3] == pytest.approx(v / 2)
    assert attr.values[2, 0] == pytest.approx(v / 2)
    assert attr.values[0, 2] == pytest.approx(v / 2)
    assert attr.values[2, 2] == pytest.approx(v / 4)
    assert attr.values[3, 3] == pytest.approx(v / 4)
    assert attr.values[0, 4] == pytest.approx(0.0)
    assert attr.values[7, 7] == pytest.approx(0.0)


def test_colour_and_mean_baselines(tmp_path: Path) -> None:
    # f = sum of the red channel over the top-left 4x4 quadrant. Window 4, stride 4: the
    # top-left window replaces 16 red values r by the baseline's red b: drop = 16 (r - b),
    # spread as the same value over the window's 16 pixels; other windows drop nothing.
    w = np.zeros((2, 3, 8, 8), np.float32)
    w[0, 0, :4, :4] = 1.0
    model = load(tmp_path, linear_classifier(w), 8)
    pixels = np.zeros((8, 8, 3), np.float32)
    pixels[..., 0] = 100.0
    pixels[4:, 4:, 0] = 20.0  # the mean red is (3*16*100 + 16*20)/64 = 80
    for baseline, b in (((30, 0, 0), 30.0), ("mean", 80.0), ("zero", 0.0)):
        params = OcclusionParams(window=4, stride=4, baseline=baseline)
        attr = occlusion(model, ImageInput(pixels), ClassScore(0), params, no_progress)
        expected = np.zeros((8, 8))
        expected[:4, :4] = 16 * (100.0 - b)
        np.testing.assert_allclose(attr.values, expected, rtol=1e-5, atol=1e-3)
        assert attr.model_calls == 1 + 4


def test_probability_score_uses_softmax(tmp_path: Path) -> None:
    # logits (v, 0) -> p0 = sigmoid(v). Hiding (0, 0) makes both logits 0 -> p0 = 0.5.
    v = 2.0
    model = load(tmp_path, one_pixel_model(8, 0, 0), 8)
    pixels = np.zeros((8, 8, 3), np.float32)
    pixels[0, 0, 0] = v
    params = OcclusionParams(window=8, stride=8, score="probability")
    attr = occlusion(model, ImageInput(pixels), ClassScore(0, "probability"), params, no_progress)
    expected = 1 / (1 + np.exp(-v)) - 0.5
    np.testing.assert_allclose(attr.values, np.full((8, 8), expected), rtol=1e-5)


def test_uncovered_pixels_are_zero(tmp_path: Path) -> None:
    # window 3, stride 3 on 8 pixels covers 0..5; rows/cols 6 and 7 are never hidden.
    w = np.ones((2, 3, 8, 8), np.float32)
    model = load(tmp_path, linear_classifier(w), 8)
    pixels = np.ones((8, 8, 3), np.float32)
    attr = occlusion(
        model, ImageInput(pixels), ClassScore(0), OcclusionParams(window=3, stride=3), no_progress,
    )
    assert np.all(attr.values[6:, :] == 0) and np.all(attr.values[:, 6:] == 0)
    # each window hides 9 pixels x 3 channels of value 1 -> drop 27
    np.testing.assert_allclose(attr.values[:6, :6], 27.0, rtol=1e-6)


def test_window_larger_than_input_is_refused(tmp_path: Path) -> None:
    model = load(tmp_path, one_pixel_model(8, 0, 0), 8)
    with pytest.raises(InvalidParams, match="larger than the model's input"):
        occlusion(
            model,
            ImageInput(np.zeros((8, 8, 3), np.float32)),
            ClassScore(0),
            OcclusionParams(window=9),
            no_progress,
        )


def test_progress_is_reported_per_chunk(tmp_path: Path) -> None:
    model = load(tmp_path, one_pixel_model(8, 0, 0), 8)
    seen: list[float] = []
    occlusion(
        model,
        ImageInput(np.zeros((8, 8, 3), np.float32)),
        ClassScore(0),
        OcclusionParams(window=2, stride=2, batch_size=4),
        seen.append,
    )
    assert len(seen) == 4  # 16 windows in chunks of 4
    assert seen == sorted(seen) and seen[-1] == 1.0


def test_params_bounds() -> None:
    with pytest.raises(ValueError):
        OcclusionParams(window=0)
    with pytest.raises(ValueError):
        OcclusionParams(baseline=(256, 0, 0))
    with pytest.raises(ValueError):
        OcclusionParams.model_validate({"window": 8, "unknown": 1})


def strided_conv_model(size: int) -> onnx.ModelProto:
    """Conv k3 s2 pads (0, 0, 1, 1) -> Relu -> Conv k3 pads 1 -> Relu -> GlobalAveragePool
    -> Flatten -> Gemm: local layers to cut at, with stride 2 and asymmetric pads."""
    rng = np.random.default_rng(0)
    w1 = (rng.normal(size=(6, 3, 3, 3)) / 30).astype(np.float32)
    w2 = (rng.normal(size=(6, 6, 3, 3)) / 8).astype(np.float32)
    fc = rng.normal(size=(2, 6)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["input", "w1"], ["c1"], strides=[2, 2], pads=[0, 0, 1, 1]),
            helper.make_node("Relu", ["c1"], ["a1"]),
            helper.make_node("Conv", ["a1", "w2"], ["c2"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["c2"], ["a2"]),
            helper.make_node("GlobalAveragePool", ["a2"], ["pool"]),
            helper.make_node("Flatten", ["pool"], ["flat"]),
            helper.make_node("Gemm", ["flat", "fc"], ["logits"], transB=1),
        ],
        "strided",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])],
        initializer=[
            numpy_helper.from_array(w1, "w1"),
            numpy_helper.from_array(w2, "w2"),
            numpy_helper.from_array(fc, "fc"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


@pytest.mark.parametrize("baseline", ["zero", "blur"])
def test_incremental_inference_gives_the_same_map(tmp_path: Path, baseline: str) -> None:
    # 32×32, window 4, stride 2: 15 × 15 windows, the last ones touching the borders
    model = load(tmp_path, strided_conv_model(32), 32)
    runner = model.incremental((4, 4))
    assert runner is not None and runner.cut.tensor == "a2"
    assert runner.cut.crop[0] < 32 and runner.cut.crop[1] < 32
    counter = CountingModel(model)
    pixels = np.random.default_rng(1).uniform(0, 255, (32, 32, 3)).astype(np.float32)
    params = {"window": 4, "stride": 2, "baseline": baseline, "batch_size": 8}
    on = occlusion(model, ImageInput(pixels), ClassScore(0), OcclusionParams(**params), no_progress)
    assert counter.images == 1  # the reference only: every window went through the runner
    off = occlusion(
        model,
        ImageInput(pixels),
        ClassScore(0),
        OcclusionParams(**params, incremental=False),
        no_progress,
    )
    assert counter.images == 1 + 1 + 15 * 15
    assert np.abs(off.values).max() > 0.1
    np.testing.assert_allclose(on.values, off.values, rtol=1e-5, atol=1e-5)
    assert on.model_calls == off.model_calls == 1 + 15 * 15
    # a2: J 2, L 2, R 4 (as in tests/engine/models/test_incremental.py); a window of 4
    # changes up to 4 units, read from 15 pixels, in a crop ≡ 32 (mod 2): 16
    assert on.extras["incremental"] == {"layer": "a2", "crop": [16, 16]}
    assert off.extras["incremental"] is None


@pytest.mark.parametrize("batch_size", [8, None])
def test_a_failing_incremental_runner_falls_back_to_full_passes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, batch_size: int | None
) -> None:
    model = load(tmp_path, strided_conv_model(32), 32)
    runner = model.incremental((4, 4))
    assert runner is not None
    calls = []

    def broken(*args: object) -> None:
        calls.append(1)
        raise RuntimeError("a shape the cut analysis got wrong")

    monkeypatch.setattr(runner, "scores", broken)
    counter = CountingModel(model)
    pixels = np.random.default_rng(2).uniform(0, 255, (32, 32, 3)).astype(np.float32)
    params = {"window": 4, "stride": 2, "batch_size": batch_size}
    got = occlusion(
        model, ImageInput(pixels), ClassScore(0), OcclusionParams(**params), no_progress,
    )
    assert calls == [1]  # tried once, then full passes for the rest of the evaluation
    assert counter.images == 1 + 15 * 15
    assert got.model_calls == 1 + 15 * 15  # no batch counted twice
    full = occlusion(
        model, ImageInput(
            pixels,
        ), ClassScore(0), OcclusionParams(**params, incremental=False), no_progress
    )
    assert np.array_equal(got.values, full.values)
