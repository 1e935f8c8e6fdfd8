"""Activation extraction: decoding overlapped with the model (a background thread), the
decoded-pixels cache, the same answer bit for bit as decoding each image on its own with the
model's codec, errors raised from the decoding thread, at most two shards of images alive,
and the cache's size limit (least recently used entries evicted after a write)."""

from __future__ import annotations

import io
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray
from PIL import Image

from engine.datasets.activations import OUTPUT, ActivationCache, Target, _stats
from engine.datasets.pixels import PIXELS, Prefetcher, decode_one
from engine.datasets.store import DatasetReader
from engine.errors import InvalidImage
from engine.models.runtime import LoadedModel
from jobs.runtime import Runtime
from lantern.settings import Settings

TARGETS = [Target(OUTPUT), Target("conv1"), Target("conv3"), Target("conv2", (5, 1, 2))]


@pytest.fixture(scope="module")
def rt(tmp_path_factory: pytest.TempPathFactory) -> Runtime:
    root = tmp_path_factory.mktemp("extract")
    (root / "roots").mkdir()
    runtime = Runtime(Settings(data_dir=root / "data", builtin_models=["digits-cnn"],
                               ort_threads=1, dataset_roots=[root / "roots"]))
    runtime.ensure_builtin()
    return runtime


def one_by_one(model: LoadedModel, reader: DatasetReader, target: Target, chunk: int
               ) -> dict[str, NDArray[Any]]:
    """The answer computed the plain way: every image through ``model.codec.decode``, then
    each shard's batches through the model, the statistics over the shard."""
    parts: dict[str, list[NDArray[Any]]] = {}
    for a in range(0, len(reader), chunk):
        b = min(len(reader), a + chunk)
        px = np.stack([model.codec.decode(reader.read(i)).pixels for i in range(a, b)])
        x = model.to_model_input(px.astype(np.float32))
        step = model.options.max_batch
        if target.layer == OUTPUT:
            v = np.concatenate([model.run(x[i : i + step]) for i in range(0, b - a, step)])
            got: dict[str, NDArray[Any]] = {"value": v.reshape(b - a, -1)}
        else:
            v = np.concatenate([model.probe(x[i : i + step], [target.layer])[0]
                                for i in range(0, b - a, step)])
            if target.neuron is not None:
                c, y, xx = target.neuron
                got = {"value": v[:, c, y, xx]}
            else:
                got = _stats(v, False)
        for k, arr in got.items():
            parts.setdefault(k, []).append(arr)
    return {k: (v[0] if k == "spatial" else np.concatenate(v)) for k, v in parts.items()}


def cached(cache: ActivationCache, model: LoadedModel, reader: DatasetReader, target: Target
           ) -> dict[str, NDArray[Any]]:
    if target.layer == OUTPUT or target.neuron is not None:
        return {"value": cache.values(model, reader, target)}
    s = cache.layer(model, reader, target.layer)
    return {"mean": s.mean, "max": s.max, "argmax": s.argmax,
            "spatial": np.asarray(s.spatial, np.int64)}


def digits_dir(rt: Runtime, name: str, n: int) -> DatasetReader:
    """The first ``n`` digits as a registered directory (its own dataset version)."""
    src = rt.datasets.reader("digits")
    d = rt.settings.dataset_roots[0] / name
    shutil.rmtree(d, ignore_errors=True)
    for i in range(n):
        p = d / str(src.index[i]["path"])
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(src.read(i))
    rt.datasets.add_directory(name, str(d))
    return rt.datasets.reader(name)


@pytest.mark.parametrize("ratio", [0.0, 4.0])
def test_the_same_answer_as_decoding_each_image(rt: Runtime, tmp_path: Path, ratio: float
                                                ) -> None:
    model = rt.load("digits-cnn")
    reader = rt.datasets.reader("digits")
    cache = ActivationCache(tmp_path / "acts", 300, pixel_ratio=ratio)
    assert cache.ensure(model, reader, TARGETS) == len(reader)
    assert cache.last_decoded == len(reader) and cache.last_mapped == 0
    assert (cache.root / PIXELS).is_dir() == (ratio > 0)
    for t in TARGETS:
        want = one_by_one(model, reader, t, 300)
        got = cached(cache, model, reader, t)
        assert sorted(got) == sorted(want)
        for k in want:
            np.testing.assert_array_equal(got[k], want[k].astype(got[k].dtype), err_msg=k)


