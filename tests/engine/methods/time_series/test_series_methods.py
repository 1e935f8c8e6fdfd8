"""Series methods on tiny 1-D CNNs built with onnx.helper: a planted spike must be found
(Grad-CAM, occlusion, IG, saliency, LIME peak within 2 steps of it), IG is complete,
occlusion equals a hand computation on a linear model, and modalities are checked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from api_schemas.objectives import ClassObjective
from engine.artifacts import Result
from engine.errors import InvalidParams, UnsupportedModality
from engine.explain import check_method
from engine.methods.base import no_progress
from engine.methods.registry import all_methods, get_method
from engine.methods.time_series.common import series_layers, upsample_time
from engine.methods.time_series.grad_cam import SeriesGradCamParams, grad_cam
from engine.methods.time_series.integrated_gradients import (
    SeriesIntegratedGradientsParams,
    integrated_gradients,
)
from engine.methods.time_series.lime import SeriesLimeParams, lime, segment_bounds
from engine.methods.time_series.occlusion import SeriesOcclusionParams, occlusion, positions
from engine.methods.time_series.saliency import SeriesSaliencyParams, saliency
from engine.modalities.time_series import SeriesInput, SeriesPlot
from engine.models.runtime import LoadedModel
from engine.objectives import ClassScore
from lantern_testing.series import linear_series, loaded_series, spike_cnn, spiky_series

T = 96
SPIKE = 61


@pytest.fixture(scope="module", params=["NCT", "NTC"])
def spike_model(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> LoadedModel:
    layout = str(request.param)
    return loaded_series(tmp_path_factory.mktemp(layout), spike_cnn(T, layout), T, 1, layout)


def art(res: Result, name: str) -> Any:
    return res.artifact(name)


def item(at: int = SPIKE) -> SeriesInput:
    return SeriesInput(spiky_series(T, at))


def peak(values: np.ndarray) -> int:
    v = np.abs(np.asarray(values, np.float64)).reshape(-1, T).max(axis=0)
    return int(np.argmax(v))


def test_the_model_fires_on_the_spike_only(spike_model: LoadedModel) -> None:
    spiky = spike_model.run(spike_model.codec.item_input(item()))
    smooth = spike_model.run(spike_model.codec.item_input(SeriesInput(spiky_series(T, 0, 0.0))))
    assert spiky[0, 0] > 0.5 and spiky[0, 0] > spiky[0, 1]
    assert abs(smooth[0, 0]) < 1e-6  # the detector stays below its threshold


@pytest.mark.parametrize("at", [SPIKE, 17])
def test_grad_cam_occlusion_ig_saliency_lime_peak_at_the_spike(
    spike_model: LoadedModel, at: int
) -> None:
    x = item(at)
    cls = ClassScore(0)
    results = {
        "grad_cam": grad_cam(spike_model, x, cls, SeriesGradCamParams(), no_progress),
        "occlusion": occlusion(
            spike_model, x, cls, SeriesOcclusionParams(window=5, stride=1), no_progress
        ),
        "integrated_gradients": integrated_gradients(
            spike_model, x, cls, SeriesIntegratedGradientsParams(steps=32), no_progress
        ),
        "saliency": saliency(spike_model, x, cls, SeriesSaliencyParams(), no_progress),
    }
    for name, res in results.items():
        attr = art(res, "attribution")
        assert abs(peak(attr.values) - at) <= 2, (name, peak(attr.values))
        assert attr.values.shape[-1] == T
        plot = art(res, "plot")
        assert isinstance(plot, SeriesPlot)
        np.testing.assert_array_equal(plot.series, x.values)
    # LIME's resolution is its segment: the spike's segment has the largest weight
    res = lime(spike_model, x, cls, SeriesLimeParams(segments=12, num_samples=300), no_progress)
    segs = res.extras["segments"]
    best = max(segs, key=lambda s: s["weight"])
    assert best["start"] <= at < best["stop"]
    assert art(res, "attribution").axes == ["time"]


def test_grad_cam_uses_the_last_layer_before_pooling(spike_model: LoadedModel) -> None:
    assert "features" in series_layers(spike_model)
    res = grad_cam(spike_model, item(), ClassScore(0), SeriesGradCamParams(), no_progress)
    assert res.extras["layer"] == "features"
    assert art(res, "cam").values.shape == (T,)
    with pytest.raises(InvalidParams):
        grad_cam(spike_model, item(), ClassScore(0), SeriesGradCamParams(layer="nope"), no_progress)


def test_ig_is_complete_on_the_spike_model(spike_model: LoadedModel) -> None:
    for baseline in ("zero", "mean"):
        res = integrated_gradients(
            spike_model,
            item(),
            ClassScore(0),
            SeriesIntegratedGradientsParams(steps=128, baseline=baseline),
            no_progress,
        )
        attr = art(res, "attribution").values
        assert attr.shape == (1, T)
        expected = res.extras["f_x"] - res.extras["f_baseline"]
        assert abs(expected) > 1.0
        assert abs(attr.sum() - expected) <= 0.02 * abs(expected), (baseline, attr.sum(), expected)


@pytest.mark.parametrize("layout", ["NCT", "NTC"])
def test_occlusion_against_a_hand_computation(tmp_path: Path, layout: str) -> None:
    # f(x) = Σ w ⊙ x on 2 channels × 10 steps, zero baseline, window 4, stride 3:
    # starts 0, 3, 6 (6 = 10 − 4, flush with the end). Hiding window s drops f by
    # D_s = Σ_{t in s..s+3} Σ_c w[c,t] x[c,t]; step t gets the mean of D_s over the
    # windows covering it.
    rng = np.random.default_rng(3)
    w = rng.normal(size=(2, 10)).astype(np.float32)
    xv = rng.normal(size=(2, 10)).astype(np.float32)
    model = loaded_series(tmp_path, linear_series(w, layout), 10, 2, layout)
    assert positions(10, 4, 3) == [0, 3, 6]
    params = SeriesOcclusionParams(window=4, stride=3, baseline="zero", batch_size=2)
    res = occlusion(model, SeriesInput(xv), ClassScore(0), params, no_progress)
    contrib = (w.astype(np.float64) * xv).sum(axis=0)
    drops = {s: contrib[s : s + 4].sum() for s in (0, 3, 6)}
    want = np.zeros(10)
    for t in range(10):
        cover = [d for s, d in drops.items() if s <= t < s + 4]
        want[t] = np.mean(cover)
    got = art(res, "attribution").values
    assert got.shape == (10,)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    # per channel: the drop of each channel's window alone
    params = SeriesOcclusionParams(window=4, stride=3, baseline="zero", per_channel=True)
    got2 = occlusion(model, SeriesInput(xv), ClassScore(0), params, no_progress)
    attr2 = art(got2, "attribution").values
    assert attr2.shape == (2, 10)
    np.testing.assert_allclose(attr2.sum(axis=0), got, rtol=1e-4, atol=1e-5)
    # saliency of a linear model is |w|, IG with a zero baseline is w ⊙ x
    sal = saliency(model, SeriesInput(xv), ClassScore(0), SeriesSaliencyParams(), no_progress)
    np.testing.assert_allclose(art(sal, "attribution").values, np.abs(w), rtol=1e-5)
    ig = integrated_gradients(
        model, SeriesInput(xv), ClassScore(0), SeriesIntegratedGradientsParams(steps=4), no_progress
    )
    np.testing.assert_allclose(art(ig, "attribution").values, w * xv, rtol=1e-4, atol=1e-6)


def test_lime_recovers_a_linear_model_per_segment(tmp_path: Path) -> None:
    # f = Σ w x with a zero baseline: hiding segment k removes exactly its contribution,
    # so the surrogate is exact (R² = 1) and its weights are the contributions.
    rng = np.random.default_rng(5)
    w = rng.normal(size=(1, 12)).astype(np.float32)
    xv = rng.normal(size=(1, 12)).astype(np.float32)
    model = loaded_series(tmp_path, linear_series(w), 12, 1)
    params = SeriesLimeParams(segments=4, num_samples=200, baseline="zero", alpha=0.0)
    res = lime(model, SeriesInput(xv), ClassScore(0), params, no_progress)
    bounds = segment_bounds(12, 4)
    contrib = (w * xv)[0]
    want = [contrib[bounds[i] : bounds[i + 1]].sum() for i in range(4)]
    np.testing.assert_allclose([s["weight"] for s in res.extras["segments"]], want, atol=1e-4)
    assert res.extras["r2"] > 0.9999


def test_upsample_time() -> None:
    up = upsample_time(np.array([0.0, 1.0], np.float32), 4)
    np.testing.assert_allclose(up, [0, 0.25, 0.75, 1])
    np.testing.assert_array_equal(upsample_time(np.array([2.0, 3.0], np.float32), 2), [2, 3])


def test_every_series_method_says_its_modality(spike_model: LoadedModel) -> None:
    series = {m.name for m in all_methods() if "time_series" in m.modalities}
    assert {"grad_cam", "occlusion", "lime", "integrated_gradients", "saliency"} <= series
    assert get_method("grad_cam", "time_series").modalities == ("time_series",)
    assert get_method("grad_cam", "image").modalities == ("image",)
    # an image-only method on a series model is refused, naming the methods that apply
    image_only = next(
        m for m in all_methods() if m.modalities == ("image",) and m.name not in series
    )
    with pytest.raises(UnsupportedModality) as e:
        check_method(get_method(image_only.name, "time_series"), spike_model, ClassObjective())
    assert e.value.status == 422
    assert set(e.value.details["methods"]) == series
    assert "occlusion" in e.value.message


def test_variable_length_models_take_perturbations_and_refuse_gradients(tmp_path: Path) -> None:
    import onnx

    from api_schemas.modalities.time_series import TimeSeriesManifest
    from engine.errors import UnsupportedModel
    from engine.gradients import GradientCache
    from engine.models.runtime import RuntimeOptions

    proto = spike_cnn(T)
    proto.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "T"  # dynamic time axis
    path = tmp_path / "var.onnx"
    onnx.save(proto, path)
    manifest = TimeSeriesManifest.model_validate(
        {"modality": "time_series", "name": "var", "labels": ["spike", "flat"], "length": T,
         "length_mode": "max", "min_length": 8}
    )
    model = LoadedModel("var", "v", path, manifest, RuntimeOptions(), GradientCache(tmp_path))
    short = model.codec.decode(json.dumps(spiky_series(40, 25)[0].tolist()).encode())
    assert short.length == 40
    params = SeriesOcclusionParams(window=5, stride=1)
    res = occlusion(model, short, ClassScore(0), params, no_progress)
    values = art(res, "attribution").values
    assert values.shape == (40,) and abs(int(np.argmax(values)) - 25) <= 2
    get_method("occlusion", "time_series").check(params, model)
    for name in ("saliency", "grad_cam", "integrated_gradients"):
        spec = get_method(name, "time_series")
        with pytest.raises(UnsupportedModel):
            spec.check(spec.parse_params({}), model)
