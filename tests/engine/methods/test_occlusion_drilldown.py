"""Occlusion's adaptive drill-down (Krypton): coarse pass, fine re-do of the top regions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.errors import InvalidParams
from engine.methods.base import ImageInput, no_progress
from engine.methods.occlusion import OCCLUSION, OcclusionParams, occlusion
from lantern_testing.models import CountingModel, conv_classifier, load_tiny, region_classifier

SIZE = 32


def flat(v: float = 150.0) -> ImageInput:
    return ImageInput(np.full((SIZE, SIZE, 3), v, np.float32))


def drill(**kw: object) -> OcclusionParams:
    base: dict[str, object] = {"window": 4, "mode": "drilldown", "coarse_stride": 4}
    return OcclusionParams.model_validate({**base, "fine_stride": 2, **kw})


def test_fraction_one_is_exact_occlusion_at_the_fine_stride(tmp_path: Path) -> None:
    model = load_tiny(tmp_path, conv_classifier(SIZE, SIZE, 3), SIZE, ["a", "b", "c"])
    img = ImageInput(np.random.default_rng(0).uniform(0, 255, (SIZE, SIZE, 3)).astype(np.float32))
    exact = occlusion(model, img, 0, OcclusionParams(window=4, stride=2), no_progress)
    dd = occlusion(model, img, 0, drill(fraction=1.0), no_progress)
    np.testing.assert_allclose(dd.values, exact.values, rtol=1e-6, atol=1e-6)
    assert dd.model_calls == exact.model_calls == 1 + 15 * 15
    assert dd.extras["forward_passes_saved"] == 0


def test_drilldown_agrees_with_exact_and_saves_passes(tmp_path: Path) -> None:
    # only rows 12..16, cols 20..24 matter
    model = load_tiny(tmp_path, region_classifier(SIZE, 12, 16, 20, 24), SIZE)
    counter = CountingModel(model)
    exact = occlusion(model, flat(), 0, OcclusionParams(window=4, stride=2), no_progress)
    counter.batches.clear()
    dd = occlusion(model, flat(), 0, drill(fraction=0.1), no_progress)
    e = dd.extras
    assert e["windows_coarse"] == 8 * 8
    assert 0 < e["windows_fine"] < 15 * 15 - 64
    assert dd.model_calls == counter.images == 1 + e["windows_coarse"] + e["windows_fine"]
    assert e["forward_passes_saved"] == exact.model_calls - dd.model_calls > 100
    # the region the model looks at was re-done at the fine stride: identical there
    np.testing.assert_allclose(dd.values[10:18, 18:26], exact.values[10:18, 18:26], atol=1e-3)
    assert np.unravel_index(np.argmax(dd.values), (SIZE, SIZE)) == np.unravel_index(
        np.argmax(exact.values), (SIZE, SIZE)
    )
    assert np.corrcoef(dd.values.ravel(), exact.values.ravel())[0, 1] > 0.95


def test_unrefined_fine_drops_are_interpolated_from_the_coarse_grid(tmp_path: Path) -> None:
    # f is linear in the image, so the drops of a window are linear in its position along a
    # constant-gradient weight; bilinear interpolation between coarse windows is then exact.
    ramp = np.tile(np.arange(SIZE, dtype=np.float32), (SIZE, 1))
    w = np.zeros((2, 3, SIZE, SIZE), np.float32)
    w[0, 0] = ramp
    from lantern_testing.models import linear_classifier

    model = load_tiny(tmp_path, linear_classifier(w), SIZE)
    exact = occlusion(model, flat(), 0, OcclusionParams(window=4, stride=2), no_progress)
    dd = occlusion(model, flat(), 0, drill(fraction=0.05), no_progress)
    # interpolation is exact inside the coarse grid; the last fine column (x=28) lies past
    # the last coarse window (x=28 is on it: 0, 4, ..., 28), so the whole map matches
    np.testing.assert_allclose(dd.values, exact.values, rtol=1e-5, atol=1e-3)


def test_progress_runs_over_both_rounds(tmp_path: Path) -> None:
    model = load_tiny(tmp_path, region_classifier(SIZE, 12, 16, 20, 24), SIZE)
    seen: list[float] = []
    occlusion(model, flat(), 0, drill(fraction=0.2, batch_size=8), seen.append)
    assert seen == sorted(seen) and seen[-1] == 1.0 and len(seen) >= 8


def test_plan_rounds() -> None:
    class M:  # only what build_plan's check reads
        input_hw = (SIZE, SIZE)

    img = flat()
    plan = OCCLUSION.build_plan(M(), img, 0, drill())  # type: ignore[arg-type]
    assert plan.n_samples == plan.n_coarse == 64 and not plan.refined
    assert OCCLUSION.expected_samples(plan) > 64
    scores = np.zeros(64)
    scores[10] = -5.0
    from engine.methods.perturbation import References

    refs = References(0.0, None, 1)
    nxt = OCCLUSION.refine(M(), img, 0, drill(fraction=0.02), plan, scores, refs)  # type: ignore[arg-type]
    assert nxt is not None and nxt.refined
    assert np.array_equal(nxt.positions[:64], plan.positions)  # samples are only appended
    assert nxt.n_samples > 64
    assert OCCLUSION.refine(M(), img, 0, drill(), nxt, np.zeros(nxt.n_samples), refs) is None  # type: ignore[arg-type]


def test_params(tmp_path: Path) -> None:
    model = load_tiny(tmp_path, region_classifier(SIZE, 0, 4, 0, 4), SIZE)
    with pytest.raises(InvalidParams, match="multiple"):
        occlusion(model, flat(), 0, drill(coarse_stride=6, fine_stride=4), no_progress)
    for bad in ({"mode": "fast"}, {"fraction": 0}, {"fraction": 1.5}, {"coarse_stride": 0}):
        with pytest.raises(ValueError):
            OcclusionParams.model_validate(bad)
    p = OcclusionParams()
    assert p.mode == "exact" and p.fine_stride is None and p.coarse_stride is None
