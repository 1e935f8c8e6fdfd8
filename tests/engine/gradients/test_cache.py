"""GradientCache: lazy build, disk reuse, atomic files, session LRU, disk quota; vjp padding."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from gradient_testkit import MODELS, Tiny

import engine.gradients.cache as cache_module
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
    assert fresh.builds == 0 and loaded.outputs == gm.outputs and loaded.output_shape == (5,)
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


# -- disk quota ---------------------------------------------------------------------------


def _entry_files(cache: GradientCache, wrt: str, batch: int) -> list[Path]:
    path = cache.path_for("h", wrt, "probs", batch)
    return [path, path.with_suffix(".json")]


def _present(cache: GradientCache, wrt: str, batch: int) -> bool:
    files = _entry_files(cache, wrt, batch)
    assert files[0].is_file() == files[1].is_file()  # a model and its sidecar go together
    return files[0].is_file()


def _age(cache: GradientCache, wrt: str, batch: int, seconds_ago: float) -> None:
    """Pretend the entry was last used `seconds_ago` (mtimes are too coarse to order
    entries written milliseconds apart)."""
    when = time.time() - seconds_ago
    for file in _entry_files(cache, wrt, batch):
        os.utime(file, (when, when))


def _entry_bytes(tmp_path: Path, tiny: Tiny) -> int:
    scratch = GradientCache(tmp_path / "scratch")
    scratch.get_session(tiny.model, "h", "input", "probs", 16)
    return scratch.disk_usage()


def _grad(cache: GradientCache, tiny: Tiny, batch: int) -> np.ndarray:
    session, gm = cache.get_session(tiny.model, "h", "input", "probs", batch)
    rng = np.random.default_rng(batch)
    x = rng.standard_normal((batch, 3, 4)).astype(np.float32)
    seed = np.eye(4, dtype=np.float32)[rng.integers(0, 4, batch)]
    grad: np.ndarray = vjp(session, gm, x, seed).grad
    return grad


def test_quota_evicts_the_least_recently_used_entry(tmp_path: Path) -> None:
    tiny = MODELS["mlp"]()
    quota = int(2.5 * _entry_bytes(tmp_path, tiny))  # room for two entries, not three
    cache = GradientCache(tmp_path / "grads", max_bytes=quota)
    before = _grad(cache, tiny, 1)
    _age(cache, "input", 1, 300)
    _grad(cache, tiny, 8)
    _age(cache, "input", 8, 200)
    assert cache.evictions == 0 and cache.disk_usage() > quota / 2
    _grad(cache, tiny, 16)
    assert not _present(cache, "input", 1)  # least recently used: model and sidecar gone
    assert _present(cache, "input", 8) and _present(cache, "input", 16)
    assert cache.evictions == 1 and cache.builds == 3 and cache.disk_usage() <= quota
    # the session in memory outlives its files
    np.testing.assert_allclose(_grad(cache, tiny, 1), before, rtol=1e-6, atol=1e-7)
    assert cache.builds == 3 and not _present(cache, "input", 1)
    # asked for again once out of memory, the entry is rebuilt (evicting the oldest: b8)
    cache.clear()
    np.testing.assert_allclose(_grad(cache, tiny, 1), before, rtol=1e-6, atol=1e-7)
    assert cache.builds == 4 and _present(cache, "input", 1)
    assert not _present(cache, "input", 8) and _present(cache, "input", 16)
    assert cache.disk_usage() <= quota


def test_loading_from_disk_counts_as_use(tmp_path: Path) -> None:
    tiny = MODELS["mlp"]()
    quota = int(2.5 * _entry_bytes(tmp_path, tiny))
    cache = GradientCache(tmp_path / "grads", max_bytes=quota)
    cache.get_session(tiny.model, "h", "input", "probs", 1)
    _age(cache, "input", 1, 300)
    cache.get_session(tiny.model, "h", "input", "probs", 8)
    _age(cache, "input", 8, 200)
    # another process loads b1 from disk: b1 is now the most recently used
    other = GradientCache(tmp_path / "grads", max_bytes=quota)
    other.get_session(tiny.model, "h", "input", "probs", 1)
    assert other.builds == 0
    cache.get_session(tiny.model, "h", "input", "probs", 16)
    assert _present(cache, "input", 1) and _present(cache, "input", 16)
    assert not _present(cache, "input", 8)


def test_the_entry_just_written_is_never_evicted(tmp_path: Path) -> None:
    tiny = MODELS["mlp"]()
    cache = GradientCache(tmp_path, max_bytes=1)  # smaller than any model
    cache.get_session(tiny.model, "h", "input", "probs", 1)
    assert _present(cache, "input", 1)
    cache.get_session(tiny.model, "h", "input", "probs", 8)
    assert _present(cache, "input", 8) and not _present(cache, "input", 1)


@pytest.mark.parametrize("max_bytes", [None, 0])
def test_no_quota_never_evicts(tmp_path: Path, max_bytes: int | None) -> None:
    tiny = MODELS["mlp"]()
    cache = GradientCache(tmp_path, max_bytes=max_bytes)
    for wrt, batch in [("input", 1), ("input", 8), ("input", 16), ("h2", 1)]:
        cache.get_session(tiny.model, "h", wrt, "probs", batch)
        _age(cache, wrt, batch, 1000)
    assert cache.max_bytes is None and cache.enforce_quota() == 0 and cache.evictions == 0
    assert all(_present(cache, w, b) for w, b in [("input", 1), ("input", 8), ("input", 16),
                                                   ("h2", 1)])


@pytest.mark.parametrize("deleted", ["model", "sidecar", "both"])
def test_files_deleted_behind_the_cache_are_rebuilt(tmp_path: Path, deleted: str) -> None:
    tiny = MODELS["mlp"]()
    first = GradientCache(tmp_path)
    before = _grad(first, tiny, 8)
    model_file, meta_file = _entry_files(first, "input", 8)
    if deleted in ("model", "both"):
        model_file.unlink()
    if deleted in ("sidecar", "both"):
        meta_file.unlink()
    fresh = GradientCache(tmp_path)  # another process, nothing in memory
    np.testing.assert_allclose(_grad(fresh, tiny, 8), before, rtol=1e-6, atol=1e-7)
    assert fresh.builds == 1 and _present(fresh, "input", 8)


def test_a_model_deleted_while_being_read_is_rebuilt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tiny = MODELS["mlp"]()
    before = _grad(GradientCache(tmp_path), tiny, 8)
    real_load = onnx.load
    calls: list[str] = []

    def evicted_meanwhile(f: str, *args: object, **kwargs: object) -> onnx.ModelProto:
        if not calls:  # another process evicts the entry after its sidecar was read
            for file in _entry_files(GradientCache(tmp_path), "input", 8):
                file.unlink()
        calls.append(f)
        return real_load(f, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(onnx, "load", evicted_meanwhile)
    fresh = GradientCache(tmp_path)
    np.testing.assert_allclose(_grad(fresh, tiny, 8), before, rtol=1e-6, atol=1e-7)
    assert calls and fresh.builds == 1 and _present(fresh, "input", 8)


def test_eviction_tolerates_files_vanishing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tiny = MODELS["mlp"]()
    cache = GradientCache(tmp_path, max_bytes=1)
    cache.get_session(tiny.model, "h", "input", "probs", 1)
    cache.get_session(tiny.model, "h", "input", "probs", 8)  # evicts b1
    cache.get_session(tiny.model, "h", "h2", "probs", 1)  # evicts b8
    real_walk = os.walk

    def racing_walk(top: Path) -> list[tuple[str, list[str], list[str]]]:
        listing = [(root, dirs, [*files, "ghost.onnx"]) for root, dirs, files in real_walk(top)]
        # another process deletes the sidecar after the listing, before the stat
        _entry_files(cache, "h2", 1)[1].unlink()
        return listing

    monkeypatch.setattr(os, "walk", racing_walk)
    assert cache.enforce_quota() == 1  # the h2 model; no error for the ghost or the sidecar
    assert not any(p.suffix in (".onnx", ".json") for p in tmp_path.rglob("*"))
    cache_module._unlink(tmp_path / "gone.onnx")  # deleting what is gone is fine


def test_stale_temp_files_are_removed(tmp_path: Path) -> None:
    tiny = MODELS["mlp"]()
    cache = GradientCache(tmp_path, max_bytes=10**9)
    cache.get_session(tiny.model, "h", "input", "probs", 1)
    folder = cache.path_for("h", "input", "probs", 1).parent
    stale, fresh = folder / ".x.onnx.a.tmp", folder / ".x.onnx.b.tmp"
    for file in (stale, fresh):
        file.write_bytes(b"0" * 100)
    old = time.time() - 2 * cache_module.STALE_TMP_S
    os.utime(stale, (old, old))
    usage = cache.disk_usage()  # temp files are not entries
    assert usage == sum(f.stat().st_size for f in _entry_files(cache, "input", 1))
    assert not stale.exists() and fresh.exists()
