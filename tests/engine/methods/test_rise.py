"""RISE: masks as in the authors' code, the saliency formula, agreement with occlusion."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.errors import InvalidParams
from engine.methods.base import no_progress
from engine.methods.occlusion import OcclusionParams, occlusion
from engine.methods.perturbation import References
from engine.methods.rise import RISE, RiseParams, RisePlan, rise, rise_codes
from engine.modalities.image import ImageInput
from engine.objectives import ClassScore
from lantern_testing.models import load_tiny, region_classifier

SIZE = 16


def test_masks_are_the_papers_upsampled_shifted_grids() -> None:
    from skimage.transform import resize

    plan = RisePlan(224, 224, 7, 0.5, 32, 32, 50, seed=3)
    codes = rise_codes(plan, 0, 50)
    masks = RISE.render_masks(plan, codes)
    assert masks.shape == (50, 224, 224) and masks.dtype == np.float32
    for r in range(0, 50, 7):
        grid = codes[r, :49].reshape(7, 7).astype(np.float64)
        sy, sx = codes[r, 49], codes[r, 50]
        assert 0 <= sy < 32 and 0 <= sx < 32
        up = resize(grid, (256, 256), order=1, mode="reflect", anti_aliasing=False)
        np.testing.assert_allclose(masks[r], up[sy : sy + 224, sx : sx + 224], atol=1e-6)
    # about p of the cells are kept
    assert abs(codes[:, :49].mean() - 0.5) < 0.05
    # a mask's pixels do not depend on the batch it is rendered in
    assert np.array_equal(RISE.render_masks(plan, codes[13:15]), masks[13:15])


def test_saliency_is_the_score_weighted_mean_mask(tmp_path: Path) -> None:
    model = load_tiny(tmp_path, region_classifier(SIZE, 0, 8, 0, 8), SIZE)
    img = ImageInput(np.random.default_rng(0).uniform(0, 255, (SIZE, SIZE, 3)).astype(np.float32))
    params = RiseParams(num_masks=60, grid_size=3, p=0.3, seed=5)
    plan = RISE.build_plan(model, img, ClassScore(0), params)
    scores = np.random.default_rng(1).normal(size=60)
    attr = RISE.assemble(model, img, ClassScore(0), params, plan, scores, References(1.0, None, 1))
    masks = RISE.render_masks(plan, rise_codes(plan, 0, 60)).astype(np.float64)
    expected = np.tensordot(scores, masks, axes=1) / (60 * 0.3)
    np.testing.assert_allclose(attr.values, expected, rtol=1e-5, atol=1e-5)


def test_scores_are_those_of_the_masked_images(tmp_path: Path) -> None:
    # f = sum of red over the top-left 8x8; hide black: score = sum(mask * red) there.
    model = load_tiny(tmp_path, region_classifier(SIZE, 0, 8, 0, 8), SIZE)
    img = ImageInput(np.full((SIZE, SIZE, 3), 100.0, np.float32))
    params = RiseParams(num_masks=20, grid_size=4, hide="zero")
    plan = RISE.build_plan(model, img, ClassScore(0), params)
    scores = RISE.evaluate(model, img, ClassScore(0), params, plan, 0, 20, no_progress)
    masks = RISE.render_masks(plan, rise_codes(plan, 0, 20))
    np.testing.assert_allclose(scores, 100.0 * masks[:, :8, :8].sum(axis=(1, 2)), rtol=1e-5)


def test_rise_agrees_with_exact_occlusion(tmp_path: Path) -> None:
    # Only the 4x4 block at rows 4..8, cols 8..12 matters: both maps peak there.
    model = load_tiny(tmp_path, region_classifier(SIZE, 4, 8, 8, 12), SIZE)
    img = ImageInput(np.full((SIZE, SIZE, 3), 150.0, np.float32))
    params = RiseParams(num_masks=1500, grid_size=4, hide="zero")
    r = rise(model, img, ClassScore(0), params, no_progress)
    o = occlusion(model, img, ClassScore(0), OcclusionParams(window=4, stride=1), no_progress)
    assert r.model_calls == 1501
    corr = np.corrcoef(r.values.ravel(), o.values.ravel())[0, 1]
    assert corr > 0.8
    ry, rx = np.unravel_index(np.argmax(r.values), r.values.shape)
    oy, ox = np.unravel_index(np.argmax(o.values), o.values.shape)
    assert 4 <= oy < 8 and 8 <= ox < 12
    assert abs(int(ry) - int(oy)) <= 2 and abs(int(rx) - int(ox)) <= 2


def test_params_and_check(tmp_path: Path) -> None:
    p = RiseParams()
    assert (p.num_masks, p.grid_size, p.p, p.batch_size) == (2000, 7, 0.5, None)
    for bad in ({"p": 1.0}, {"p": 0}, {"num_masks": 0}, {"x": 1}):
        with pytest.raises(ValueError):
            RiseParams.model_validate(bad)
    model = load_tiny(tmp_path, region_classifier(SIZE, 0, 8, 0, 8), SIZE)
    img = ImageInput(np.zeros((SIZE, SIZE, 3), np.float32))
    with pytest.raises(InvalidParams, match="grid_size"):
        rise(model, img, ClassScore(0), RiseParams(grid_size=17), no_progress)
    with pytest.raises(InvalidParams, match="segments"):
        rise(model, img, ClassScore(0), RiseParams(hide="segment_mean"), no_progress)