def test_decoded_pixels_are_reused_by_another_layer(rt: Runtime, tmp_path: Path) -> None:
    model = rt.load("digits-cnn")
    reader = rt.datasets.reader("digits")
    cache = ActivationCache(tmp_path / "acts", 256)
    assert cache.ensure(model, reader, [Target("conv1")]) == len(reader)
    assert cache.last_decoded == len(reader)
    kept = sorted((cache.root / PIXELS / reader.version).rglob("*.npy"))
    assert len(kept) == len(cache.shards(len(reader)))
    assert cache.ensure(model, reader, [Target("conv3")]) == len(reader)
    assert cache.last_decoded == 0 and cache.last_mapped == len(reader)  # nothing decoded
    fresh = ActivationCache(tmp_path / "fresh", 256, pixel_ratio=0)
    fresh.ensure(model, reader, [Target("conv3")])
    a, b = cache.layer(model, reader, "conv3"), fresh.layer(model, reader, "conv3")
    np.testing.assert_array_equal(a.mean, b.mean)
    np.testing.assert_array_equal(a.argmax, b.argmax)
    # a kept shard is exactly the codec's pixels
    first = np.load(kept[0])
    assert first.dtype == np.uint8
    np.testing.assert_array_equal(first[7], model.codec.decode(reader.read(7)).pixels)


def test_pixels_are_not_kept_where_they_cost_more_than_the_files(rt: Runtime, tmp_path: Path
                                                                  ) -> None:
    model = rt.load("digits-cnn")
    reader = rt.datasets.reader("digits")  # 192 bytes of pixels per ~130-byte PNG
    cache = ActivationCache(tmp_path / "acts", 256, pixel_ratio=1.0)
    cache.ensure(model, reader, [Target("conv1")])
    assert not (cache.root / PIXELS).exists()


def test_a_chunk_computes_only_its_shards(rt: Runtime, tmp_path: Path) -> None:
    model = rt.load("digits-cnn")
    reader = rt.datasets.reader("digits")
    cache = ActivationCache(tmp_path / "acts", 256)
    assert cache.ensure(model, reader, [Target("conv3")], 300, 800) == 512  # shards 512 and 768
    assert cache.missing(model, reader, [Target("conv3")]) == [
        s for s in cache.shards(len(reader)) if s[0] not in (512, 768)]


def test_a_decoding_error_is_raised_by_ensure(rt: Runtime, tmp_path: Path) -> None:
    reader = digits_dir(rt, "broken", 40)
    model = rt.load("digits-cnn")
    (reader.base / str(reader.index[21]["path"])).write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    cache = ActivationCache(tmp_path / "acts", 16, pixel_ratio=0)
    with pytest.raises(InvalidImage):
        cache.ensure(model, reader, [Target("conv3")])
    assert cache.missing(model, reader, [Target("conv3")]) == [(16, 32), (32, 40)]


def test_at_most_two_shards_of_images_are_alive(rt: Runtime) -> None:
    """While the caller still uses shard k, the decoding thread may only be at shard k+1
    (it waits for release() before beginning k+2), however fast it decodes."""
    model = rt.load("digits-cnn")
    reader = rt.datasets.reader("digits")
    shards = [(a, min(400, a + 50)) for a in range(0, 400, 50)]
    seen = []
    with Prefetcher(model, reader, shards, 16, None) as batches:
        for batch in batches:
            k = shards.index(batch.shard)
            assert batches.decoded <= shards[min(k + 1, len(shards) - 1)][1]
            assert batch.pixels.dtype == np.uint8 and batch.pixels.shape[0] == (
                batch.stop - batch.start)
            seen.append((batch.start, batch.stop))
            if batch.last:
                batches.release()
    assert seen[0] == (0, 16) and seen[3] == (48, 50) and seen[-1] == (398, 400)
    assert batches.decoded == 400


def test_decode_threads_give_the_same_pixels(rt: Runtime) -> None:
    model = rt.load("digits-cnn")
    reader = rt.datasets.reader("digits")
    with Prefetcher(model, reader, [(0, 100)], 32, None, threads=3) as batches:
        got = np.concatenate([b.pixels for b in batches])
    want = np.stack([decode_one(model, reader.read(i)) for i in range(100)])
    np.testing.assert_array_equal(got, want)


def jpeg(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=80)
    return buf.getvalue()


def test_decode_one_is_the_codec_pixels(rt: Runtime) -> None:
    model = rt.load("digits-cnn")
    for data in (jpeg(1), jpeg(2)):
        np.testing.assert_array_equal(decode_one(model, data), model.codec.decode(data).pixels)


