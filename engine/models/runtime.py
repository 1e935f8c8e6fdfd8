"""A registered model ready to run: ONNX Runtime session plus its preprocessing.

Methods work in *pixel space* (float32 RGB pixels, 0..255, at the model's input size) and
call :meth:`LoadedModel.scores`, which applies the manifest's scaling, normalisation,
channel order and layout, and runs the batch through ONNX Runtime in chunks.

The session is created on the first run, not on loading: the API loads models to check
requests (input size, differentiability, CAM heads: graph analyses) and, given the graph's
input and output from the model's record (`GraphIO`), never needs one.
"""

from __future__ import annotations

import functools
import json
import logging
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from numpy.typing import NDArray

from api_schemas.models import AnyManifest, ImageManifest
from engine.gradients import BUCKETS, GradientCache, VJPResult, check_differentiable, vjp
from engine.modalities import codec_for
from engine.models.batching import BATCH_CANDIDATES, choose_batch, time_per_image
from engine.models.heads import CamHead, cam_head, default_cam_layer, probe_model
from engine.models.incremental import IncrementalRunner, find_cut
from engine.models.layers import discover_layers
from engine.models.remote import RemotePredictor
from engine.objectives import softmax

log = logging.getLogger("lantern")

__all__ = [
    "GraphIO",
    "LoadedModel",
    "ProviderUnavailable",
    "RuntimeOptions",
    "SessionCache",
    "resolve_providers",
    "session_providers",
    "softmax",
]


class ProviderUnavailable(ValueError):
    """An execution provider the settings ask for that this installation cannot use."""


def _provider_name(name: str, known: list[str]) -> str:
    """``name`` as ONNX Runtime spells it: "cuda", "CUDA" or "CUDAExecutionProvider"."""
    want = name.strip().lower().removesuffix("executionprovider")
    for full in known:
        if full.lower().removesuffix("executionprovider") == want:
            return full
    return name.strip()


#: Creates a one-node session with the providers in argv and prints those it really got.
_PROBE = """
import json, sys
import onnxruntime as ort
from onnx import TensorProto, helper
if hasattr(ort, "preload_dlls"):
    try:
        ort.preload_dlls()
    except Exception:
        pass
x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
g = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "probe", [x], [y])
m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
m.ir_version = 8
so = ort.SessionOptions()
so.log_severity_level = 3
s = ort.InferenceSession(m.SerializeToString(), so, providers=sys.argv[1:])
print(json.dumps(s.get_providers()))
"""

_CPU = "CPUExecutionProvider"


@functools.lru_cache(maxsize=16)
def _probe_providers(providers: tuple[str, ...]) -> tuple[str, ...]:
    """The providers a session asked for ``providers`` really gets (ONNX Runtime drops one
    it cannot initialise, a CUDA build without a device or driver, with only a warning).

    The probe runs in a child interpreter: a device context made in this process would not
    survive the fork of a Celery worker's pool. The CPU provider needs no probe."""
    if all(p == _CPU for p in providers):
        return providers
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, *providers],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["no message"]
        raise ProviderUnavailable(
            f"ONNX Runtime could not create a session with {', '.join(providers)}: "
            f"{tail[0]}. Fix the device, or change LANTERN_ORT_PROVIDERS."
        )
    return tuple(json.loads(proc.stdout.strip().splitlines()[-1]))


def _load_gpu_libraries(providers: tuple[str, ...]) -> None:
    """onnxruntime-gpu finds CUDA and cuDNN installed as pip packages (the GPU image's) once
    preloaded; loading libraries makes no device context, so forking stays safe."""
    if any(p != _CPU for p in providers) and hasattr(ort, "preload_dlls"):
        try:
            ort.preload_dlls()
        except Exception:  # the probe reports what then fails
            log.warning("onnxruntime.preload_dlls failed", exc_info=True)


