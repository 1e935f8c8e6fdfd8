"""Occlusion's adaptive drill-down (Krypton): coarse pass, fine re-do of the most uncertain
windows, biharmonic fill of the rest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.errors import InvalidParams
from engine.methods.base import no_progress
from engine.methods.occlusion import (
    OCCLUSION,
    OcclusionParams,
    cost,
    fill_biharmonic,
    node_scores,
    occlusion,
    refined_windows,
    top_nodes,
)
from engine.methods.perturbation import References, dump_plan, load_plan
from engine.modalities.image import ImageInput
from engine.objectives import ClassScore
from lantern_testing.models import (
    CountingModel,
    conv_classifier,
    linear_classifier,
    load_tiny,
    region_classifier,
)

SIZE = 32


def flat(v: float = 150.0) -> ImageInput:
    return ImageInput(np.full((SIZE, SIZE, 3), v, np.float32))


def drill(**kw: object) -> OcclusionParams:
    base: dict[str, object] = {"window": 4, "mode": "drilldown", "coarse_stride": 4}
    return OcclusionParams.model_validate({**base, "fine_stride": 2, **kw})


@pytest.mark.parametrize("coarse", [4, 6])
def test_fraction_one_is_exact_occlusion_at_the_fine_stride(tmp_path: Path, coarse: int) -> None:
    model = load_tiny(tmp_path, conv_classifier(SIZE, SIZE, 3), SIZE, ["a", "b", "c"])
    img = ImageInput(np.random.default_rng(0).uniform(0, 255, (SIZE, SIZE, 3)).astype(np.float32))
    exact = occlusion(model, img, ClassScore(0), OcclusionParams(window=4, stride=2), no_progress)
    dd = occlusion(
        model, img, ClassScore(0), drill(fraction=1.0, coarse_stride=coarse), no_progress,
    )
    np.testing.assert_allclose(dd.values, exact.values, rtol=1e-6, atol=1e-6)
    assert dd.model_calls == exact.model_calls == 1 + 15 * 15
    n_coarse = len(range(0, 15, coarse // 2)) ** 2
    assert dd.extras["windows_coarse"] == n_coarse
    assert dd.extras["windows_fine"] == 15 * 15 - n_coarse  # every skipped window re-done
    assert dd.extras["forward_passes_saved"] == 0


def test_drilldown_agrees_with_exact_and_saves_passes(tmp_path: Path) -> None:
    # only rows 12..16, cols 20..24 matter
    model = load_tiny(tmp_path, region_classifier(SIZE, 12, 16, 20, 24), SIZE)
    counter = CountingModel(model)
    exact = occlusion(
        model, flat(), ClassScore(0), OcclusionParams(window=4, stride=2), no_progress,
    )
    counter.batches.clear()
    dd = occlusion(model, flat(), ClassScore(0), drill(fraction=0.1), no_progress)
    e = dd.extras
    assert e["windows_coarse"] == 8 * 8
    assert 0 < e["windows_fine"] < 15 * 15 - 64
    assert dd.model_calls == counter.images == 1 + e["windows_coarse"] + e["windows_fine"]
    assert e["forward_passes_saved"] == exact.model_calls - dd.model_calls > 100
    # every window that overlaps the region was re-done: the pixels that only those windows
    # cover are exact; elsewhere the smooth fill rings a little around the sharp bump
    np.testing.assert_allclose(dd.values[12:16, 20:24], exact.values[12:16, 20:24], atol=1e-3)
    assert np.abs(dd.values - exact.values).max() < 0.1 * exact.values.max()
    assert np.unravel_index(np.argmax(dd.values), (SIZE, SIZE)) == np.unravel_index(
        np.argmax(exact.values), (SIZE, SIZE)
    )
    assert np.corrcoef(dd.values.ravel(), exact.values.ravel())[0, 1] > 0.95


def test_incremental_inference_gives_the_same_drilldown(tmp_path: Path) -> None:
    # Conv k3 pads 1 -> Relu: cut at the Relu ("act"); a window of 4 changes 6 units per
    # axis, which read 8 pixels
    model = load_tiny(tmp_path, conv_classifier(SIZE, SIZE, 3), SIZE, ["a", "b", "c"])
    counter = CountingModel(model)
    img = ImageInput(np.random.default_rng(0).uniform(0, 255, (SIZE, SIZE, 3)).astype(np.float32))
    on = occlusion(model, img, ClassScore(0), drill(fraction=0.3, baseline="blur"), no_progress)
    assert counter.images == 1  # the reference only: the windows of both rounds incremental
    off = occlusion(
        model, img, ClassScore(
            0,
        ), drill(fraction=0.3, baseline="blur", incremental=False), no_progress
    )
    assert counter.images == 1 + off.model_calls
    assert (
        0 < off.extras["windows_fine"] < off.extras["windows_exact"] - off.extras["windows_coarse"]
    )
    for key in ("windows", "windows_coarse", "windows_fine"):
        assert on.extras[key] == off.extras[key]
    assert np.abs(off.values).max() > 0.1
    np.testing.assert_allclose(on.values, off.values, rtol=1e-5, atol=1e-5)
    assert on.extras["incremental"] == {"layer": "act", "crop": [8, 8]}
    assert off.extras["incremental"] is None


@pytest.mark.parametrize(
    ("window", "coarse"),
    [(4, 4), (6, 4), (4, 6)],  # fine grids of 15, 14 (last node past the coarse grid), 15 nodes
)
def test_affine_drops_are_filled_exactly(tmp_path: Path, window: int, coarse: int) -> None:
    # logit 0 = sum((row + 2 col) * red) and the image is all ones: a window's drop is the sum
    # of row + 2 col over it, affine in the window's position. Every sum is an integer below
    # 2**24, so float32 gets the drops exactly and the biharmonic fill must reproduce them.
    rows, cols = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    w = np.zeros((2, 3, SIZE, SIZE), np.float32)
    w[0, 0] = rows + 2 * cols
    model = load_tiny(tmp_path, linear_classifier(w), SIZE)
    ones = ImageInput(np.ones((SIZE, SIZE, 3), np.float32))
    exact = occlusion(
        model, ones, ClassScore(0), OcclusionParams(window=window, stride=2), no_progress,
    )
    dd = occlusion(
        model, ones, ClassScore(0), drill(window=window, coarse_stride=coarse), no_progress,
    )
    assert dd.extras["windows_fine"] < dd.extras["windows_exact"] - dd.extras["windows_coarse"]
    np.testing.assert_allclose(dd.values, exact.values, rtol=1e-6, atol=1e-6)


def test_fill_biharmonic_reproduces_affine_fields_and_keeps_known_values() -> None:
    i, j = np.mgrid[0:11, 0:14].astype(np.float64)
    field = 3.0 + 2.5 * i - 1.25 * j
    known = np.zeros(field.shape, dtype=np.bool_)
    known[::3, ::3] = True  # the last row and the last column lie past the known nodes
    known[5, 7] = known[10, 13] = True
    rng = np.random.default_rng(0)
    noisy = np.where(known, field, rng.normal(size=field.shape))  # unknowns are ignored
    out = fill_biharmonic(noisy, known)
    assert np.array_equal(out[known], noisy[known])
    np.testing.assert_allclose(out, field, rtol=0, atol=1e-6)
    # one known node: nothing to tilt by, the fill is that constant
    one = np.zeros((3, 4), dtype=np.bool_)
    one[0, 0] = True
    np.testing.assert_allclose(fill_biharmonic(np.full((3, 4), 7.0), one), 7.0, atol=1e-6)


def test_node_scores_and_selection_by_hand() -> None:
    # 5×5 fine grid, coarse step 2: known at even (row, col); drops 10 at (2, 2), -3 at (0, 4)
    known = np.zeros((5, 5), dtype=np.bool_)
    known[::2, ::2] = True
    drops = np.zeros((5, 5))
    drops[2, 2] = 10.0
    drops[0, 4] = -3.0
    spread = node_scores(drops, known, 1, "spread")
    n = -np.inf
    expected = np.array(
        [
            [n, 0, n, 3, n],  # (0, 3) sees 0 and -3
            [0, 10, 10, 13, 3],  # (1, 3) sees -3, 0 and 10: the widest spread
            [n, 10, n, 10, n],
            [0, 10, 10, 10, 0],
            [n, 0, n, 0, n],
        ]
    )
    np.testing.assert_array_equal(spread, expected)
    # the top: (1, 3), then the ties at 10 in grid order; returned in grid order
    assert top_nodes(spread, known, 3).tolist() == [6, 7, 8]
    assert top_nodes(spread, known, 4).tolist() == [6, 7, 8, 11]
    drop = node_scores(drops, known, 1, "drop")
    assert drop[0, 3] == drop[1, 4] == 3.0 and drop[1, 3] == drop[3, 3] == 10.0
    assert drop[0, 1] == drop[4, 3] == 0.0
    # uniform drops of 5 but a 0 in the corner: "spread" looks at the corner, "drop" sees
    # equal scores everywhere and takes the first unknown nodes in grid order
    flat_drops = np.where(known, 5.0, 0.0)
    flat_drops[0, 0] = 0.0
    assert top_nodes(node_scores(flat_drops, known, 1, "spread"), known, 3).tolist() == [1, 5, 6]
    assert top_nodes(node_scores(flat_drops, known, 1, "drop"), known, 3).tolist() == [1, 3, 5]
    assert top_nodes(spread, known, 100).tolist() == np.flatnonzero(~known).tolist()


def test_budget() -> None:
    # 15×15 fine grid, step 2: 64 coarse, 161 skipped; a region has 3 new windows
    assert refined_windows(0.1, 225, 64, 2) == 7 * 3
    assert refined_windows(0.25, 225, 64, 2) == 16 * 3
    assert refined_windows(1.0, 225, 64, 2) == 161  # not 64 × 3: all the skipped ones
    assert refined_windows(1e-6, 225, 64, 2) == 3  # at least one region's worth
    assert refined_windows(0.5, 16, 16, 1) == 0  # coarse = fine: nothing skipped

    class M:
        input_hw = (SIZE, SIZE)

    assert cost(drill(fraction=0.1), M()) == 1 + 64 + 21  # type: ignore[arg-type]
    assert cost(drill(fraction=1.0, coarse_stride=6), M()) == 1 + 225  # type: ignore[arg-type]


def test_progress_runs_over_both_rounds(tmp_path: Path) -> None:
    model = load_tiny(tmp_path, region_classifier(SIZE, 12, 16, 20, 24), SIZE)
    seen: list[float] = []
    occlusion(model, flat(), ClassScore(0), drill(fraction=0.2, batch_size=8), seen.append)
    assert seen == sorted(seen) and seen[-1] == 1.0 and len(seen) >= 8


def test_plan_rounds() -> None:
    class M:  # only what build_plan's check reads
        input_hw = (SIZE, SIZE)

    img = flat()
    plan = OCCLUSION.build_plan(M(), img, ClassScore(0), drill(fraction=0.02))  # type: ignore[arg-type]
    assert plan.n_samples == plan.n_coarse == 64 and not plan.refined
    assert OCCLUSION.expected_samples(plan) == 64 + 2 * 3  # ceil(0.02 × 64) regions
    scores = np.zeros(64)
    scores[10] = -5.0  # coarse node (1, 2): the window at (4, 8) drops by 5
    refs = References(0.0, None, 1)
    nxt = OCCLUSION.refine(M(), img, ClassScore(0), drill(fraction=0.02), plan, scores, refs)  # type: ignore[arg-type]
    assert nxt is not None and nxt.refined
    assert np.array_equal(nxt.positions[:64], plan.positions)  # samples are only appended
    # its 8 fine neighbours have spread 5, the rest 0: the first 6 of them, in grid order
    assert nxt.positions[64:].tolist() == [[2, 6], [2, 8], [2, 10], [4, 6], [4, 10], [6, 6]]
    assert OCCLUSION.expected_samples(nxt) == nxt.n_samples == 70
    back = load_plan(dump_plan(nxt))  # split jobs ship the plan between processes
    assert np.array_equal(back.positions, nxt.positions) and back.refined
    assert (back.ys, back.xs, back.fraction, back.rank) == (nxt.ys, nxt.xs, 0.02, "spread")
    assert OCCLUSION.refine(
        M(), img, ClassScore(0), drill(), nxt, np.zeros(nxt.n_samples), refs,
    ) is None  # type: ignore[arg-type]


def test_params(tmp_path: Path) -> None:
    model = load_tiny(tmp_path, region_classifier(SIZE, 0, 4, 0, 4), SIZE)
    with pytest.raises(InvalidParams, match="multiple"):
        occlusion(model, flat(), ClassScore(0), drill(coarse_stride=6, fine_stride=4), no_progress)
    for bad in ({"mode": "fast"}, {"fraction": 0}, {"fraction": 1.5}, {"coarse_stride": 0}):
        with pytest.raises(ValueError):
            OcclusionParams.model_validate(bad)
    p = OcclusionParams()
    assert p.mode == "exact" and p.fine_stride is None and p.coarse_stride is None
