"""Feature-visualisation thumbnails cached on disk, shared by every worker process.

A thumbnail is the image :func:`engine.visualisation.optimise.optimise` draws for one
channel of one layer with given settings — a pure function of (model version, layer,
channel, settings), so it is stored under the SHA-256 of exactly those (content keyed) as a
``.npy`` of uint8 pixels. ``feature_visualisation`` writes the channels it optimises;
``semantic_dictionary`` reads them (and writes the ones it had to optimise), so a second
dictionary of the same layer costs a forward pass.

The directory lives with the runtime's data: ``thumbnails/`` beside the gradient-model
cache (``LANTERN_DATA_DIR/thumbnails`` for the service and its workers; a temp directory
for a model loaded without a data dir). Writes are atomic (temp file + ``os.replace``), so
processes sharing it never read a partial file; the worst case is optimising twice. It is
bounded: after a write, the least recently used files (mtime, refreshed on every read) are
deleted past ``max_bytes``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from engine.models.runtime import LoadedModel
from engine.visualisation.optimise import Settings

#: Default quota of the thumbnail directory (a 128 × 128 thumbnail is 48 KiB).
DEFAULT_MAX_BYTES = 256 * 1024 * 1024
SUFFIX = ".npy"


def thumbnail_key(model_version: str, layer: str, channel: int, settings: Settings) -> str:
    """The content key of one channel's visualisation."""
    text = json.dumps(
        {"model": model_version, "layer": layer, "channel": int(channel), **settings.key()},
        sort_keys=True,
    )
    return hashlib.sha256(text.encode()).hexdigest()


class ThumbnailCache:
    """uint8 images (h, w, 3) by key, as files under ``directory``."""

    def __init__(self, directory: Path, max_bytes: int | None = DEFAULT_MAX_BYTES) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}{SUFFIX}"

    def get(self, key: str) -> NDArray[np.uint8] | None:
        path = self._path(key)
        try:
            pixels = np.load(path, allow_pickle=False)
            os.utime(path)  # recency for the quota
        except (FileNotFoundError, ValueError, OSError):
            return None
        if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3:
            return None
        return np.ascontiguousarray(pixels)

    def put(self, key: str, pixels: NDArray[np.uint8]) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=SUFFIX)
        try:
            with os.fdopen(fd, "wb") as f:
                np.save(f, np.ascontiguousarray(pixels, np.uint8), allow_pickle=False)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self._enforce_quota(keep=path)

    def _entries(self) -> list[tuple[float, int, Path]]:
        out = []
        for path in self.directory.glob(f"*/*{SUFFIX}"):
            if path.name.startswith(".tmp-"):
                continue
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            out.append((st.st_mtime, st.st_size, path))
        return out

    def size_bytes(self) -> int:
        return sum(size for _, size, _ in self._entries())

    def _enforce_quota(self, keep: Path) -> None:
        if not self.max_bytes:
            return
        with self._lock:
            entries = sorted(self._entries())
            total = sum(size for _, size, _ in entries)
            for _, size, path in entries:
                if total <= self.max_bytes:
                    break
                if path == keep:
                    continue
                path.unlink(missing_ok=True)
                total -= size


_CACHES: dict[Path, ThumbnailCache] = {}
_CACHES_LOCK = threading.Lock()


def cache_dir_of(model: LoadedModel) -> Path:
    """``thumbnails/`` beside the model's gradient cache (``LANTERN_DATA_DIR/gradients``),
    else under the runtime's gradient dir option, else a temp directory."""
    gradients: Any = model.gradients
    base = getattr(gradients, "cache_dir", None) or model.options.gradient_dir
    if base is None:
        return Path(tempfile.gettempdir()) / "lantern-thumbnails"
    return Path(base).parent / "thumbnails"


def thumbnail_cache(model: LoadedModel) -> ThumbnailCache:
    directory = cache_dir_of(model)
    with _CACHES_LOCK:
        cache = _CACHES.get(directory)
        if cache is None:
            cache = _CACHES[directory] = ThumbnailCache(directory)
        return cache
