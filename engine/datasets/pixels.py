"""A dataset's images as pixels at a model's input size, for activation extraction.

Two ways to get a shard ``[a, b)`` of them, giving the same uint8 values (N, H, W, 3):

* decoding: each image's file through the model codec's own path (``decode_image``, then
  the manifest's resize), exactly what one explanation of that image computes, into one
  uint8 array per shard;
* the decoded-pixels cache: a shard decoded once is kept as ``.npy`` (uint8) under the
  activation cache, per dataset version and input size and resize filter, and read back
  memory-mapped, so extracting another layer, or another model of the same input size,
  decodes nothing::

      <activations root>/@pixels/<dataset version>/<H>x<W>-<resize>/<a>-<b>.npy

  It is kept where it costs little disk: when a decoded image is at most ``ratio`` times
  the dataset's mean file size (tiny PNGs such as the digits: 1.5x; a 224x224 model on
  20 KB JPEG photos: 7.5x, not kept with the default ratio of 4).

:class:`Prefetcher` decodes (or maps) the next images in a background thread while the
caller runs the model on the current ones: at most two shards of images are alive at once
(the one the model runs on and the one being decoded). Where decoding takes many times
the model's time (tiny images, a tiny model: the digits), overlapping gains little and the
two threads' contention for the interpreter costs more (about 25% on the digits): the
activation cache then decodes in its own thread (see ``ActivationCache.ensure``).
"""

from __future__ import annotations

import os
import queue
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from engine.datasets.decode import SIGNATURE, tiny_png

if TYPE_CHECKING:
    from engine.datasets.store import DatasetReader
    from engine.models.runtime import LoadedModel

PIXELS = "@pixels"


def size_key(model: LoadedModel) -> str:
    h, w = model.input_hw
    return f"{h}x{w}-{model.image_manifest.resize}"


def decode_one(model: LoadedModel, data: bytes) -> NDArray[np.uint8]:
    """One image file -> uint8 (H, W, 3) at the model's input size: the codec's decode
    (the same values as ``model.codec.decode(data).pixels``, as uint8); a tiny simple PNG
    read by :func:`engine.datasets.decode.tiny_png` (the same pixels, without Pillow's
    per-image cost)."""
    from engine.modalities.image import _RESAMPLE, ImageCodec, decode_image

    codec = model.codec
    if isinstance(codec, ImageCodec):
        h, w = codec.manifest.input_size
        tiny = tiny_png(data) if data[:8] == SIGNATURE else None
        if tiny is not None and tiny.shape[0] * tiny.shape[1] <= codec.max_pixels:
            if tiny.shape[:2] == (h, w):  # Pillow's resize to the same size is a copy
                return tiny
            img = Image.fromarray(tiny, "RGB")
        else:
            img = decode_image(data, codec.max_pixels)
        resized = img.resize((w, h), _RESAMPLE[codec.manifest.resize])
        return np.asarray(resized, dtype=np.uint8)
    pixels = np.asarray(codec.decode(data).pixels)  # pragma: no cover - image codecs only
    out: NDArray[np.uint8] = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
    return out  # pragma: no cover


class PixelCache:
    """Decoded-pixels shards (see the module doc)."""

    def __init__(self, root: Path, ratio: float) -> None:
        self.root = Path(root) / PIXELS
        self.ratio = float(ratio)

    def entry(self, reader: DatasetReader) -> Path:
        return self.root / reader.version

    def path(self, model: LoadedModel, reader: DatasetReader, shard: tuple[int, int]) -> Path:
        return self.entry(reader) / size_key(model) / f"{shard[0]}-{shard[1]}.npy"

    def worth_keeping(self, model: LoadedModel, reader: DatasetReader) -> bool:
        """Whether decoded pixels cost at most ``ratio`` times the images' files."""
        if self.ratio <= 0 or len(reader) == 0:
            return False
        h, w = model.input_hw
        mean_file = max(1.0, reader.info.bytes / max(1, reader.info.count))
        return h * w * 3 <= self.ratio * mean_file

    def load(self, model: LoadedModel, reader: DatasetReader, shard: tuple[int, int]
             ) -> NDArray[np.uint8] | None:
        """The shard's pixels, memory-mapped, or None where they were not kept (or a kept
        file is not what this shard needs: it is decoded again)."""
        p = self.path(model, reader, shard)
        try:
            arr: NDArray[np.uint8] = np.load(p, mmap_mode="r", allow_pickle=False)
        except (FileNotFoundError, ValueError, OSError):
            return None
        h, w = model.input_hw
        if arr.dtype != np.uint8 or arr.shape != (shard[1] - shard[0], h, w, 3):
            return None
        return arr

    def store(self, model: LoadedModel, reader: DatasetReader, shard: tuple[int, int],
              pixels: NDArray[np.uint8]) -> None:
        p = self.path(model, reader, shard)
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".shard.", suffix=".npy", dir=p.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                np.save(fh, np.ascontiguousarray(pixels, np.uint8), allow_pickle=False)
            os.replace(tmp, p)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


