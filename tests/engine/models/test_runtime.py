from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from api_schemas.models import ModelManifest
from engine.gradients import BUCKETS, GradientCache
from engine.models.runtime import (
    BATCH_CANDIDATES,
    LoadedModel,
    RuntimeOptions,
    SessionCache,
    choose_batch,
    softmax,
)
from lantern_testing.models import linear_classifier, manifest


def make(
    tmp_path: Path,
    layout: str = "NCHW",
    options: RuntimeOptions | None = None,
    gradients: bool = False,
    **overrides: object,
) -> LoadedModel:
    shape = (2, 3, 8, 8) if layout == "NCHW" else (2, 8, 8, 3)
    w = np.random.default_rng(3).normal(size=shape).astype(np.float32)
    path = tmp_path / f"{layout}.onnx"
    onnx.save(linear_classifier(w, layout=layout), path)
    m = ModelManifest.model_validate({**manifest("t", 8, ["a", "b"], layout), **overrides})
    cache = GradientCache(tmp_path / "gradients") if gradients else None
    return LoadedModel("t", "v", path, m, options or RuntimeOptions(max_batch=3), cache)


def test_preprocessing_follows_the_manifest(tmp_path: Path) -> None:
    model = make(
        tmp_path, channel_order="BGR", scale=0.5, mean=[1.0, 2.0, 3.0], std=[2.0, 4.0, 8.0]
    )
    px = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype(np.float32)
    x = model.to_model_input(px)
    assert x.shape == (2, 3, 8, 8)
    bgr = px[..., ::-1]
    expected = (bgr * 0.5 - np.array([1.0, 2.0, 3.0])) / np.array([2.0, 4.0, 8.0])
    np.testing.assert_allclose(x, expected.transpose(0, 3, 1, 2), rtol=1e-5, atol=1e-5)


def test_nhwc_keeps_channels_last(tmp_path: Path) -> None:
    model = make(tmp_path, "NHWC")
    px = np.ones((1, 8, 8, 3), np.float32)
    assert model.to_model_input(px).shape == (1, 8, 8, 3)


def test_batches_are_chunked_and_equal_single_runs(tmp_path: Path) -> None:
    model = make(tmp_path)
    px = np.random.default_rng(1).uniform(0, 255, (7, 8, 8, 3)).astype(np.float32)
    batched = model.scores(px)
    singles = np.concatenate([model.scores(px[i : i + 1]) for i in range(7)])
    assert batched.shape == (7, 2)
    np.testing.assert_allclose(batched, singles, rtol=1e-5)


def test_batch_size_never_changes_a_score(tmp_path: Path) -> None:
    # what lets preferred_batch() pick any batch: each image is computed on its own
    model = make(tmp_path)
    x = model.to_model_input(
        np.random.default_rng(2).uniform(0, 255, (12, 8, 8, 3)).astype(np.float32)
    )
    runs = [model.run(x, batch=b) for b in (1, 2, 3, 5)]
    for other in runs[1:]:
        assert np.array_equal(runs[0], other)


def test_preferred_batch_is_measured_once_up_to_max_batch(tmp_path: Path) -> None:
    model = make(tmp_path, options=RuntimeOptions(max_batch=8))
    chosen = model.preferred_batch()
    assert sorted(model.batch_timings) == [b for b in BATCH_CANDIDATES if b <= 8]
    assert chosen == choose_batch(model.batch_timings)
    assert all(t > 0 for t in model.batch_timings.values())
    timings = dict(model.batch_timings)
    assert model.preferred_batch() == chosen  # cached, not re-measured
    assert model.batch_timings == timings


def test_preferred_batch_setting_wins_and_is_capped_by_max_batch(tmp_path: Path) -> None:
    assert (
        make(tmp_path, options=RuntimeOptions(max_batch=8, forward_batch=4)).preferred_batch() == 4
    )
    assert (
        make(tmp_path, options=RuntimeOptions(max_batch=8, forward_batch=32)).preferred_batch() == 8
    )
    small = make(tmp_path, options=RuntimeOptions(max_batch=2))
    assert small.preferred_batch() == 2
    assert list(small.batch_timings) == [2]  # no candidate fits: max_batch it is


