"""The built-in gunpoint-cnn: the GunPoint files read from the sktime wheel as text (50 /
150 series of 150 steps, two balanced-ish classes), trained by Lantern's gradient engine at
build, >= 90 % on the 150 held-out series (measured here on the stored model), the same
weights on every build, registered with its accuracy, and explained by Grad-CAM."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx

from engine.models.zoo import gunpoint_cnn
from engine.training import accuracy


def test_data_ships_inside_the_package_and_is_read_without_importing_it() -> None:
    xtr, ytr, xte, yte = gunpoint_cnn.gunpoint()
    assert xtr.shape == (50, 1, 150) and xte.shape == (150, 1, 150)
    assert set(ytr.tolist()) == {0, 1} and set(yte.tolist()) == {0, 1}
    assert 20 <= int(ytr.sum()) <= 30  # both classes present in the training set
    assert np.isfinite(xtr).all() and np.isfinite(xte).all()
    assert "sktime" not in sys.modules


def test_held_out_accuracy_record_and_registration(zoo_dir: Path, tmp_path: Path) -> None:
    path, record = gunpoint_cnn.ensure(zoo_dir)
    model = onnx.load(str(path))
    _, _, xte, yte = gunpoint_cnn.gunpoint()
    acc = accuracy(model, xte, yte)
    assert acc >= 0.90, acc
    assert abs(acc - record["held_out_accuracy"]) < 1e-3
    assert record["train_seconds"] <= 60.0
    assert record["held_out_series"] == 150

    from engine.models.store import ModelStore

    info = gunpoint_cnn._register(ModelStore(tmp_path / "models", 10**8), zoo_dir)
    assert info.builtin and f"{100 * acc:.1f} %" in info.manifest.description
    assert info.manifest.modality == "time_series"
    assert {layer.name for layer in info.layers} >= {"conv1", "conv2", "conv3"}


def test_training_is_deterministic(zoo_dir: Path) -> None:
    path, _ = gunpoint_cnn.ensure(zoo_dir)
    again, _ = gunpoint_cnn.train_model()
    assert again.SerializeToString() == path.read_bytes()


def test_grad_cam_on_the_built_in_model(zoo_dir: Path, tmp_path: Path) -> None:
    from engine.gradients import GradientCache
    from engine.methods.base import no_progress
    from engine.methods.time_series.grad_cam import SeriesGradCamParams, grad_cam
    from engine.modalities.time_series import SeriesInput
    from engine.models.runtime import LoadedModel, RuntimeOptions
    from engine.objectives import ClassScore
    from lantern_testing.series import series_manifest

    path, _ = gunpoint_cnn.ensure(zoo_dir)
    m = series_manifest(150, 1)
    loaded = LoadedModel("gp", "v1", path, m, RuntimeOptions(), GradientCache(tmp_path / "g"))
    _, _, xte, _ = gunpoint_cnn.gunpoint()
    res = grad_cam(loaded, SeriesInput(xte[0]), ClassScore(0), SeriesGradCamParams(), no_progress)
    assert res.extras["layer"] == "conv3" and res.extras["layer_shape"] == [1, 16, 75]
    values = res.artifact("attribution").values  # type: ignore[attr-defined]
    assert values.shape == (150,) and np.isfinite(values).all() and values.max() > 0
