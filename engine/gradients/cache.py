"""Build VJP models lazily, cache them on disk, keep their ORT sessions in an LRU.

On disk a gradient model is keyed by (model content hash, wrt, output, batch bucket,
optimisation level, engine version) and written atomically (temp file + ``os.replace``),
so concurrent builders never expose a partial file; the worst case is building twice.
In process, at most `max_sessions` ``InferenceSession`` objects are kept, least recently
used evicted first.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
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

#: Bumped whenever the builder or the optimiser changes what they emit.
ENGINE_VERSION = "3"

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
    ) -> None:
        self.cache_dir = Path(cache_dir)
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
        caching) the model when it is not on disk yet. `batch` is the bucket size."""
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

    def cached_sessions(self) -> int:
        with self._lock:
            return len(self._sessions)

    # -- internals --------------------------------------------------------------------

    def _meta_path(self, path: Path) -> Path:
        return path.with_suffix(".json")

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
        if path.is_file() and meta_path.is_file():
            try:
                meta = json.loads(meta_path.read_text())
                return GradientModel(
                    model=onnx.load(str(path)),
                    inputs=tuple(meta["inputs"]),
                    outputs=tuple(meta["outputs"]),
                    batch=int(meta["batch"]),
                    wrt=str(meta["wrt"]),
                    output=str(meta["output"]),
                    input_name=str(meta["input_name"]),
                    classes=int(meta["classes"]),
                )
            except Exception:  # unreadable or stale: rebuild and overwrite
                pass
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
            "classes": gm.classes,
            "seed": SEED,
            "grad": GRAD,
            "activation": ACTIVATION,
            "level": self.level,
            "engine_version": ENGINE_VERSION,
        }
        _atomic_write(meta_path, json.dumps(meta, indent=1).encode())
        return gm


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
