"""A registered model ready to run: ONNX Runtime session plus its preprocessing.

Methods work in *pixel space* (float32 RGB pixels, 0..255, at the model's input size) and
call :meth:`LoadedModel.scores`, which applies the manifest's scaling, normalisation,
channel order and layout, and runs the batch through ONNX Runtime in chunks.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from api_schemas.models import ModelManifest


@dataclass(frozen=True)
class RuntimeOptions:
    """How sessions are created (injected from settings)."""

    intra_op_threads: int = 0
    max_batch: int = 16


def softmax(logits: NDArray[np.float32]) -> NDArray[np.float32]:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    out: NDArray[np.float32] = (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)
    return out


class LoadedModel:
    def __init__(
        self,
        name: str,
        version: str,
        path: Path,
        manifest: ModelManifest,
        options: RuntimeOptions,
    ) -> None:
        self.name = name
        self.version = version
        self.path = path
        self.manifest = manifest
        self.options = options
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if options.intra_op_threads:
            so.intra_op_num_threads = options.intra_op_threads
        so.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name
        m = manifest
        scale = np.float32(m.scale)
        mean = np.asarray(m.mean, dtype=np.float32)
        std = np.asarray(m.std, dtype=np.float32)
        # x = (p * scale - mean) / std  ==  p * a + b
        self._a = (scale / std).astype(np.float32)
        self._b = (-mean / std).astype(np.float32)
        self._lock = threading.Lock()

    @property
    def input_hw(self) -> tuple[int, int]:
        h, w = self.manifest.input_size
        return int(h), int(w)

    @property
    def labels(self) -> list[str]:
        return self.manifest.labels

    def to_model_input(self, pixels: NDArray[np.float32]) -> NDArray[np.float32]:
        """Pixels (N, H, W, 3) RGB 0..255 -> the model's input tensor."""
        x = pixels
        if self.manifest.channel_order == "BGR":
            x = x[..., ::-1]
        x = x * self._a + self._b
        if self.manifest.layout == "NCHW":
            x = x.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(x, dtype=np.float32)

    def run(self, x: NDArray[np.float32]) -> NDArray[np.float32]:
        """Run model-space inputs through ONNX Runtime in chunks of ``max_batch``."""
        outs: list[NDArray[np.float32]] = []
        step = self.options.max_batch
        for i in range(0, x.shape[0], step):
            out = self.session.run([self.output_name], {self.input_name: x[i : i + step]})[0]
            outs.append(np.asarray(out, dtype=np.float32).reshape(out.shape[0], -1))
        return np.concatenate(outs, axis=0)

    def scores(self, pixels: NDArray[np.float32]) -> NDArray[np.float32]:
        """Logits (N, classes) for a batch of pixel images (N, H, W, 3)."""
        return self.run(self.to_model_input(pixels))


class SessionCache:
    """An LRU of loaded models keyed by content version, built lazily in this process.

    Because sessions are built on first use, a forked worker process builds its own.
    """

    def __init__(self, options: RuntimeOptions, capacity: int = 4) -> None:
        self.options = options
        self.capacity = capacity
        self._items: OrderedDict[str, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, name: str, version: str, path: Path, manifest: ModelManifest) -> LoadedModel:
        with self._lock:
            item = self._items.get(version)
            if item is not None:
                self._items.move_to_end(version)
                self.hits += 1
                return item
        loaded = LoadedModel(name, version, path, manifest, self.options)
        with self._lock:
            self.misses += 1
            self._items[version] = loaded
            self._items.move_to_end(version)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return loaded

    def evict(self, version: str) -> None:
        with self._lock:
            self._items.pop(version, None)