def test_preferred_vjp_batch_is_measured_once_over_the_gradient_buckets(tmp_path: Path) -> None:
    model = make(tmp_path, options=RuntimeOptions(max_batch=8), gradients=True)
    chosen = model.preferred_vjp_batch()
    assert sorted(model.vjp_batch_timings) == [b for b in BUCKETS if b <= 8] == [1, 8]
    assert chosen == choose_batch(model.vjp_batch_timings)
    assert all(t > 0 for t in model.vjp_batch_timings.values())
    timings = dict(model.vjp_batch_timings)
    assert model.preferred_vjp_batch() == chosen  # cached, not re-measured
    assert model.vjp_batch_timings == timings
    # the sessions built only to be timed are dropped (each keeps its batch's arena)
    assert model.gradients is not None
    keys = (model.version, model.input_name, model.output_name)
    assert [b for b in (1, 8) if model.gradients.holds(*keys, b)] == [chosen]


def test_preferred_vjp_batch_keeps_sessions_that_were_in_use(tmp_path: Path) -> None:
    model = make(tmp_path, options=RuntimeOptions(max_batch=8), gradients=True)
    x = np.zeros((8, 3, 8, 8), np.float32)
    model.vjp(x, np.ones_like(model.run(x)))  # a batch of 8 in use before the timing
    assert model.gradients is not None
    keys = (model.version, model.input_name, model.output_name)
    chosen = model.preferred_vjp_batch()
    assert model.gradients.holds(*keys, 8)
    assert model.gradients.holds(*keys, 1) == (chosen == 1)
    assert model.gradients.discard(*keys, 8) and not model.gradients.discard(*keys, 8)


def test_preferred_vjp_batch_setting_wins_and_is_capped_by_max_batch(tmp_path: Path) -> None:
    def vjp_batch(**options: int) -> int:
        model = make(tmp_path, options=RuntimeOptions(**options), gradients=True)
        return model.preferred_vjp_batch()

    assert vjp_batch(max_batch=16, vjp_batch=4) == 4
    assert vjp_batch(max_batch=8, vjp_batch=32) == 8


def test_softmax() -> None:
    p = softmax(np.array([[0.0, np.log(3.0)]], np.float32))
    np.testing.assert_allclose(p, [[0.25, 0.75]], rtol=1e-6)


def test_session_cache_is_an_lru(tmp_path: Path) -> None:
    w = np.ones((2, 3, 8, 8), np.float32)
    path = tmp_path / "m.onnx"
    onnx.save(linear_classifier(w), path)
    m = ModelManifest.model_validate(manifest("t", 8, ["a", "b"]))
    cache = SessionCache(RuntimeOptions(), capacity=2)
    a = cache.get("t", "v1", path, m)
    assert cache.get("t", "v1", path, m) is a
    cache.get("t", "v2", path, m)
    cache.get("t", "v3", path, m)  # evicts v1
    assert cache.get("t", "v1", path, m) is not a
    assert (cache.hits, cache.misses) == (1, 4)


def test_session_cache_gives_the_gradient_cache_its_quota(tmp_path: Path) -> None:
    default = SessionCache(RuntimeOptions(gradient_dir=tmp_path / "a"))
    assert default.gradients.max_bytes == 2048 * 1024 * 1024
    assert default.gradients.cache_dir == tmp_path / "a"
    quota = SessionCache(RuntimeOptions(gradient_dir=tmp_path / "b", gradient_cache_max_mb=5))
    assert quota.gradients.max_bytes == 5 * 1024 * 1024
    unlimited = SessionCache(RuntimeOptions(gradient_dir=tmp_path / "c", gradient_cache_max_mb=0))
    assert unlimited.gradients.max_bytes is None
