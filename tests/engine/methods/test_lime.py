"""LIME on tiny models whose answer is known, segmentation and the segment overlay."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.methods.base import no_progress
from engine.methods.lime import LimeParams, kernel_weights, lime, lime_codes
from engine.methods.segments import (
    FelzenszwalbParams,
    GridParams,
    QuickshiftParams,
    SlicParams,
    segment,
    segment_mean_pixels,
)
from engine.modalities.image import ImageInput
from engine.objectives import ClassScore
from engine.render.heatmap import encode_png
from engine.render.segments import segment_overlay, top_segments
from lantern_testing.models import load_tiny, region_classifier

SIZE = 32


def quadrants(seed: int = 0) -> ImageInput:
    """Four flat colour quadrants with a little noise, so superpixels follow them."""
    rng = np.random.default_rng(seed)
    px = np.zeros((SIZE, SIZE, 3), np.float32)
    h = SIZE // 2
    px[:h, :h] = (200, 40, 40)
    px[:h, h:] = (40, 200, 40)
    px[h:, :h] = (40, 40, 200)
    px[h:, h:] = (200, 200, 40)
    px += rng.normal(0, 4, size=px.shape).astype(np.float32)
    return ImageInput(np.clip(px, 0, 255))


def patches(seed: int = 0) -> ImageInput:
    """48x48: a 3x3 grid of 16-pixel patches of random colours (red >= 100), a little noise."""
    rng = np.random.default_rng(seed)
    px = np.zeros((48, 48, 3), np.float32)
    for i in range(3):
        for j in range(3):
            px[i * 16 : (i + 1) * 16, j * 16 : (j + 1) * 16] = rng.uniform(100, 255, size=3)
    px += rng.normal(0, 4, size=px.shape).astype(np.float32)
    return ImageInput(np.clip(px, 0, 255))


def test_lime_finds_the_only_region_the_model_looks_at(tmp_path: Path) -> None:
    # logit 0 = sum of red over the centre patch: only the superpixel there matters.
    model = load_tiny(tmp_path, region_classifier(48, 16, 32, 16, 32), 48)
    params = LimeParams.model_validate(
        {"segmentation": {"algorithm": "slic", "n_segments": 9}, "num_samples": 300}
    )
    attr = lime(model, patches(), ClassScore(0), params, no_progress)
    seg = attr.artifact("segments").labels
    assert seg.shape == (48, 48) and seg.dtype == np.int32
    weights = np.asarray(attr.extras["segments"])
    assert len(weights) == attr.extras["n_segments"] == int(seg.max()) + 1
    best = attr.extras["top_positive"][0]
    inside = seg == best
    centre = np.zeros((48, 48), bool)
    centre[16:32, 16:32] = True
    assert (inside & centre).sum() >= 0.9 * inside.sum()
    assert (inside & centre).sum() >= 0.9 * centre.sum()
    # the map paints segment weights
    np.testing.assert_array_equal(attr.values, weights[seg].astype(np.float32))
    # segments entirely outside the centre get ~0 weight
    outside = [k for k in range(len(weights)) if not (centre & (seg == k)).any()]
    assert outside and max(abs(weights[k]) for k in outside) < 0.02 * weights[best]
    assert attr.extras["r2"] > 0.95  # the model is linear in the on/off vector
    # 9 segments: 512 distinct vectors, so some of the 300 samples repeat and run once
    unique = len({c.tobytes() for c in lime_codes(len(weights), 0, 0, 300)})
    assert unique < 300 and attr.model_calls == 1 + unique


def test_weights_recover_a_linear_model_on_grid_segments(tmp_path: Path) -> None:
    # 4 grid cells, hide black: score = 16*16*200 * z0 exactly; weighted ridge with a small
    # alpha recovers coefficient 51200 for cell 0 and ~0 for the others.
    model = load_tiny(tmp_path, region_classifier(SIZE, 0, 16, 0, 16), SIZE)
    img = ImageInput(np.full((SIZE, SIZE, 3), 200.0, np.float32))
    params = LimeParams.model_validate(
        {
            "segmentation": {"algorithm": "grid", "cell": 16},
            "num_samples": 200,
            "hide": "zero",
            "alpha": 1e-6,
            "top_k": 2,
        }
    )
    attr = lime(model, img, ClassScore(0), params, no_progress)
    np.testing.assert_allclose(attr.extras["segments"], [51200.0, 0, 0, 0], atol=1e-3)
    assert attr.extras["top_positive"] == [0]
    assert all(attr.extras["segments"][k] > -1e-3 for k in attr.extras["top_negative"])
    assert attr.extras["r2"] == pytest.approx(1.0)
    assert attr.extras["intercept"] == pytest.approx(0.0, abs=1e-2)


def test_codes_and_kernel() -> None:
    z = lime_codes(6, 3, 0, 50)
    assert z.shape == (50, 6) and z.dtype == np.uint8
    assert z[0].tolist() == [1] * 6  # sample 0 is the image itself
    assert np.array_equal(lime_codes(6, 3, 20, 21)[0], z[20])
    w = kernel_weights(np.array([[1, 1, 1, 1], [0, 0, 0, 0], [1, 0, 0, 0]], np.uint8), 0.25)
    # cosine distances 0, 1 (all off), 1 - sqrt(1/4) = 0.5
    np.testing.assert_allclose(w, np.sqrt(np.exp(-np.array([0.0, 1.0, 0.25]) / 0.0625)))


@pytest.mark.parametrize(
    "params",
    [
        SlicParams(n_segments=8),
        QuickshiftParams(kernel_size=3, max_dist=20),
        FelzenszwalbParams(scale=50, min_size=20),
        GridParams(cell=8),
    ],
)
def test_segmentations_label_every_pixel_0_to_m(params: object) -> None:
    labels = segment(quadrants().pixels, params)  # type: ignore[arg-type]
    assert labels.shape == (SIZE, SIZE) and labels.dtype == np.int32
    m = int(labels.max()) + 1
    assert set(np.unique(labels).tolist()) == set(range(m))
    assert labels[0, 0] == 0  # raster order of first appearance
    assert np.array_equal(labels, segment(quadrants().pixels, params))  # type: ignore[arg-type]


def test_segment_mean_hide_colour_and_top_segments() -> None:
    px = quadrants().pixels
    seg = segment(px, GridParams(cell=16))
    mean = segment_mean_pixels(px, seg)
    np.testing.assert_allclose(mean[0, 0], px[:16, :16].reshape(-1, 3).mean(axis=0), rtol=1e-5)
    assert top_segments(np.array([0.5, -1.0, 2.0, 0.0, -0.1]), 2) == ([2, 0], [1, 4])


def test_params() -> None:
    p = LimeParams.model_validate({"segmentation": {"algorithm": "quickshift", "ratio": 0.5}})
    assert isinstance(p.segmentation, QuickshiftParams) and p.segmentation.kernel_size == 4
    assert isinstance(LimeParams().segmentation, SlicParams)
    assert LimeParams().num_samples == 1000 and LimeParams().kernel_width == 0.25
    for bad in (
        {"unknown": 1},
        {"num_samples": 1},
        {"segmentation": {"algorithm": "slic", "ratio": 0.5}},
        {"segmentation": {"algorithm": "watershed"}},
        {"hide": [256, 0, 0]},
    ):
        with pytest.raises(ValueError):
            LimeParams.model_validate(bad)


def test_segment_overlay_outlines_positive_green_and_negative_red() -> None:
    seg = segment(quadrants().pixels, GridParams(cell=16))  # 4 cells at 32x32
    base = Image.new("RGB", (64, 48), (128, 128, 128))  # the caller's original size
    out = segment_overlay(base, seg, [2.0, -1.0, 0.0, 0.0], top_k=1, thickness=1)
    assert out.size == (64, 48)
    a = np.asarray(out)
    green = np.all(a == (0, 200, 0), axis=-1)
    red = np.all(a == (230, 0, 0), axis=-1)
    # cell 0 (top-left) upscales to x < 32, y < 24; cell 1 (top-right) to x >= 32, y < 24
    assert green.any() and red.any()
    ys, xs = np.nonzero(green)
    assert xs.max() < 32 and ys.max() < 24
    ys, xs = np.nonzero(red)
    assert xs.min() >= 32 and ys.max() < 24
    assert not green[10, 10]  # outlines only, the inside is untouched
    png = encode_png(segment_overlay(base, seg, [2.0, -1.0, 0.0, 0.0], top_k=1))
    assert png.startswith(b"\x89PNG")
