"""Activations computed once per (model version, dataset version, layer) and reused.

An analysis asks for *targets*: a layer's pooled statistics (per image and channel: the
mean, the max and the flat position of the max over the layer's positions), one neuron's
value, or the model's output (logits). The cache keeps them as ``.npz`` shards of a fixed
number of images (``chunk``: the dataset's shard boundaries, the same for every analysis)::

    <root>/<model version>/<dataset version>/<target key>/<start>-<stop>.npz

A chunk of work ``[start, stop)`` computes the shards that *begin* in it (so any chunking
of the images computes each shard exactly once), one shard's images in memory at a time,
every target of a shard in one forward pass; shards already there cost nothing. Writes are
atomic (temp file + rename): workers sharing the data dir may race on a shard and both
write the same bytes.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from engine.datasets.pixels import PixelCache, Prefetcher

if TYPE_CHECKING:
    from engine.datasets.store import DatasetReader
    from engine.models.runtime import LoadedModel

OUTPUT = "@output"
#: Layer values held before their statistics are taken (batches' values concatenated)
STATS_BYTES = 32 * 1024 * 1024
#: Decoding in a background thread unless it took more than this many times the model's
#: time per image (then overlapping gains little and the threads' contention costs more)
INLINE_RATIO = 4.0


@dataclass(frozen=True)
class Target:
    """What to keep per image: ``layer``'s pooled stats, a neuron (``neuron`` = (channel,
    y, x)) of it, or the output (``layer`` = OUTPUT)."""

    layer: str
    neuron: tuple[int, int, int] | None = None

    @property
    def key(self) -> str:
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", self.layer)[:60]
        digest = hashlib.sha256(self.layer.encode()).hexdigest()[:8]
        base = f"{slug}-{digest}"
        if self.neuron is not None:
            c, y, x = self.neuron
            base += f"@n{c}.{y}.{x}"
        return base


@dataclass
class LayerStats:
    """Pooled statistics of a layer over a dataset (channel-first)."""

    mean: NDArray[np.float32]  # (N, C)
    max: NDArray[np.float32]  # (N, C)
    argmax: NDArray[np.int32]  # (N, C): flat index into the layer's (H, W)
    spatial: tuple[int, int]  # (H, W); (1, 1) for a layer without positions

    def position(self, i: int, c: int) -> tuple[int, int]:
        flat = int(self.argmax[i, c])
        return flat // self.spatial[1], flat % self.spatial[1]


def _stats(t: NDArray[np.float32], channels_last: bool) -> dict[str, NDArray[Any]]:
    if t.ndim > 2 and channels_last:
        t = np.moveaxis(t, -1, 1)
    n, c = t.shape[0], t.shape[1]
    flat = t.reshape(n, c, -1)
    return {
        "mean": flat.mean(axis=2).astype(np.float32),
        "max": flat.max(axis=2).astype(np.float32),
        "argmax": flat.argmax(axis=2).astype(np.int32),
        "spatial": np.asarray(t.shape[2:4] if t.ndim >= 4 else (1, 1), np.int64),
    }


class ActivationCache:
    """``max_bytes`` (0: no limit): after a write, whole (model version, dataset version)
    entries — and the decoded pixels of a dataset version — are deleted, least recently
    used first, until the cache holds at most that many bytes; the entry just written is
    kept. ``pixel_ratio``: see :mod:`engine.datasets.pixels` (0: decoded pixels are never
    kept). ``decode_threads``: threads decoding one batch's images (1: the one background
    thread)."""

    def __init__(self, root: Path, chunk: int, *, max_bytes: int = 0,
                 pixel_ratio: float = 4.0, decode_threads: int = 1) -> None:
        self.root = Path(root)
        self.chunk = max(1, int(chunk))
        self.max_bytes = max(0, int(max_bytes))
        self.pixels = PixelCache(self.root, pixel_ratio)
        self.decode_threads = max(1, int(decode_threads))
        #: what the last ensure() of this process did: images decoded, read from the pixel
        #: cache (benchmarks and tests)
        self.last_decoded = 0
        self.last_mapped = 0
        self.last_background = True
        # (model version, dataset version) -> seconds per image decoding, running the model,
        # as this process last measured them: whether decoding runs in the background
        self._costs: dict[tuple[str, str], tuple[float, float]] = {}

    def shards(self, n: int) -> list[tuple[int, int]]:
        return [(a, min(n, a + self.chunk)) for a in range(0, n, self.chunk)]

    def _entry(self, model: LoadedModel, reader: DatasetReader) -> Path:
        return self.root / model.version / reader.version

    def _path(self, model: LoadedModel, reader: DatasetReader, target: Target,
              shard: tuple[int, int]) -> Path:
        return self._entry(model, reader) / target.key / f"{shard[0]}-{shard[1]}.npz"

    def missing(self, model: LoadedModel, reader: DatasetReader, targets: Sequence[Target],
                start: int = 0, stop: int | None = None) -> list[tuple[int, int]]:
        """The shards beginning in [start, stop) that lack a target."""
        stop = len(reader) if stop is None else stop
        return [s for s in self.shards(len(reader)) if start <= s[0] < stop
                and any(not self._path(model, reader, t, s).is_file() for t in targets)]

    def ensure(
        self,
        model: LoadedModel,
        reader: DatasetReader,
        targets: Sequence[Target],
        start: int = 0,
        stop: int | None = None,
        progress: Callable[[float], None] | None = None,
    ) -> int:
        """Compute the missing shards that begin in [start, stop); the images run (the
        forward passes: 0 when every shard was there).

        The next images are decoded in a background thread while ONNX Runtime runs the
        current batch (at most this shard's and the next shard's images in memory) —
        unless this process measured decoding at more than ``INLINE_RATIO`` times the
        model's time on this dataset, where the threads' contention costs more than the
        overlap gains: then in this thread, batch by batch."""
        todo = self.missing(model, reader, targets, start, stop)
        self.last_decoded = self.last_mapped = 0
        if not todo:
            if self.max_bytes:
                _touch(self._entry(model, reader))
            return 0
        targets = list(targets)
        layers = sorted({t.layer for t in targets if t.layer != OUTPUT})
        parts: dict[Target, list[dict[str, NDArray[Any]]]] = {t: [] for t in targets}
        pending: list[list[NDArray[np.float32]]] = []
        pending_bytes = 0
        passes = 0
        done = 0
        key = (model.version, reader.version)
        seen = self._costs.get(key)
        background = seen is None or seen[0] <= INLINE_RATIO * seen[1]
        model_s = 0.0
        with Prefetcher(model, reader, todo, model.options.max_batch, self.pixels,
                        self.decode_threads, background) as batches:
            try:
                for batch in batches:
                    t0 = time.perf_counter()
                    x = model.to_model_input(batch.pixels.astype(np.float32))
                    if layers:
                        outs = model.probe(x, layers)
                    else:
                        outs = [model.run(x)]
                    del x
                    model_s += time.perf_counter() - t0
                    pending.append(outs)
                    pending_bytes += sum(o.nbytes for o in outs)
                    del outs
                    if pending_bytes >= STATS_BYTES or batch.last:
                        # the batches' values together: one reduction per target, not one
                        # per batch (a small model's batches cost less than numpy's calls)
                        names = [*layers, OUTPUT]
                        values = {name: np.concatenate([p[j] for p in pending])
                                  for j, name in enumerate(names)}
                        values[OUTPUT] = values[OUTPUT].reshape(values[OUTPUT].shape[0], -1)
                        pending, pending_bytes = [], 0
                        for t in targets:
                            parts[t].append(_keep(values[t.layer], t, model.channels_last))
                        del values
                    if not batch.last:
                        continue
                    for t in targets:
                        arrays = {k: np.concatenate([p[k] for p in parts[t]])
                                  for k in parts[t][0] if k != "spatial"}
                        if "spatial" in parts[t][0]:
                            arrays["spatial"] = parts[t][0]["spatial"]
                        _atomic_npz(self._path(model, reader, t, batch.shard), arrays)
                        parts[t] = []
                    batches.release()
                    passes += batch.shard[1] - batch.shard[0]
                    done += 1
                    if progress is not None:
                        progress(done / len(todo))
            finally:
                self.last_decoded = batches.decoded
                self.last_mapped = batches.mapped
                self.last_background = background
        if batches.decoded and passes:
            self._costs[key] = (batches.decode_s / batches.decoded, model_s / passes)
        if self.max_bytes:
            keep = {self._entry(model, reader)}
            if batches.keep:
                keep.add(self.pixels.entry(reader))
            for k in keep:
                _touch(k)
            self.evict(keep)
        return passes

    # size limit -------------------------------------------------------------------------
    def entries(self) -> list[tuple[Path, float, int]]:
        """Every (model version, dataset version) entry and decoded-pixels entry: (its
        directory, when it was last used, its bytes), least recently used first."""
        out: list[tuple[Path, float, int]] = []
        if not self.root.is_dir():
            return out
        for top in _dirs(self.root):
            for entry in _dirs(top):
                used, size = _usage(entry)
                out.append((entry, used, size))
        out.sort(key=lambda e: e[1])
        return out

    def evict(self, keep: set[Path] | None = None) -> list[Path]:
        """Delete entries, least recently used first, until at most ``max_bytes`` remain
        (never one in ``keep``); the directories deleted."""
        if not self.max_bytes:
            return []
        keep = keep or set()
        entries = self.entries()
        total = sum(e[2] for e in entries)
        gone: list[Path] = []
        for path, _used, size in entries:
            if total <= self.max_bytes:
                break
            if path in keep:
                continue
            trash = path.with_name(f".evicted-{path.name}-{os.getpid()}-{time.monotonic_ns()}")
            try:
                os.replace(path, trash)  # readers see the entry whole or not at all
            except OSError:
                continue  # another process evicted it first
            shutil.rmtree(trash, ignore_errors=True)
            total -= size
            gone.append(path)
        return gone

    # reading ----------------------------------------------------------------------------
    def _load(self, model: LoadedModel, reader: DatasetReader, target: Target
              ) -> dict[str, NDArray[Any]]:
        for attempt in range(3):
            if self.missing(model, reader, [target]):  # evicted, or never computed here
                self.ensure(model, reader, [target])
            if self.max_bytes:
                _touch(self._entry(model, reader))
            try:
                return self._read(model, reader, target)
            except FileNotFoundError:  # another process evicted the entry meanwhile
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _read(self, model: LoadedModel, reader: DatasetReader, target: Target
              ) -> dict[str, NDArray[Any]]:
        parts: dict[str, list[NDArray[Any]]] = {}
        spatial: NDArray[Any] | None = None
        for shard in self.shards(len(reader)):
            with np.load(self._path(model, reader, target, shard), allow_pickle=False) as z:
                for k in z.files:
                    if k == "spatial":
                        spatial = z[k]
                    else:
                        parts.setdefault(k, []).append(z[k])
        out = {k: np.concatenate(v) for k, v in parts.items()}
        if spatial is not None:
            out["spatial"] = spatial
        return out

    def layer(self, model: LoadedModel, reader: DatasetReader, layer: str) -> LayerStats:
        """A layer's stats over the whole dataset (computed first where missing)."""
        z = self._load(model, reader, Target(layer))
        sp = z["spatial"]
        return LayerStats(z["mean"], z["max"], z["argmax"], (int(sp[0]), int(sp[1])))

    def values(self, model: LoadedModel, reader: DatasetReader, target: Target
               ) -> NDArray[np.float32]:
        """A neuron's values or the output (N, ...) over the dataset (computed first where
        missing)."""
        v: NDArray[np.float32] = self._load(model, reader, target)["value"]
        return v


