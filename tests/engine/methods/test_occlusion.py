"""Occlusion against values computed by hand on linear models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from api_schemas.models import ModelManifest
from engine.errors import InvalidParams
from engine.methods.base import ImageInput, no_progress
from engine.methods.occlusion import OcclusionParams, occlusion, window_positions
from engine.models.runtime import LoadedModel, RuntimeOptions
from lantern_testing.models import linear_classifier, manifest


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
    attr = occlusion(model, ImageInput(pixels), 0, params, no_progress)
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
        attr = occlusion(model, ImageInput(pixels), 0, params, no_progress)
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
    attr = occlusion(model, ImageInput(pixels), 0, params, no_progress)
    expected = 1 / (1 + np.exp(-v)) - 0.5
    np.testing.assert_allclose(attr.values, np.full((8, 8), expected), rtol=1e-5)


def test_uncovered_pixels_are_zero(tmp_path: Path) -> None:
    # window 3, stride 3 on 8 pixels covers 0..5; rows/cols 6 and 7 are never hidden.
    w = np.ones((2, 3, 8, 8), np.float32)
    model = load(tmp_path, linear_classifier(w), 8)
    pixels = np.ones((8, 8, 3), np.float32)
    attr = occlusion(model, ImageInput(pixels), 0, OcclusionParams(window=3, stride=3), no_progress)
    assert np.all(attr.values[6:, :] == 0) and np.all(attr.values[:, 6:] == 0)
    # each window hides 9 pixels x 3 channels of value 1 -> drop 27
    np.testing.assert_allclose(attr.values[:6, :6], 27.0, rtol=1e-6)


def test_window_larger_than_input_is_refused(tmp_path: Path) -> None:
    model = load(tmp_path, one_pixel_model(8, 0, 0), 8)
    with pytest.raises(InvalidParams, match="larger than the model's input"):
        occlusion(
            model,
            ImageInput(np.zeros((8, 8, 3), np.float32)),
            0,
            OcclusionParams(window=9),
            no_progress,
        )


def test_progress_is_reported_per_chunk(tmp_path: Path) -> None:
    model = load(tmp_path, one_pixel_model(8, 0, 0), 8)
    seen: list[float] = []
    occlusion(
        model,
        ImageInput(np.zeros((8, 8, 3), np.float32)),
        0,
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
