"""Deletion and insertion curves on a linear model whose logits are computed by hand."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from engine.models.runtime import LoadedModel
from engine.quality.deletion_insertion import (
    auc,
    deletion,
    gaussian_blur,
    gaussian_kernel,
    insertion,
    pixel_order,
)
from lantern_testing.loaded import loaded
from lantern_testing.models import CountingModel, linear_classifier

SIZE = 8


def sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


@pytest.fixture
def model(tmp_path: Path) -> LoadedModel:
    """Two classes; logit 1 = 0. Logit 0 weighs rows 0–1 by 1/48, rows 2–3 by 1/96 (all
    channels) and ignores rows 4–7: an all-ones image has logit 0 = 3·16/48 + 3·16/96 = 1.5."""
    w = np.zeros((2, 3, SIZE, SIZE), np.float32)
    w[0, :, 0:2, :] = 1.0 / 48.0
    w[0, :, 2:4, :] = 1.0 / 96.0
    return loaded(tmp_path, linear_classifier(w), SIZE, ["a", "b"])


def row_map() -> np.ndarray:
    """Attribution decreasing by row: pixels ranked in raster order."""
    return np.repeat(np.arange(SIZE, 0, -1, dtype=np.float32)[:, None], SIZE, axis=1)


def ones() -> np.ndarray:
    return np.ones((SIZE, SIZE, 3), np.float32)


def test_auc_is_the_normalised_trapezoid() -> None:
    assert auc([1.0, 1.0]) == pytest.approx(1.0)
    assert auc([0.0, 1.0]) == pytest.approx(0.5)
    assert auc([1.0, 0.0, 1.0]) == pytest.approx(0.5)
    # 4 steps, dx = 1/4: (0.2/2 + 0.4 + 0.6 + 0.8 + 1.0/2) / 4
    assert auc([0.2, 0.4, 0.6, 0.8, 1.0]) == pytest.approx(0.6)
    y = np.random.default_rng(0).uniform(size=17)
    assert auc(y) == pytest.approx(float(np.trapezoid(y, dx=1 / 16)))
    with pytest.raises(ValueError):
        auc([1.0])


def test_pixel_order_is_by_decreasing_attribution_ties_in_raster_order() -> None:
    m = np.asarray([[0.0, 3.0], [3.0, 1.0]])
    np.testing.assert_array_equal(pixel_order(m), [[3, 0], [1, 2]])
    m = np.asarray([[np.nan, 1.0], [2.0, 2.0]])
    np.testing.assert_array_equal(pixel_order(m), [[3, 2], [0, 1]])


def test_deletion_by_hand(model: LoadedModel) -> None:
    # 16 pixels (two rows) per step: 4 steps, 5 points.
    # step 0: logit 1.5; step 1 (rows 0–1 black): 0.5; steps 2–4: 0.
    res = deletion(model, ones(), 0, row_map(), pixels_per_step=16)
    expected = [sigmoid(1.5), sigmoid(0.5), 0.5, 0.5, 0.5]
    np.testing.assert_allclose(res.curve, expected, rtol=1e-5)
    assert res.steps == 4 and res.forward_passes == 5 and res.pixels_per_step == 16
    by_hand = (expected[0] / 2 + expected[1] + expected[2] + expected[3] + expected[4] / 2) / 4
    assert res.auc == pytest.approx(by_hand, rel=1e-5)
    # for class 1 the curve is 1 - that
    res1 = deletion(model, ones(), 1, row_map(), pixels_per_step=16)
    np.testing.assert_allclose(res1.curve, 1 - np.asarray(expected), rtol=1e-5)


def test_deletion_with_the_mean_substrate(model: LoadedModel) -> None:
    # rows 0–3 are 2, rows 4–7 are 0: the mean colour is 1.
    img = np.zeros((SIZE, SIZE, 3), np.float32)
    img[:4] = 2.0
    # step 0: 3·16·2/48 + 3·16·2/96 = 3; step 1 (rows 0–1 → 1): 1 + 1 = 2;
    # step 2 (rows 0–3 → 1): 1 + 0.5 = 1.5; steps 3–4 touch rows the model ignores.
    res = deletion(model, img, 0, row_map(), pixels_per_step=16, substrate="mean")
    expected = [sigmoid(3.0), sigmoid(2.0), sigmoid(1.5), sigmoid(1.5), sigmoid(1.5)]
    np.testing.assert_allclose(res.curve, expected, rtol=1e-5)


def test_uneven_last_step(model: LoadedModel) -> None:
    # 24 pixels per step: ceil(64 / 24) = 3 steps; step 1 deletes rows 0–1 and half of row 2
    res = deletion(model, ones(), 0, row_map(), pixels_per_step=24)
    expected = [sigmoid(1.5), sigmoid(0.5 - 8 * 3 / 96), 0.5, 0.5]
    np.testing.assert_allclose(res.curve, expected, rtol=1e-5)
    assert res.steps == 3 and res.forward_passes == 4


def test_insertion_by_hand(model: LoadedModel) -> None:
    # from black, rows pasted back two at a time
    res = insertion(model, ones(), 0, row_map(), pixels_per_step=16, start="zero")
    expected = [0.5, sigmoid(1.0), sigmoid(1.5), sigmoid(1.5), sigmoid(1.5)]
    np.testing.assert_allclose(res.curve, expected, rtol=1e-5)
    assert res.auc == pytest.approx(
        (expected[0] / 2 + sum(expected[1:4]) + expected[4] / 2) / 4, rel=1e-5
    )
    # a better map (the reverse order is the worst) scores higher
    worst = insertion(model, ones(), 0, -row_map(), pixels_per_step=16, start="zero")
    assert worst.auc < res.auc
    assert (
        deletion(model, ones(), 0, -row_map(), pixels_per_step=16).auc
        > deletion(model, ones(), 0, row_map(), pixels_per_step=16).auc
    )


def test_insertion_starts_from_the_blurred_image(model: LoadedModel) -> None:
    rng = np.random.default_rng(1)
    img = rng.uniform(0, 4, (SIZE, SIZE, 3)).astype(np.float32)
    res = insertion(model, img, 0, row_map(), pixels_per_step=16)
    logits = model.scores(np.stack([gaussian_blur(img), img]))
    p0 = 1.0 / (1.0 + np.exp(logits[:, 1] - logits[:, 0]))
    assert res.curve[0] == pytest.approx(float(p0[0]), rel=1e-5)
    assert res.curve[-1] == pytest.approx(float(p0[1]), rel=1e-5)


def test_gaussian_kernel_and_blur_by_hand() -> None:
    k = gaussian_kernel()
    assert k.shape == (11,)
    raw = np.exp(-(np.arange(-5, 6) ** 2) / 50.0)
    np.testing.assert_allclose(k, raw / raw.sum())
    assert k.sum() == pytest.approx(1.0)
    # a delta far from the borders becomes the outer product of the kernel
    img = np.zeros((31, 31, 3), np.float32)
    img[15, 15] = 1000.0
    out = gaussian_blur(img)
    np.testing.assert_allclose(out[10:21, 10:21, 0], 1000.0 * np.outer(k, k), rtol=1e-5)
    assert out[..., 0].sum() == pytest.approx(1000.0, rel=1e-5)
    # a constant image stays constant (reflect borders)
    np.testing.assert_allclose(gaussian_blur(np.full((9, 12, 3), 7.0, np.float32)), 7.0, rtol=1e-6)


def test_default_step_on_224_is_224_steps_in_batches_of_16(tmp_path: Path) -> None:
    w = np.zeros((2, 3, 224, 224), np.float32)
    w[0, :, :112] = 1e-4
    m = loaded(tmp_path, linear_classifier(w), 224, ["a", "b"])
    counter = CountingModel(m)
    img = np.full((224, 224, 3), 10.0, np.float32)
    seen: list[float] = []
    res = deletion(m, img, 0, np.zeros((224, 224), np.float32), progress=seen.append)
    assert res.steps == 224 and res.pixels_per_step == 224
    assert res.forward_passes == 225 == len(res.curve) == counter.images
    assert counter.batches == [16] * 14 + [1]
    assert seen[-1] == 1.0 and seen == sorted(seen)
    # the map is all ties: raster order deletes the weighted top half first
    assert res.curve[112] == pytest.approx(0.5, abs=1e-6)


def test_bad_inputs(model: LoadedModel) -> None:
    with pytest.raises(ValueError, match="shape"):
        deletion(model, ones(), 0, np.zeros((4, 4)))
    with pytest.raises(ValueError, match="target"):
        deletion(model, ones(), 2, row_map())