def _keep(v: NDArray[np.float32], t: Target, channels_last: bool) -> dict[str, NDArray[Any]]:
    """What a target keeps of one batch's values of its layer."""
    if t.layer == OUTPUT:
        return {"value": v.astype(np.float32)}
    if t.neuron is not None:
        c, y, xx = t.neuron
        cf = np.moveaxis(v, -1, 1) if channels_last and v.ndim > 2 else v
        return {"value": cf[:, c, y, xx].astype(np.float32)}
    return _stats(v, channels_last)


_USED = ".used"


def _touch(entry: Path) -> None:
    """Mark an entry used now (its ``.used`` file's mtime)."""
    try:
        entry.mkdir(parents=True, exist_ok=True)
        mark = entry / _USED
        mark.touch()
        now = time.time_ns()  # exact: the file system's own clock ticks in milliseconds
        os.utime(mark, ns=(now, now))
    except OSError:
        pass  # evicted meanwhile: the next write marks it again


def _dirs(path: Path) -> list[Path]:
    try:
        return [Path(e.path) for e in os.scandir(path)
                if e.is_dir(follow_symlinks=False) and not e.name.startswith(".")]
    except OSError:
        return []


def _usage(entry: Path) -> tuple[float, int]:
    """(last used, bytes) of an entry: its ``.used`` mark, else its newest file."""
    size = 0
    newest = 0.0
    for dirpath, _dirnames, filenames in os.walk(entry):
        for f in filenames:
            try:
                st = os.stat(os.path.join(dirpath, f))
            except OSError:
                continue
            size += st.st_size
            newest = max(newest, st.st_mtime)
    try:
        used = (entry / _USED).stat().st_mtime
    except OSError:
        used = newest
    return used, size


