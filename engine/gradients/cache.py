"""Build VJP models lazily, cache them on disk, keep their ORT sessions in an LRU.

On disk a gradient model is keyed by (model content hash, wrt, output, batch bucket,
optimisation level, engine version) and written atomically (temp file + ``os.replace``),
so concurrent builders never expose a partial file; the worst case is building twice.
With `max_bytes` set, the directory is kept within that quota: after each write the least
recently used entries (a model and its ``.json`` sidecar; recency is the files' mtime,
refreshed whenever a model is loaded from disk) are deleted, never the one just written.
Several processes may share the directory: an entry deleted under a reader is rebuilt, and
files vanishing while being listed or deleted are skipped. In process, at most
`max_sessions` ``InferenceSession`` objects are kept, least recently used evicted first;
evicting files leaves those sessions alone.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
import time
from collections import OrderedDict
from pathlib import Path

import onnx
import onnxruntime as ort

from .builder import (
    ACTIVATION,
    GRAD,
    SEED,
    GradientModel,
    OptimizeLevel,
    build_vjp_model,
    fixed_batch,
)

#: Bumped whenever the builder or the optimiser changes what they emit (or the sidecar's
#: fields: "4" stores ``output_shape`` instead of ``classes``).
ENGINE_VERSION = "4"

#: Suffixes of the files making up one cached entry: the model and its metadata sidecar.
MODEL_SUFFIX = ".onnx"
META_SUFFIX = ".json"

#: Temp files of `_atomic_write` older than this are left over by a killed writer.
STALE_TMP_S = 3600.0

log = logging.getLogger("lantern")

#: Batch sizes gradient models are built for; a request is padded up to the next one.
BUCKETS: tuple[int, ...] = (1, 8, 16, 32)

SessionKey = tuple[str, str, str, int, str]


def bucket_for(n: int, buckets: tuple[int, ...] = BUCKETS) -> int:
    """The smallest bucket holding `n` images (the largest bucket if none does: the
    caller then runs in chunks, as `vjp` does)."""
    for size in buckets:
        if n <= size:
            return size
    return buckets[-1]


def session_options(intra_op_num_threads: int = 0) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = intra_op_num_threads
    options.log_severity_level = 3
    return options


def _slug(text: str) -> str:
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in text)[:40]
    return f"{safe}-{digest}"


class GradientCache:
    """Lazily built, disk-cached VJP models and an in-process LRU of their sessions."""

    def __init__(
        self,
        cache_dir: Path,
        *,
        intra_op_num_threads: int = 0,
        max_sessions: int = 8,
        level: OptimizeLevel = "full",
        providers: list[str] | None = None,
        max_bytes: int | None = None,
    ) -> None:
        """`max_bytes` bounds the size of the on-disk cache (models plus sidecars);
        None or 0 = unlimited."""
        self.cache_dir = Path(cache_dir)
        self.max_bytes = max_bytes or None
        self.intra_op_num_threads = intra_op_num_threads
        self.max_sessions = max_sessions
        self.level: OptimizeLevel = level
        self.providers = providers or ["CPUExecutionProvider"]
        self._sessions: OrderedDict[SessionKey, tuple[ort.InferenceSession, GradientModel]] = (
            OrderedDict()
        )
        self._lock = threading.Lock()
        self._build_locks: dict[SessionKey, threading.Lock] = {}
        self.builds = 0  # how many models this cache built (not loaded from disk)
        self.evictions = 0  # how many entries this cache deleted from disk for the quota

    # -- paths ------------------------------------------------------------------------

    def path_for(self, model_hash: str, wrt: str, output: str, batch: int) -> Path:
        name = f"b{batch}-{self.level}-v{ENGINE_VERSION}-{_slug(output)}-{_slug(wrt)}.onnx"
        return self.cache_dir / _slug(model_hash) / name

    # -- public -----------------------------------------------------------------------

    def get_session(
        self,
        model_path_or_proto: Path | str | onnx.ModelProto,
        model_hash: str,
        wrt: str,
        output: str,
        batch: int,
    ) -> tuple[ort.InferenceSession, GradientModel]:
        """The session and signature of the VJP model for these keys, building (and
        caching) the model when it is not on disk yet. `batch` is the bucket size;
        `output` any float tensor of the graph (the logits, or an inner layer: see
        `build_vjp_model`), part of the key like `wrt`."""
        key: SessionKey = (model_hash, wrt, output, batch, self.level)
        with self._lock:
            hit = self._sessions.get(key)
            if hit is not None:
                self._sessions.move_to_end(key)
                return hit
            build_lock = self._build_locks.setdefault(key, threading.Lock())
        with build_lock:
            with self._lock:
                hit = self._sessions.get(key)
                if hit is not None:
                    self._sessions.move_to_end(key)
                    return hit
            gm = self._load_or_build(model_path_or_proto, model_hash, wrt, output, batch)
            session = ort.InferenceSession(
                gm.model.SerializeToString(),
                session_options(self.intra_op_num_threads),
                providers=self.providers,
            )
            with self._lock:
                self._sessions[key] = (session, gm)
                self._sessions.move_to_end(key)
                while len(self._sessions) > self.max_sessions:
                    self._sessions.popitem(last=False)
                self._build_locks.pop(key, None)
            return session, gm

    def bucket(self, model: Path | str | onnx.ModelProto, n: int) -> int:
        """The batch to build for `n` images (a model with a fixed batch gets that)."""
        loaded = (
            model
            if isinstance(model, onnx.ModelProto)
            else onnx.load(str(model), load_external_data=False)
        )
        fixed = fixed_batch(loaded)
        return fixed if fixed is not None else bucket_for(n)

    def clear(self) -> None:
        with self._lock:
            self._sessions.clear()

    def holds(self, model_hash: str, wrt: str, output: str, batch: int) -> bool:
        """Whether the session for these keys is in memory."""
        with self._lock:
            return (model_hash, wrt, output, batch, self.level) in self._sessions

    def discard(self, model_hash: str, wrt: str, output: str, batch: int) -> bool:
        """Drop the session for these keys from memory (its model stays on disk, and the
        next `get_session` loads it again); False if it was not there."""
        with self._lock:
            key: SessionKey = (model_hash, wrt, output, batch, self.level)
            return self._sessions.pop(key, None) is not None

    def cached_sessions(self) -> int:
        with self._lock:
            return len(self._sessions)

    def disk_usage(self) -> int:
        """Bytes of the cached models and sidecars now on disk."""
        return sum(size for _, size, _ in self._entries().values())

    def enforce_quota(self, keep: Path | None = None) -> int:
        """Delete least recently used entries until the cache is within `max_bytes`,
        never the entry of model file `keep`. Returns how many entries were deleted."""
        if self.max_bytes is None:
            return 0
        entries = self._entries()
        total = sum(size for _, size, _ in entries.values())
        if total <= self.max_bytes:
            return 0
        kept = keep.with_suffix("") if keep is not None else None
        evicted = 0
        for stem, (_, size, files) in sorted(entries.items(), key=lambda item: item[1][0]):
            if total <= self.max_bytes:
                break
            if stem == kept:
                continue
            for file in files:
                _unlink(file)
            total -= size
            evicted += 1
        if evicted:
            self.evictions += evicted
            log.info(
                "gradient cache: evicted %d entries, %d bytes left (quota %d)",
                evicted,
                total,
                self.max_bytes,
            )
        return evicted

    # -- internals --------------------------------------------------------------------

    def _meta_path(self, path: Path) -> Path:
        return path.with_suffix(META_SUFFIX)

    def _entries(self) -> dict[Path, tuple[float, int, list[Path]]]:
        """The entries on disk, keyed by their path without suffix: (last use = newest
        mtime of their files, bytes, files). A file deleted meanwhile is skipped; temp
        files of writers killed long ago are deleted on the way."""
        entries: dict[Path, tuple[float, int, list[Path]]] = {}
        now = time.time()
        try:
            walk = list(os.walk(self.cache_dir))
        except OSError:
            return entries
        for root, _, names in walk:
            for name in names:
                file = Path(root) / name
                try:
                    st = file.stat()
                except (FileNotFoundError, NotADirectoryError):
                    continue
                if name.startswith(".") and name.endswith(".tmp"):
                    if now - st.st_mtime > STALE_TMP_S:
                        _unlink(file)
                    continue
                if file.suffix not in (MODEL_SUFFIX, META_SUFFIX):
                    continue
                stem = file.with_suffix("")
                used, size, files = entries.get(stem, (0.0, 0, []))
                entries[stem] = (max(used, st.st_mtime), size + st.st_size, [*files, file])
        return entries

    def _load(self, path: Path, meta_path: Path) -> GradientModel | None:
        """The entry on disk, its files touched as just used; None when it is missing,
        incomplete (one file deleted by another process's eviction) or unreadable."""
        try:
            meta = json.loads(meta_path.read_text())
            gm = GradientModel(
                model=onnx.load(str(path)),
                inputs=tuple(meta["inputs"]),
                outputs=tuple(meta["outputs"]),
                batch=int(meta["batch"]),
                wrt=str(meta["wrt"]),
                output=str(meta["output"]),
                input_name=str(meta["input_name"]),
                output_shape=tuple(int(d) for d in meta["output_shape"]),
            )
        except Exception:  # missing, half evicted, unreadable or stale: rebuild
            return None
        for file in (path, meta_path):
            try:
                os.utime(file)
            except OSError:  # evicted meanwhile: the model is in memory all the same
                pass
        return gm

    def _load_or_build(
        self,
        model: Path | str | onnx.ModelProto,
        model_hash: str,
        wrt: str,
        output: str,
        batch: int,
    ) -> GradientModel:
        path = self.path_for(model_hash, wrt, output, batch)
        meta_path = self._meta_path(path)
        loaded = self._load(path, meta_path)
        if loaded is not None:
            return loaded
        source = model if isinstance(model, onnx.ModelProto) else onnx.load(str(model))
        gm = build_vjp_model(source, output=output, wrt=wrt, batch=batch, level=self.level)
        self.builds += 1
        path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(path, gm.model.SerializeToString())
        meta = {
            "inputs": list(gm.inputs),
            "outputs": list(gm.outputs),
            "batch": gm.batch,
            "wrt": gm.wrt,
            "output": gm.output,
            "input_name": gm.input_name,
            "output_shape": list(gm.output_shape),
            "seed": SEED,
            "grad": GRAD,
            "activation": ACTIVATION,
            "level": self.level,
            "engine_version": ENGINE_VERSION,
        }
        _atomic_write(meta_path, json.dumps(meta, indent=1).encode())
        self.enforce_quota(keep=path)
        return gm


def _unlink(path: Path) -> None:
    """Delete a file another process may have deleted already. Failing to delete one
    (permissions) is logged, not raised: the model just built is good all the same."""
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError:
        log.warning("gradient cache: cannot delete %s", path, exc_info=True)


def _atomic_write(path: Path, payload: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
