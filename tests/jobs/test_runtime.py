"""Settings reach what a process builds from them (Runtime -> RuntimeOptions -> caches)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from api_schemas.models import ModelManifest
from engine.methods.registry import get_method
from engine.models.runtime import LoadedModel
from jobs.runtime import Runtime
from lantern.settings import Settings
from lantern_testing.models import conv_classifier, manifest


def test_gradient_cache_quota_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LANTERN_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("LANTERN_BUILTIN_MODEL", "false")
    monkeypatch.setenv("LANTERN_GRADIENT_CACHE_MAX_MB", "3")
    settings = Settings()
    assert settings.gradient_cache_max_mb == 3
    rt = Runtime(settings)
    assert rt.sessions.options.gradient_cache_max_mb == 3
    assert rt.sessions.gradients.max_bytes == 3 * 1024 * 1024
    assert rt.sessions.gradients.cache_dir == tmp_path / "gradients"


def test_gradient_cache_quota_default_and_unlimited(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LANTERN_GRADIENT_CACHE_MAX_MB", raising=False)
    assert Settings().gradient_cache_max_mb == 2048
    monkeypatch.setenv("LANTERN_GRADIENT_CACHE_MAX_MB", "0")
    rt = Runtime(Settings(data_dir=tmp_path, builtin_model=False))
    assert rt.sessions.gradients.max_bytes is None  # 0 = unlimited
    monkeypatch.setenv("LANTERN_GRADIENT_CACHE_MAX_MB", "-1")
    with pytest.raises(ValueError):
        Settings()


def test_the_vjp_batch_from_the_environment_reaches_a_loaded_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LANTERN_VJP_BATCH", "8")
    rt = Runtime(Settings(data_dir=tmp_path, builtin_model=False))
    assert rt.sessions.options.vjp_batch == 8
    _register(rt, conv_classifier(16, 16, 2), ["a", "b"])
    model = rt.load("m")
    assert model.preferred_vjp_batch() == 8
    assert model.vjp_batch_timings == {}  # set, so not measured


def _register(rt: Runtime, model: onnx.ModelProto, labels: list[str]) -> None:
    spec = ModelManifest.model_validate(manifest("m", 16, labels))
    rt.models.add(model.SerializeToString(), spec)


def test_checking_a_request_creates_no_session(tmp_path: Path) -> None:
    """The API loads models to check requests: input size, differentiability and CAM heads
    are graph analyses, and the graph's input and output come from the model's record."""
    rt = Runtime(Settings(data_dir=tmp_path, builtin_model=False))
    _register(rt, conv_classifier(16, 16, 3), ["a", "b", "c"])
    model = rt.load("m")
    assert (model.input_name, model.output_name, model.fixed_batch) == ("input", "logits", None)
    cases: list[tuple[str, dict[str, object]]] = [
        ("saliency", {}),
        ("grad_cam", {}),
        ("cam", {}),
        ("occlusion", {"window": 4, "stride": 4}),
        ("integrated_gradients", {"steps": 4}),
    ]
    for name, params in cases:
        spec = get_method(name)
        p = spec.parse_params(params)
        spec.check(p, model)
        spec.cost(p, model)
    assert not model.has_session
    pixels = np.random.default_rng(0).uniform(0, 255, (2, 16, 16, 3)).astype(np.float32)
    scores = model.scores(pixels)
    assert model.has_session
    fresh = LoadedModel("m", model.version, model.path, model.manifest, model.options)
    assert fresh.has_session  # without the record's io, the session tells the names
    np.testing.assert_array_equal(scores, fresh.scores(pixels))


def test_an_older_version_reads_its_own_io(tmp_path: Path) -> None:
    rt = Runtime(Settings(data_dir=tmp_path, builtin_model=False))
    old = conv_classifier(16, 16, 3)
    _register(rt, old, ["a", "b", "c"])
    v_old = rt.models.get("m").version
    new = conv_classifier(16, 16, 3)
    new.graph.output[0].name = "scores"
    new.graph.node[-1].output[0] = "scores"
    new.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 2  # a fixed batch of 2
    _register(rt, new, ["a", "b", "c"])
    assert rt.models.get("m").version != v_old
    current = rt.load("m")
    assert (current.output_name, current.fixed_batch) == ("scores", 2)
    assert not current.has_session
    older = rt.load("m", v_old)  # from its own record
    assert (older.output_name, older.fixed_batch) == ("logits", None)
    assert not older.has_session
    # a version stored before per-version records: its io comes from its session
    (tmp_path / "models" / "m" / f"{v_old}.json").unlink()
    legacy = Runtime(Settings(data_dir=tmp_path, builtin_model=False)).load("m", v_old)
    assert (legacy.output_name, legacy.fixed_batch) == ("logits", None)
    assert legacy.has_session


def test_a_job_for_an_older_version_runs_with_that_versions_manifest(tmp_path: Path) -> None:
    rt = Runtime(Settings(data_dir=tmp_path, builtin_model=False))
    model = conv_classifier(16, 16, 3)
    _register(rt, model, ["a", "b", "c"])
    v_old = rt.models.get("m").version
    shifted = ModelManifest.model_validate({**manifest("m", 16, ["a", "b", "c"]), "scale": 0.5})
    rt.models.add(model.SerializeToString(), shifted)
    assert rt.models.get("m").version != v_old
    older, current = rt.load("m", v_old), rt.load("m")
    assert (older.manifest.scale, current.manifest.scale) == (1.0, 0.5)
    pixels = np.full((1, 16, 16, 3), 100.0, np.float32)
    np.testing.assert_array_equal(older.to_model_input(pixels), 2 * current.to_model_input(pixels))
    assert older.input_name == "input" and not older.has_session  # its own record's io
