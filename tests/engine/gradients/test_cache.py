"""GradientCache: lazy build, disk reuse, atomic files, session LRU; vjp padding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from gradient_testkit import MODELS

from engine.gradients.cache import GradientCache, bucket_for
from engine.gradients.vjp import vjp


def test_bucket_for() -> None:
    assert [bucket_for(n) for n in (1, 2, 8, 9, 16, 17, 32, 40)] == \
        [1, 8, 8, 16, 16, 32, 32, 32]


def test_builds_once_and_reuses_disk(tmp_path: Path) -> None:
    tiny = MODELS["cnn"]()
    model_path = tmp_path / "cnn.onnx"
    onnx.save(tiny.model, str(model_path))
    cache = GradientCache(tmp_path / "grads", intra_op_num_threads=1)
    session, gm = cache.get_session(model_path, "hash-1", "input", "logits", 8)
    assert cache.builds == 1 and gm.batch == 8
    again, gm2 = cache.get_session(model_path, "hash-1", "input", "logits", 8)
    assert again is session and gm2 is gm and cache.builds == 1
    files = sorted(p.name for p in (tmp_path / "grads").rglob("*") if p.is_file())
    assert any(name.endswith(".onnx") for name in files)
    assert not any(name.endswith(".tmp") for name in files)
    # a fresh cache (a new process) loads from disk instead of building
    fresh = GradientCache(tmp_path / "grads")
    _, loaded = fresh.get_session(tiny.model, "hash-1", "input", "logits", 8)
    assert fresh.builds == 0 and loaded.outputs == gm.outputs and loaded.classes == 5
    # a different key builds
    fresh.get_session(tiny.model, "hash-1", "clip", "logits", 8)
    assert fresh.builds == 1


def test_lru_evicts(tmp_path: Path) -> None:
    tiny = MODELS["mlp"]()
    cache = GradientCache(tmp_path, max_sessions=2)
    first, _ = cache.get_session(tiny.model, "h", "input", "probs", 1)
    cache.get_session(tiny.model, "h", "input", "probs", 8)
    cache.get_session(tiny.model, "h", "h2", "probs", 1)
    assert cache.cached_sessions() == 2
    again, _ = cache.get_session(tiny.model, "h", "input", "probs", 1)
    assert again is not first   # evicted, rebuilt from disk
    assert cache.builds == 3


def test_cached_session_computes_gradients(tmp_path: Path) -> None:
    tiny = MODELS["mlp"]()
    cache = GradientCache(tmp_path)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 3, 4)).astype(np.float32)
    seed = np.eye(4, dtype=np.float32)[[0, 1, 2, 3, 0]]
    batch = cache.bucket(tiny.model, len(x))
    assert batch == 8
    session, gm = cache.get_session(tiny.model, "h", "input", "probs", batch)
    result = vjp(session, gm, x, seed)
    assert result.grad.shape == x.shape and result.logits.shape == (5, 4)
    np.testing.assert_allclose(result.logits.sum(axis=1), 1.0, rtol=1e-5)
