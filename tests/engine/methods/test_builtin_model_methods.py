"""Gradient and CAM methods on the real built-in model (EfficientNet-Lite0, ImageNet)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data

from engine.methods.base import no_progress
from engine.methods.cam import CamParams, cam
from engine.methods.grad_cam import GradCamParams, grad_cam
from engine.methods.integrated_gradients import IntegratedGradientsParams, integrated_gradients
from engine.methods.occlusion import OcclusionParams, occlusion
from engine.methods.saliency import SaliencyParams, saliency
from engine.modalities.image import ImageInput, prepare_image
from engine.models.runtime import LoadedModel
from engine.objectives import ClassScore
from jobs.runtime import Runtime
from lantern.settings import Settings

EGYPTIAN_CAT = 285
CAT_COLUMNS = 176  # at 224 x 224, chelsea's face fills columns 0..~185; the rest is wall


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    rt = Runtime(Settings(data_dir=tmp_path_factory.mktemp("builtin")))
    rt.ensure_builtin()
    return rt.load("efficientnet-lite0")


@pytest.fixture(scope="module")
def chelsea(model: LoadedModel) -> ImageInput:
    return prepare_image(Image.fromarray(data.chelsea()), model.manifest)


def test_grad_cam_peaks_inside_the_cat(model: LoadedModel, chelsea: ImageInput) -> None:
    out = grad_cam(model, chelsea, ClassScore(EGYPTIAN_CAT), GradCamParams(), no_progress)
    v = out.values
    _, col = np.unravel_index(int(np.argmax(v)), v.shape)
    assert col < CAT_COLUMNS
    assert v[:, :CAT_COLUMNS].mean() > 2 * v[:, 192:].mean()


def test_grad_cam_equals_cam_on_the_builtin_head(model: LoadedModel, chelsea: ImageInput) -> None:
    c = cam(
        model, chelsea, ClassScore(EGYPTIAN_CAT), CamParams(), no_progress,
    ).artifact("cam").values
    g = grad_cam(
        model, chelsea, ClassScore(EGYPTIAN_CAT), GradCamParams(), no_progress,
    ).artifact("cam").values
    np.testing.assert_allclose(g / g.max(), c / c.max(), atol=1e-5)


def test_integrated_gradients_completeness(model: LoadedModel, chelsea: ImageInput) -> None:
    """The completeness axiom, Σ attributions = f(x) − f(baseline), holds as the quadrature
    converges. EfficientNet-Lite0 is piecewise linear (ReLU6) and its input gradient along
    the path is 'shattered' (it jumps between about −26 and +133 while its mean is 10.8), so
    64 points leave errors of 1–8 % depending on the rule; 256 Gauss–Legendre points are
    within 1 % (see bench/RESULTS.md for the table)."""
    errors = {}
    for steps in (16, 256):
        params = IntegratedGradientsParams(steps=steps, baseline="zero", method="gausslegendre")
        out = integrated_gradients(model, chelsea, ClassScore(EGYPTIAN_CAT), params, no_progress)
        errors[steps] = out.extras["completeness_error"]
        assert out.extras["f_x"] == pytest.approx(10.777, abs=0.01)
    assert errors[256] < 0.01
    assert errors[256] < errors[16]


def test_integrated_gradients_refines_to_a_completeness_tolerance(
    model: LoadedModel, chelsea: ImageInput
) -> None:
    """64 trapezoid points leave 2.3 % here; with tolerance 0.01 the path is refined (127,
    253, … points, each round reusing the last) until Σ attributions is within 1 % of
    f(x) − f(baseline), measured, not imposed."""
    params = IntegratedGradientsParams(steps=64, baseline="zero", tolerance=0.01)
    out = integrated_gradients(model, chelsea, ClassScore(EGYPTIAN_CAT), params, no_progress)
    rounds = out.extras["rounds"]
    assert rounds[0]["steps"] == 64 and rounds[0]["completeness_error"] > 0.01
    assert out.extras["tolerance_met"] is True
    assert out.extras["completeness_error"] <= 0.01
    assert out.extras["steps"] == rounds[-1]["steps"] <= 505
    assert out.model_calls == 2 + out.extras["steps"]


def test_saliency_is_finite_and_cost_is_one_pass(model: LoadedModel, chelsea: ImageInput) -> None:
    out = saliency(model, chelsea, ClassScore(EGYPTIAN_CAT), SaliencyParams(), no_progress)
    assert out.values.shape == (224, 224) and np.isfinite(out.values).all()
    assert out.values.max() > 0 and out.model_calls == 1


def test_incremental_occlusion_equals_full_passes(model: LoadedModel, chelsea: ImageInput) -> None:
    # window 16, stride 48: 5 × 5 windows, the last ones touching the borders (192 + 16 = 224)
    params = {"window": 16, "stride": 48, "batch_size": 16}
    on = occlusion(model, chelsea, ClassScore(EGYPTIAN_CAT), OcclusionParams(**params), no_progress)
    off = occlusion(
        model, chelsea, ClassScore(
            EGYPTIAN_CAT,
        ), OcclusionParams(**params, incremental=False), no_progress
    )
    assert on.model_calls == off.model_calls == 1 + 25
    assert np.abs(off.values).max() > 0.1
    np.testing.assert_allclose(on.values, off.values, rtol=0, atol=1e-4)
    # the cut: the first 1×1 expansion of stage 3 (blocks.3 has stride 2 and no residual),
    # one conv past blocks.2.add with the same receptive field (J 4, L 6, R 12)
    assert on.extras["incremental"] == {"layer": "blocks.3.expand_act", "crop": [56, 56]}
    assert off.extras["incremental"] is None


def test_gradient_models_are_cached_on_disk(model: LoadedModel, tmp_path: Path) -> None:
    assert model.gradients is not None
    files = list(model.gradients.cache_dir.rglob("*.onnx"))
    assert files, "the VJP models built above are on disk"