def _atomic_npz(path: Path, arrays: dict[str, NDArray[Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".shard.", suffix=".npz", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)  # type: ignore[arg-type]
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def receptive_field(model: LoadedModel, layer: str) -> tuple[int, int]:
    """The (height, width) of the input region one position of ``layer`` sees, from the
    graph's convolutions and pools (kernel, stride, dilation); the whole input when the
    layer has no positions or the path is not understood."""
    import onnx

    proto: onnx.ModelProto = model.proto()
    h_in, w_in = model.input_hw
    rf: dict[str, tuple[float, float, float, float]] = {model.input_name: (1, 1, 1, 1)}
    for init in proto.graph.initializer:
        rf.setdefault(init.name, (0, 0, 1, 1))
    for node in proto.graph.node:
        ins = [rf[i] for i in node.input if i in rf and rf[i][0] > 0]
        if not ins:
            continue
        r_h = max(v[0] for v in ins)
        r_w = max(v[1] for v in ins)
        j_h = max(v[2] for v in ins)
        j_w = max(v[3] for v in ins)
        if node.op_type in ("Conv", "MaxPool", "AveragePool", "ConvInteger", "QLinearConv"):
            attrs = {a.name: list(a.ints) for a in node.attribute}
            k = attrs.get("kernel_shape")
            if k is None and node.op_type == "Conv":
                w_init = next((t for t in proto.graph.initializer if t.name == node.input[1]),
                              None)
                k = list(w_init.dims[2:]) if w_init is not None else [1, 1]
            k = k or [1, 1]
            s = attrs.get("strides") or [1, 1]
            d = attrs.get("dilations") or [1, 1]
            r_h += (k[0] - 1) * d[0] * j_h
            r_w += (k[-1] - 1) * d[-1] * j_w
            j_h *= s[0]
            j_w *= s[-1]
        elif node.op_type in ("GlobalAveragePool", "GlobalMaxPool", "Gemm", "MatMul",
                              "Flatten", "Reshape"):
            r_h, r_w = float(h_in), float(w_in)
        for o in node.output:
            rf[o] = (r_h, r_w, j_h, j_w)
        if layer in node.output:
            break
    got = rf.get(layer, (h_in, w_in, 1, 1))
    return min(int(got[0]), h_in), min(int(got[1]), w_in)