def test_size_limit_evicts_the_least_recently_used_entry(rt: Runtime, tmp_path: Path) -> None:
    model = rt.load("digits-cnn")
    a, b, c = (digits_dir(rt, name, n) for name, n in (("lru-a", 60), ("lru-b", 70),
                                                        ("lru-c", 80)))
    probe = ActivationCache(tmp_path / "probe", 32, pixel_ratio=0)
    for r in (a, b, c):
        probe.ensure(model, r, [Target("conv3")])
    size = {p.name: n for p, _, n in probe.entries()}
    # room for a and c, or b and c, not for all three
    cache = ActivationCache(tmp_path / "acts", 32, pixel_ratio=0,
                            max_bytes=sum(size.values()) - 1)
    for r in (a, b):
        cache.ensure(model, r, [Target("conv3")])
    assert {p.name for p, _, _ in cache.entries()} == {a.version, b.version}
    cache.layer(model, a, "conv3")  # a is used again: b is now the least recently used
    cache.ensure(model, c, [Target("conv3")])
    assert {p.name for p, _, _ in cache.entries()} == {a.version, c.version}
    assert sum(n for _, _, n in cache.entries()) <= cache.max_bytes
    assert not list(cache.root.rglob(".evicted-*"))
    # an evicted entry is computed again when read: the same answer
    again = cache.layer(model, b, "conv3")
    want = one_by_one(model, b, Target("conv3"), 32)
    np.testing.assert_array_equal(again.max, want["max"])
    np.testing.assert_array_equal(again.argmax, want["argmax"])


def test_decoded_pixels_count_and_are_evicted_too(rt: Runtime, tmp_path: Path) -> None:
    model = rt.load("digits-cnn")
    a, b = digits_dir(rt, "lru-pa", 40), digits_dir(rt, "lru-pb", 45)
    cache = ActivationCache(tmp_path / "acts", 16)
    cache.ensure(model, a, [Target("conv1")])
    assert {p.relative_to(cache.root).as_posix() for p, _, _ in cache.entries()} == {
        f"{model.version}/{a.version}", f"{PIXELS}/{a.version}"}
    cache.max_bytes = 1  # the entries just written are kept, every other one goes
    cache.ensure(model, b, [Target("conv1")])
    assert {p.relative_to(cache.root).as_posix() for p, _, _ in cache.entries()} == {
        f"{model.version}/{b.version}", f"{PIXELS}/{b.version}"}
    assert cache.missing(model, b, [Target("conv1")]) == []


@pytest.mark.parametrize("costs", [(1.0, 1.0), (100.0, 1.0)])
def test_decoding_in_this_thread_or_the_background_gives_the_same_answer(
        rt: Runtime, tmp_path: Path, costs: tuple[float, float]) -> None:
    """Where this process measured decoding at many times the model's time, the next
    extraction decodes in the caller's thread: the same shards, the same values."""
    model = rt.load("digits-cnn")
    reader = digits_dir(rt, "modes", 100)
    cache = ActivationCache(tmp_path / "acts", 32, pixel_ratio=0)
    cache._costs[(model.version, reader.version)] = costs
    assert cache.ensure(model, reader, TARGETS) == 100
    assert cache.last_background == (costs[0] <= 4.0 * costs[1])
    assert set(cache._costs) == {(model.version, reader.version)}  # measured again
    for t in TARGETS:
        want = one_by_one(model, reader, t, 32)
        got = cached(cache, model, reader, t)
        for k in want:
            np.testing.assert_array_equal(got[k], want[k].astype(got[k].dtype), err_msg=k)


def test_an_inline_decoding_error_is_raised_too(rt: Runtime, tmp_path: Path) -> None:
    reader = digits_dir(rt, "broken-inline", 40)
    model = rt.load("digits-cnn")
    (reader.base / str(reader.index[3]["path"])).write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with Prefetcher(model, reader, [(0, 16), (16, 40)], 8, None, background=False) as batches:
        it = iter(batches)
        with pytest.raises(InvalidImage):
            next(it)


class EvictedWhileReading(ActivationCache):
    """The entry vanishes (another process's eviction) between the check and the read."""

    evictions = 0

    def _read(self, model: LoadedModel, reader: DatasetReader, target: Target
              ) -> dict[str, NDArray[Any]]:
        if self.evictions == 0:
            self.evictions += 1
            entry = self.root / model.version / reader.version
            entry.rename(entry.with_name(".evicted-x"))
            shutil.rmtree(entry.with_name(".evicted-x"))
        return super()._read(model, reader, target)


def test_an_entry_evicted_while_it_is_read_is_computed_again(rt: Runtime, tmp_path: Path
                                                             ) -> None:
    model = rt.load("digits-cnn")
    reader = digits_dir(rt, "raced", 60)
    cache = EvictedWhileReading(tmp_path / "acts", 16)
    cache.ensure(model, reader, [Target("conv3")])
    got = cache.layer(model, reader, "conv3")
    assert cache.evictions == 1
    np.testing.assert_array_equal(got.max, one_by_one(model, reader, Target("conv3"), 16)["max"])