def resolve_providers(requested: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The execution providers asked for (LANTERN_ORT_PROVIDERS), in ONNX Runtime's names,
    checked against this installation: one it does not have, or has but cannot start (no
    GPU, no driver), is refused with a message that names the providers it has."""
    available = list(ort.get_available_providers())
    names = tuple(_provider_name(p, list(ort.get_all_providers())) for p in requested)
    if not names:
        raise ProviderUnavailable(
            "LANTERN_ORT_PROVIDERS is empty: name at least one execution provider, e.g. "
            f"CPUExecutionProvider. This installation has: {', '.join(available)}."
        )
    missing = [p for p in names if p not in available]
    if missing:
        raise ProviderUnavailable(
            f"ONNX Runtime execution provider(s) {', '.join(missing)} asked for in "
            f"LANTERN_ORT_PROVIDERS are not available in this installation "
            f"(onnxruntime {ort.__version__}); it has: {', '.join(available)}. Install "
            "onnxruntime-gpu for CUDAExecutionProvider (the GPU image, Dockerfile.gpu), or "
            "drop them from LANTERN_ORT_PROVIDERS."
        )
    _load_gpu_libraries(names)
    started = _probe_providers(names)
    failed = [p for p in names if p not in started]
    if failed:
        raise ProviderUnavailable(
            f"ONNX Runtime execution provider(s) {', '.join(failed)} are installed but could "
            f"not be started (no device, driver or CUDA libraries?); a session got only "
            f"{', '.join(started)}. Fix the device, or drop them from LANTERN_ORT_PROVIDERS."
        )
    return names


def session_providers(providers: tuple[str, ...]) -> dict[str, list[str]]:
    """What a process runs models on: the providers it is configured with and really gets
    (a probe session's), and the providers this installation has."""
    return {
        "configured": list(providers),
        "active": list(_probe_providers(tuple(providers))),
        "available": list(ort.get_available_providers()),
    }


@dataclass(frozen=True)
class GraphIO:
    """The graph's image input and first output, and its batch size where fixed."""

    input_name: str
    output_name: str
    fixed_batch: int | None = None

    @staticmethod
    def of_session(session: ort.InferenceSession) -> GraphIO:
        inp = session.get_inputs()[0]
        shape0 = inp.shape[0]
        fixed = shape0 if isinstance(shape0, int) and shape0 > 0 else None
        return GraphIO(inp.name, session.get_outputs()[0].name, fixed)


@dataclass(frozen=True)
class RuntimeOptions:
    """How sessions are created (injected from settings)."""

    intra_op_threads: int = 0
    max_batch: int = 16
    gradient_dir: Path | None = None  # on-disk cache of gradient models; None = a temp dir
    forward_batch: int = 0  # images per forward call for perturbation methods; 0 = measure
    vjp_batch: int = 0  # images per VJP call for the path / noise methods; 0 = measure
    gradient_cache_max_mb: int = 2048  # quota of the on-disk gradient cache; 0 = unlimited
    max_pixels: int = 40_000_000  # the image codec's decompression-bomb guard
    #: ONNX Runtime execution providers, in order of preference (see resolve_providers)
    providers: tuple[str, ...] = ("CPUExecutionProvider",)


#: Incremental runners kept per loaded model (one per window size, oldest dropped first).
INCREMENTAL_RUNNERS = 4


def bucket_sizes(n: int, buckets: tuple[int, ...] = BUCKETS) -> list[int]:
    """``n`` as a sum of bucket sizes, largest first: 25 -> [16, 8, 1]."""
    out: list[int] = []
    while n > 0:
        size = max((b for b in buckets if b <= n), default=buckets[0])
        out.append(size)
        n -= size
    return out


class LoadedModel:
    def __init__(
        self,
        name: str,
        version: str,
        path: Path,
        manifest: AnyManifest,
        options: RuntimeOptions,
        gradients: GradientCache | None = None,
        io: GraphIO | None = None,
    ) -> None:
        """``io``: the graph's input and output as registered (else read from the session,
        which is then created at once)."""
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
        self._session_options = so
        self.providers = options.providers
        self._session: ort.InferenceSession | None = None
        self._session_lock = threading.Lock()
        self.io = io if io is not None else GraphIO.of_session(self.session)
        self.input_name = self.io.input_name
        self.output_name = self.io.output_name
        self.fixed_batch: int | None = self.io.fixed_batch
        self.codec = codec_for(manifest, options.max_pixels)
        #: Where plain forward passes run when the manifest names a remote predictor (an
        #: Open Inference Protocol server): engine/models/remote.py. Gradients and inner
        #: layers still run on the local graph.
        self.remote: RemotePredictor | None = None
        if manifest.predictor is not None:
            p = manifest.predictor
            self.remote = RemotePredictor(
                p.url, p.model or name, self.input_name, self.output_name, version=p.version,
                batch=p.batch, concurrency=p.concurrency, timeout_s=p.timeout_s,
                retries=p.retries)
        self._lock = threading.Lock()
        self.gradients = gradients
        self._proto: onnx.ModelProto | None = None
        self._checked: dict[tuple[str, str], bool] = {}
        self._layer_shapes: dict[str, tuple[int | str | None, ...]] | None = None
        self._probes: dict[tuple[str, ...], ort.InferenceSession] = {}
        self._cam_heads: dict[str | None, CamHead] = {}
        self._spatial: list[str] | None = None
        self._default_layer: str | None = None
        self._default_layer_known = False
        self._preferred_batch: int | None = None
        self._incremental: dict[tuple[int, int], IncrementalRunner | None] = {}
        self.batch_timings: dict[int, float] = {}  # seconds per image, once measured
        self._preferred_vjp_batch: int | None = None
        self._vjp_batch_lock = threading.Lock()  # not _lock: measuring takes VJPs, which take it
        self.vjp_batch_timings: dict[int, float] = {}  # seconds per image, once measured

    @property
    def session(self) -> ort.InferenceSession:
        """The forward session, created on first use."""
        session = self._session
        if session is None:
            with self._session_lock:
                if self._session is None:
                    self._session = ort.InferenceSession(
                        str(self.path), self._session_options, providers=list(self.providers)
                    )
                session = self._session
        return session

    @property
    def has_session(self) -> bool:
        """Whether the forward session exists yet (nothing has run the model so far)."""
        return self._session is not None

    @property
    def image_manifest(self) -> ImageManifest:
        """The manifest of an image model (image-only code asks; methods that take other
        modalities never reach it: check_method refuses them first)."""
        manifest = self.manifest
        if not isinstance(manifest, ImageManifest):
            raise TypeError(f"model {self.name!r} is {manifest.modality}, not image")
        return manifest

    @property
    def input_hw(self) -> tuple[int, int]:
        h, w = self.image_manifest.input_size
        return int(h), int(w)

    @property
    def channels_last(self) -> bool:
        """Whether the model's feature maps put channels last (NHWC image models)."""
        return isinstance(self.manifest, ImageManifest) and self.manifest.layout == "NHWC"

    @property
    def modality(self) -> str:
        return self.manifest.modality

    @property
    def labels(self) -> list[str]:
        return self.manifest.labels

    @property
    def outputs_probabilities(self) -> bool:
        """Whether the explained output already is class probabilities (the manifest's
        ``scores``; skl2onnx classifiers), so no softmax is taken of it."""
        return getattr(self.manifest, "scores", "logits") == "probabilities"

    def probabilities(self, output: NDArray[np.float32]) -> NDArray[np.float32]:
        """Class probabilities from the explained output (N, classes): its softmax, or the
        output itself where it already is probabilities."""
        out = output.reshape(output.shape[0], -1)
        return np.asarray(out, np.float32) if self.outputs_probabilities else softmax(out)

    def to_model_input(self, pixels: NDArray[np.float32]) -> NDArray[np.float32]:
        """Items (pixels (N, H, W, 3) RGB 0..255) -> the model's input tensor (the codec's)."""
        return self.codec.to_model_input(pixels)

    def run(self, x: NDArray[Any], batch: int | None = None) -> NDArray[np.float32]:
        """Run model-space inputs through ONNX Runtime in chunks of ``batch`` images
        (default ``max_batch``). A model with a fixed batch size gets exactly that, the
        last chunk padded. Strings (an object array, text models) take the graph's rank:
        [N, 1] or [N]."""
        if self.remote is not None:
            return self.remote.run(x)
        if x.dtype == object:
            rank = len(self.session.get_inputs()[0].shape)
            x = x.reshape(x.shape[0], 1) if rank == 2 else x.reshape(-1)
        outs: list[NDArray[np.float32]] = []
        step = self.fixed_batch or batch or self.options.max_batch
        for i in range(0, x.shape[0], step):
            chunk = x[i : i + step]
            n = chunk.shape[0]
            if self.fixed_batch and n < step:
                pad = np.zeros((step - n, *chunk.shape[1:]), dtype=chunk.dtype)
                chunk = np.concatenate([chunk, pad])
            out = self.session.run([self.output_name], {self.input_name: chunk})[0]
            outs.append(np.asarray(out, dtype=np.float32).reshape(out.shape[0], -1)[:n])
        return np.concatenate(outs, axis=0)

    def preferred_batch(self) -> int:
        """Images per forward call for the many-pass (perturbation) methods.

        A fixed-batch model gets its batch; ``RuntimeOptions.forward_batch`` wins when set;
        otherwise the first call times the forward pass at each of `BATCH_CANDIDATES` up to
        ``max_batch`` (about 140 images in all, once per loaded model) and keeps
        `choose_batch` of the timings. On EfficientNet-Lite0 with 2 cores, batch 4 runs LIME
        about 15% faster than batch 16 (cache). The choice never changes a
        result: every image is computed on its own (tests check batch invariance).
        """
        if self.remote is not None:
            return self.remote.batch
        if self.fixed_batch:
            return self.fixed_batch
        if self.options.forward_batch:
            return min(self.options.forward_batch, self.options.max_batch)
        with self._lock:
            if self._preferred_batch is None:
                self.batch_timings = self._time_batches()
                self._preferred_batch = choose_batch(self.batch_timings)
            return self._preferred_batch

    def _time_batches(self) -> dict[int, float]:
        candidates = [b for b in BATCH_CANDIDATES if b <= self.options.max_batch]
        return self.time_batches(candidates or [self.options.max_batch])

    def time_batches(self, sizes: list[int]) -> dict[int, float]:
        """Seconds per image of the local forward pass at each batch size in ``sizes``
        (:func:`engine.models.batching.time_per_image` on a random image of the model's
        input size)."""
        one = self._random_input()

        def run(b: int) -> None:
            x = np.ascontiguousarray(np.repeat(one, b, axis=0))
            self.session.run([self.output_name], {self.input_name: x})

        return time_per_image(run, sizes)

    def preferred_vjp_batch(self) -> int:
        """Images per VJP call for the methods that take many gradients of one image
        (integrated gradients' path, SmoothGrad's noisy copies) when the caller leaves
        ``internal_batch_size`` unset.

        A fixed-batch model gets its batch; ``RuntimeOptions.vjp_batch`` wins when set;
        otherwise the first call times the VJP (w.r.t. the input, of the model's output)
        at each gradient bucket size up to ``max_batch`` (1, 8, 16: about 90 images, once
        per loaded model) and keeps `choose_batch` of the timings. On EfficientNet-Lite0
        with 2 cores batch 1 is the fastest per image (16.7 ms against 20.6 ms at 16: the
        backward pass is memory-bound, and a batch of 16 leaves the caches); a small model
        gains from batches instead. The choice never changes a result beyond float
        rounding: every image's gradient is computed on its own.
        """
        if self.fixed_batch:
            return self.fixed_batch
        if self.options.vjp_batch:
            return min(self.options.vjp_batch, self.options.max_batch)
        with self._vjp_batch_lock:
            if self._preferred_vjp_batch is None:
                sizes = [b for b in BUCKETS if b <= min(16, self.options.max_batch)] or [1]
                gradients, keys = self.gradients, (self.version, self.input_name, self.output_name)
                held = {b for b in sizes if gradients is not None and gradients.holds(*keys, b)}
                self.vjp_batch_timings = self.time_vjp_batches(sizes)
                chosen = choose_batch(self.vjp_batch_timings)
                # the sessions built only to be timed go: each keeps the arena of its batch
                # (EfficientNet-Lite0: 8 and 16 held ~2.1 GB more than batch 1 alone)
                for b in sizes:
                    if gradients is not None and b != chosen and b not in held:
                        gradients.discard(*keys, b)
                self._preferred_vjp_batch = chosen
            return self._preferred_vjp_batch

    def time_vjp_batches(self, sizes: list[int]) -> dict[int, float]:
        """Seconds per image of the VJP (w.r.t. the input, a one-hot seed on the model's
        output) at each batch size in ``sizes``, on a random image of the model's input."""
        one = self._random_input()
        seed = np.zeros_like(self.run(one))
        seed.reshape(1, -1)[0, 0] = 1.0

        def run(b: int) -> None:
            self.vjp(np.repeat(one, b, axis=0), np.repeat(seed, b, axis=0))

        return time_per_image(run, sizes, images=16)

    def _random_input(self) -> NDArray[np.float32]:
        """A seeded random image of the model's input size, in model space (1, ...): what
        the batch timings run on."""
        h, w = self.input_hw
        pixels = np.random.default_rng(0).uniform(0, 255, (1, h, w, 3)).astype(np.float32)
        return self.to_model_input(pixels)

    def scores(self, pixels: NDArray[np.float32]) -> NDArray[np.float32]:
        """Logits (N, classes) for a batch of pixel images (N, H, W, 3)."""
        return self.run(self.to_model_input(pixels))

    # -- graph-level capabilities (gradients, layers) ----------------------------------

    def proto(self) -> onnx.ModelProto:
        with self._lock:
            if self._proto is None:
                self._proto = onnx.load(str(self.path))
            return self._proto

    def check_gradients(self, wrt: str | None = None, output: str | None = None) -> None:
        """Refuse (UnsupportedModel, naming the op and node) a model onnx-ad cannot
        differentiate from ``wrt`` (default: the input) to ``output`` (default: the model's
        output; any layer for an inner objective)."""
        key = (wrt or self.input_name, output or self.output_name)
        if self._checked.get(key):
            return
        check_differentiable(self.proto(), wrt=key[0], output=key[1])
        self._checked[key] = True

    def vjp(
        self,
        x: NDArray[np.float32],
        seed: NDArray[np.float32],
        wrt: str | None = None,
        output: str | None = None,
    ) -> VJPResult:
        """The value of ``output`` (default: the model's output), the gradient of
        sum(seed * output) w.r.t. ``wrt`` (the input by default, or a layer) and that
        layer's activation, for model-space inputs ``x``; ``seed`` has the output's shape."""
        if self.gradients is None:
            raise RuntimeError("this LoadedModel was created without a gradient cache")
        key = wrt or self.input_name
        out_name = output or self.output_name
        self.check_gradients(key, out_name)
        if self.fixed_batch:
            session, gm = self.gradients.get_session(
                self.path, self.version, key, out_name, self.fixed_batch
            )
            return vjp(session, gm, x, seed)
        # bucket-sized pieces (25 = 16 + 8 + 1), so no image is padded and computed for nothing
        parts: list[VJPResult] = []
        start = 0
        for size in bucket_sizes(int(x.shape[0])):
            session, gm = self.gradients.get_session(
                self.path, self.version, key, out_name, size
            )
            parts.append(vjp(session, gm, x[start : start + size], seed[start : start + size]))
            start += size
        if len(parts) == 1:
            return parts[0]
        acts = [p.activation for p in parts]
        return VJPResult(
            logits=np.concatenate([p.logits for p in parts]),
            grad=np.concatenate([p.grad for p in parts]),
            activation=None if any(a is None for a in acts) else np.concatenate(acts),  # type: ignore[arg-type]
        )

    def tensor_values(self, x: NDArray[np.float32], tensor: str) -> NDArray[np.float32]:
        """The value of ``tensor`` (the output, or any layer) for model-space inputs ``x``."""
        if tensor == self.output_name:
            return self.run(x)
        return self.probe(x, [tensor])[0]

    def probe(self, x: NDArray[np.float32], layers: list[str]) -> list[NDArray[np.float32]]:
        """Forward pass returning the values of inner ``layers`` (then the logits)."""
        key = tuple(layers)
        with self._lock:
            sess = self._probes.get(key)
        if sess is None:
            so = ort.SessionOptions()
            if self.options.intra_op_threads:
                so.intra_op_num_threads = self.options.intra_op_threads
            sess = ort.InferenceSession(
                probe_model(self.proto(), layers).SerializeToString(),
                so,
                providers=list(self.providers),
            )
            with self._lock:
                self._probes[key] = sess
        outs = sess.run([*layers, self.output_name], {self.input_name: x})
        return [np.asarray(o, dtype=np.float32) for o in outs]

    def incremental(self, window_hw: tuple[int, int]) -> IncrementalRunner | None:
        """Incremental inference for images that differ from a reference only inside a
        window of ``window_hw`` pixels (see :mod:`engine.models.incremental`), or None
        where the graph offers no cut worth it (or the model is NHWC or has a fixed batch).
        Built once per window size."""
        with self._lock:
            if window_hw in self._incremental:
                return self._incremental[window_hw]
        runner: IncrementalRunner | None = None
        if (not self.channels_last and self.modality == "image" and not self.fixed_batch
                and self.remote is None):  # a remote predictor runs whole passes only
            try:
                proto = self.proto()
                cut = find_cut(proto, self.input_name, self.output_name, self.input_hw, window_hw)
                if cut is not None:
                    runner = IncrementalRunner(
                        proto,
                        cut,
                        self.input_name,
                        self.output_name,
                        self.input_hw,
                        self.options.intra_op_threads,
                    )
            except Exception:  # an optimisation: full passes still work
                log.warning("incremental inference unavailable for %s", self.name, exc_info=True)
                runner = None
        with self._lock:
            # a few window sizes per model (each runner holds three sessions)
            while len(self._incremental) >= INCREMENTAL_RUNNERS:
                self._incremental.pop(next(iter(self._incremental)))
            self._incremental[window_hw] = runner
        return runner

    def spatial_layers(self) -> list[str]:
        """Names of the rank-4 float tensors of the graph, in graph order (cached)."""
        if self._spatial is None:
            self._spatial = [ly.name for ly in discover_layers(self.proto()) if ly.spatial]
        return self._spatial

    def layer_shapes(self) -> dict[str, tuple[int | str | None, ...]]:
        """Every listed layer's shape (shape inference), and the output's (cached)."""
        if self._layer_shapes is None:
            shapes = {ly.name: tuple(ly.shape) for ly in discover_layers(self.proto())}
            shapes.setdefault(self.output_name, ("N", len(self.labels)))
            self._layer_shapes = shapes
        return self._layer_shapes

    def default_cam_layer(self) -> str | None:
        """The last spatial layer before global pooling (Grad-CAM's default; cached)."""
        if not self._default_layer_known:
            self._default_layer = default_cam_layer(self.proto(), self.spatial_layers())
            self._default_layer_known = True
        return self._default_layer

    def cam_head(self, layer: str | None = None) -> CamHead:
        if layer not in self._cam_heads:
            self._cam_heads[layer] = cam_head(self.proto(), self.output_name, layer)
        return self._cam_heads[layer]


class SessionCache:
    """An LRU of loaded models keyed by content version, built lazily in this process.

    Because sessions are built on first use, a forked worker process builds its own.
    """

    def __init__(self, options: RuntimeOptions, capacity: int = 4) -> None:
        self.options = options
        self.capacity = capacity
        grad_dir = options.gradient_dir or Path(tempfile.mkdtemp(prefix="lantern-grad-"))
        self.gradients = GradientCache(
            grad_dir,
            intra_op_num_threads=options.intra_op_threads,
            max_sessions=2 * capacity,
            max_bytes=options.gradient_cache_max_mb * 1024 * 1024 or None,
            providers=list(options.providers),
        )
        self._items: OrderedDict[str, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(
        self,
        name: str,
        version: str,
        path: Path,
        manifest: AnyManifest,
        io: GraphIO | None = None,
    ) -> LoadedModel:
        """The loaded model of this version (``io``: its graph's input and output, as
        registered; see `LoadedModel`)."""
        with self._lock:
            item = self._items.get(version)
            if item is not None:
                self._items.move_to_end(version)
                self.hits += 1
                return item
        loaded = LoadedModel(name, version, path, manifest, self.options, self.gradients, io)
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
