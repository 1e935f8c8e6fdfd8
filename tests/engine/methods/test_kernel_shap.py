"""KernelSHAP: efficiency (Σφ = f(x) − f(background)), exactness on additive models and
against brute-force Shapley values, and the coalition sampling of shap's KernelExplainer."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest

from engine.methods.base import no_progress
from engine.methods.kernel_shap import (
    KERNEL_SHAP,
    KernelShapParams,
    kernel_shap,
    sample_coalitions,
    solve_shapley,
)
from engine.modalities.baselines import baseline_pixels
from engine.modalities.image import ImageInput
from engine.objectives import ClassScore
from lantern_testing.models import conv_classifier, linear_classifier, load_tiny

SIZE = 16


def image(seed: int = 0) -> ImageInput:
    rng = np.random.default_rng(seed)
    return ImageInput(rng.uniform(0, 255, size=(SIZE, SIZE, 3)).astype(np.float32))


def grid(cell: int, num_samples: int = 1000, **kw: object) -> KernelShapParams:
    return KernelShapParams.model_validate(
        {"segmentation": {"algorithm": "grid", "cell": cell}, "num_samples": num_samples, **kw}
    )


@pytest.mark.parametrize(("cell", "num_samples"), [(8, 1000), (4, 200), (2, 300)])
def test_values_sum_to_fx_minus_background(tmp_path: Path, cell: int, num_samples: int) -> None:
    # a non-linear model; 4, 16 and 64 players (enumerated, sampled, sampled)
    model = load_tiny(tmp_path, conv_classifier(SIZE, SIZE, 3), SIZE, ["a", "b", "c"])
    attr = kernel_shap(model, image(), ClassScore(2), grid(cell, num_samples), no_progress)
    e = attr.extras
    phi = np.asarray(e["segments"])
    assert len(phi) == (SIZE // cell) ** 2
    assert abs(phi.sum() - (e["f_x"] - e["f_baseline"])) < 1e-3
    assert abs(e["sum_check"]) < 1e-3
    assert abs(float(attr.values.astype(np.float64).sum()) - (e["f_x"] - e["f_baseline"])) < 1e-3
    assert attr.model_calls == 2 + min(num_samples, 2 ** len(phi) - 2)


@pytest.mark.parametrize(
    ("seg", "num_samples"),
    [({"algorithm": "grid", "cell": 8}, 1000), ({"algorithm": "slic", "n_segments": 12}, 300)],
)
def test_additive_model_gets_its_exact_segment_contributions(
    tmp_path: Path, seg: dict[str, object], num_samples: int
) -> None:
    # logit = Σ W·x: a segment's Shapley value is Σ_{pixels in it} W·(x − background).
    w = np.random.default_rng(3).normal(size=(2, 3, SIZE, SIZE)).astype(np.float32)
    model = load_tiny(tmp_path, linear_classifier(w), SIZE)
    img = image(1)
    params = KernelShapParams.model_validate(
        {"segmentation": seg, "num_samples": num_samples, "hide": "mean"}
    )
    attr = kernel_shap(model, img, ClassScore(0), params, no_progress)
    labels = attr.artifact("segments").labels
    base = baseline_pixels(img.pixels, "mean")
    contrib = (w[0].transpose(1, 2, 0) * (img.pixels - base)).sum(axis=-1)
    expected = np.bincount(labels.ravel(), weights=contrib.ravel().astype(np.float64))
    scale = np.abs(expected).max()
    np.testing.assert_allclose(attr.extras["segments"], expected, atol=1e-3 * scale)


def test_enumerated_coalitions_give_brute_force_shapley_values(tmp_path: Path) -> None:
    model = load_tiny(tmp_path, conv_classifier(SIZE, SIZE, 3), SIZE, ["a", "b", "c"])
    img = image(2)
    params = grid(8, hide="zero")
    attr = kernel_shap(model, img, ClassScore(1), params, no_progress)
    assert attr.extras["exact"] is True
    labels = attr.artifact("segments").labels
    m = 4

    def value(coalition: tuple[int, ...]) -> float:
        keep = np.isin(labels, coalition)[..., None]
        px = np.where(keep, img.pixels, 0.0).astype(np.float32)
        return float(ClassScore(1).value(model.scores(px[None]))[0])

    v = {s: value(s) for r in range(m + 1) for s in itertools.combinations(range(m), r)}
    phi = np.zeros(m)
    for j in range(m):
        others = [k for k in range(m) if k != j]
        for r in range(m):
            for s in itertools.combinations(others, r):
                wgt = math.factorial(r) * math.factorial(m - r - 1) / math.factorial(m)
                phi[j] += wgt * (v[tuple(sorted((*s, j)))] - v[s])
    np.testing.assert_allclose(attr.extras["segments"], phi, rtol=1e-4, atol=1e-4)


def test_coalition_sampling() -> None:
    z, w = sample_coalitions(5, 1000, 0)  # 2^5 - 2 = 30 < 1000: all enumerated
    assert z.shape == (30, 5) and len({r.tobytes() for r in z}) == 30
    assert not (z.sum(axis=1) == 0).any() and not (z.sum(axis=1) == 5).any()
    sizes = z.sum(axis=1)
    # Shapley kernel ∝ (M−1) / (C(M,s) s (M−s)), normalised
    kernel = np.array([(5 - 1) / (math.comb(5, s) * s * (5 - s)) for s in sizes])
    np.testing.assert_allclose(w / w.sum(), kernel / kernel.sum(), rtol=1e-9)
    z, w = sample_coalitions(40, 500, 7)
    assert z.shape == (500, 40) and len({r.tobytes() for r in z}) == 500
    assert np.isclose(w.sum(), 1.0)
    z2, w2 = sample_coalitions(40, 500, 7)
    assert np.array_equal(z, z2) and np.array_equal(w, w2)


def test_solver_handles_degenerate_cases() -> None:
    assert solve_shapley(np.zeros((0, 1), np.uint8), np.zeros(0), np.zeros(0), 3.0, 1.0) == [2.0]
    phi = solve_shapley(np.zeros((0, 4), np.uint8), np.zeros(0), np.zeros(0), 3.0, 1.0)
    np.testing.assert_allclose(phi, [0.5] * 4)


def test_one_segment_plan(tmp_path: Path) -> None:
    model = load_tiny(tmp_path, conv_classifier(SIZE, SIZE, 3), SIZE, ["a", "b", "c"])
    attr = kernel_shap(model, image(), ClassScore(0), grid(SIZE), no_progress)
    assert attr.model_calls == 2
    assert abs(attr.extras["sum_check"]) < 1e-9
    plan = KERNEL_SHAP.build_plan(model, image(), ClassScore(0), grid(SIZE))
    assert plan.n_samples == 0