@dataclass(frozen=True)
class Batch:
    """Images [start, stop) of ``shard`` as uint8 pixels; ``last``: the shard's last batch."""

    shard: tuple[int, int]
    start: int
    stop: int
    pixels: NDArray[np.uint8]
    last: bool
    decoded: bool  # False: read from the pixel cache


_DONE = object()


class Prefetcher:
    """Pixels of ``shards`` batch by batch (``step`` images, from each shard's start), made
    in a background thread while the caller uses the previous batch (``background``; else
    each batch is made when the caller asks for it, in the caller's thread).

    Each shard's pixels are one uint8 array; a new shard is begun only when at most one
    other is still in use (the caller calls :meth:`release` after a shard's last batch),
    so no more than two shards of images are alive. ``threads`` > 1 decodes a batch's
    images on that many threads. Errors raised by decoding are raised by iteration, in
    order. Use as a context manager: leaving it stops the thread.
    """

    def __init__(self, model: LoadedModel, reader: DatasetReader,
                 shards: Sequence[tuple[int, int]], step: int, pixels: PixelCache | None,
                 threads: int = 1, background: bool = True) -> None:
        self.model = model
        self.reader = reader
        self.shards = list(shards)
        self.step = max(1, int(step))
        self.pixels = pixels
        self.keep = pixels is not None and pixels.worth_keeping(model, reader)
        self.threads = max(1, int(threads))
        self.background = background
        self._q: queue.Queue[Any] = queue.Queue()
        self._slots = threading.Semaphore(2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, name="lantern-decode",
                                        daemon=True)
        self._pool: ThreadPoolExecutor | None = None
        #: images decoded / read from the pixel cache, seconds spent decoding (benchmarks,
        #: tests, and the choice of ``background`` next time)
        self.decoded = 0
        self.mapped = 0
        self.decode_s = 0.0

    def __enter__(self) -> Prefetcher:
        if self.threads > 1:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="lantern-decode")
        if self.background:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self.background:
            self._slots.release()  # a producer waiting for a slot wakes and sees the stop
            self._thread.join()
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def release(self) -> None:
        """The caller is done with a shard's pixels."""
        if self.background:
            self._slots.release()

    def __iter__(self) -> Iterator[Batch]:
        if not self.background:
            yield from self._batches()
            return
        while True:
            item = self._q.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def _produce(self) -> None:
        try:
            for batch in self._batches():
                self._q.put(batch)
            self._q.put(_DONE)
        except BaseException as e:  # handed to the consumer, raised there
            self._q.put(e)

    def _batches(self) -> Iterator[Batch]:
        for shard in self.shards:
            if self.background:
                self._slots.acquire()
            if self._stop.is_set():
                return
            yield from self._one(shard)

    def _one(self, shard: tuple[int, int]) -> Iterator[Batch]:
        a, b = shard
        cached = self.pixels.load(self.model, self.reader, shard) if self.pixels else None
        bounds = [(i, min(b, i + self.step)) for i in range(a, b, self.step)]
        if cached is not None:
            self.mapped += b - a
            for i0, i1 in bounds:
                yield Batch(shard, i0, i1, cached[i0 - a : i1 - a], i1 == b, False)
            return
        h, w = self.model.input_hw
        out = np.empty((b - a, h, w, 3), np.uint8)

        def decode(i: int) -> None:
            out[i - a] = decode_one(self.model, self.reader.read(i))

        for i0, i1 in bounds:
            if self._stop.is_set():
                return
            t = time.perf_counter()
            if self._pool is not None:
                list(self._pool.map(decode, range(i0, i1)))
            else:
                for i in range(i0, i1):
                    decode(i)
            self.decode_s += time.perf_counter() - t
            self.decoded += i1 - i0
            if i1 == b and self.keep and self.pixels is not None:
                self.pixels.store(self.model, self.reader, shard, out)
            yield Batch(shard, i0, i1, out[i0 - a : i1 - a], i1 == b, True)
