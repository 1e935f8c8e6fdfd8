"""Model-parameter randomisation test (Adebayo et al., "Sanity checks for saliency maps",
NeurIPS 2018).

The weights of the top ``k`` parameterised layers — the ``k`` Conv / ConvTranspose / Gemm /
MatMul nodes with a constant (initialiser) weight that come last in the graph's
topological order, i.e. closest to the output — are re-initialised by rewriting the ONNX
initialisers: ``normal`` draws each tensor (weight and bias) from N(0, σ²) with σ the
original tensor's standard deviation (seeded), ``shuffle`` permutes its values. The
randomised model is saved to a temporary directory, loaded as a new
:class:`~engine.models.runtime.LoadedModel` (same manifest, its own gradient cache), and
the same explanation (method, params, target) is computed again. A method whose map
depends on the model keeps little of it: the Spearman rank correlation and the SSIM
between the two maps drop. Randomising 0 layers is the identity check (correlation 1).

Spearman's ρ is the Pearson correlation of average ranks (ties share their mean rank),
in numpy; SSIM is :func:`skimage.metrics.structural_similarity` on the two maps each
min–max normalised to [0, 1] (``data_range=1``). Both are ``None`` where undefined (a
constant map).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx
from numpy.typing import NDArray
from onnx import numpy_helper

from engine.gradients import GradientCache
from engine.methods.base import MethodSpec, Progress, no_progress
from engine.modalities.image import ImageInput
from engine.models.runtime import LoadedModel
from engine.objectives import Objective

RandomiseMode = Literal["normal", "shuffle"]
PARAMETERISED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


@dataclass
class SanityResult:
    top_k: int
    layers: list[str]  # the randomised nodes, closest to the output first
    spearman: float | None
    spearman_abs: float | None  # on |values|
    ssim: float | None
    forward_passes: int
    backward_passes: int
    mode: RandomiseMode
    seed: int
    randomised_values: NDArray[np.float32] = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able (without the randomised map)."""
        return {
            "top_k": self.top_k,
            "layers": list(self.layers),
            "spearman": self.spearman,
            "spearman_abs": self.spearman_abs,
            "ssim": self.ssim,
            "forward_passes": self.forward_passes,
            "backward_passes": self.backward_passes,
            "mode": self.mode,
            "seed": self.seed,
        }


# -- statistics -------------------------------------------------------------------------


def average_ranks(x: NDArray[Any]) -> NDArray[np.float64]:
    """Ranks 1..n of the flattened ``x``; ties get the mean of their ranks."""
    v = np.asarray(x, dtype=np.float64).ravel()
    n = v.shape[0]
    order = np.argsort(v, kind="mergesort")
    sv = v[order]
    new = np.empty(n, dtype=bool)
    if n:
        new[0] = True
        new[1:] = sv[1:] != sv[:-1]
    group = np.cumsum(new) - 1
    starts = np.flatnonzero(new)
    ends = np.append(starts[1:], n)
    mean_rank = (starts + ends - 1) / 2.0 + 1.0
    ranks = np.empty(n, dtype=np.float64)
    ranks[order] = mean_rank[group]
    return ranks


def pearson(a: NDArray[Any], b: NDArray[Any]) -> float | None:
    x = np.asarray(a, dtype=np.float64).ravel()
    y = np.asarray(b, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"shapes differ: {x.shape} vs {y.shape}")
    x = x - x.mean()
    y = y - y.mean()
    den = float(np.sqrt((x * x).sum() * (y * y).sum()))
    if den == 0.0 or not np.isfinite(den):
        return None
    return float(np.clip((x * y).sum() / den, -1.0, 1.0))


def spearman(a: NDArray[Any], b: NDArray[Any]) -> float | None:
    """Spearman's rank correlation of two maps (None if either is constant)."""
    return pearson(average_ranks(a), average_ranks(b))


def normalise01(v: NDArray[Any]) -> NDArray[np.float64]:
    """Min–max to [0, 1]; a constant map becomes zeros."""
    x = np.nan_to_num(np.asarray(v, dtype=np.float64))
    lo, hi = float(x.min()), float(x.max())
    if hi <= lo:
        return np.zeros_like(x)
    out: NDArray[np.float64] = (x - lo) / (hi - lo)
    return out


def ssim(a: NDArray[Any], b: NDArray[Any]) -> float | None:
    """SSIM of the two (H, W) maps normalised to [0, 1] (None for maps under 7×7 or when
    both are constant)."""
    from skimage.metrics import structural_similarity

    compare: Any = structural_similarity  # untyped
    x, y = normalise01(a), normalise01(b)
    if x.ndim != 2 or min(x.shape) < 7:
        return None
    if x.max() == 0 and y.max() == 0:  # both constant
        return None
    return float(compare(x, y, data_range=1.0))


# -- randomisation ----------------------------------------------------------------------


def parameterised_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """Conv / ConvTranspose / Gemm / MatMul nodes with an initialiser weight, closest to the
    output first (reverse topological order)."""
    inits = {t.name for t in model.graph.initializer}
    out: list[onnx.NodeProto] = []
    for node in reversed(model.graph.node):
        if node.op_type not in PARAMETERISED_OPS:
            continue
        if any(name in inits for name in node.input[:2]):
            out.append(node)
    return out


def _randomise_tensor(
    t: onnx.TensorProto, mode: RandomiseMode, rng: np.random.Generator
) -> onnx.TensorProto:
    a = numpy_helper.to_array(t)
    if not np.issubdtype(a.dtype, np.floating):
        return t
    if mode == "shuffle":
        flat = a.ravel().copy()
        rng.shuffle(flat)
        new = flat.reshape(a.shape)
    else:
        std = float(np.std(a.astype(np.float64)))
        new = rng.normal(0.0, std, a.shape)
    return numpy_helper.from_array(new.astype(a.dtype), t.name)


def randomise_model(
    model: onnx.ModelProto, top_k: int, *, seed: int = 0, mode: RandomiseMode = "normal"
) -> tuple[onnx.ModelProto, list[str]]:
    """A copy of ``model`` with the initialisers of its top ``top_k`` parameterised nodes
    re-initialised (cascading from the output); and those nodes' names."""
    if top_k < 0:
        raise ValueError("top_k must be >= 0")
    out = onnx.ModelProto()
    out.CopyFrom(model)
    nodes = parameterised_nodes(out)[:top_k]
    inits = {t.name: i for i, t in enumerate(out.graph.initializer)}
    rng = np.random.default_rng(seed)
    done: set[str] = set()
    names: list[str] = []
    for node in nodes:
        names.append(node.name or node.output[0])
        for name in node.input[1:3] if node.op_type != "MatMul" else node.input[:2]:
            if name in inits and name not in done:
                i = inits[name]
                out.graph.initializer[i].CopyFrom(
                    _randomise_tensor(out.graph.initializer[i], mode, rng)
                )
                done.add(name)
    return out, names


def load_variant(
    model: LoadedModel, proto: onnx.ModelProto, directory: Path, suffix: str
) -> LoadedModel:
    """``proto`` saved under ``directory`` and loaded like ``model`` (same manifest and
    options), with its own gradient cache in ``directory/gradients``."""
    path = directory / "model.onnx"
    onnx.save(proto, str(path))
    cache = GradientCache(
        directory / "gradients", intra_op_num_threads=model.options.intra_op_threads
    )
    return LoadedModel(
        f"{model.name}-{suffix}",
        f"{model.version}-{suffix}",
        path,
        model.manifest,
        model.options,
        cache,
    )


def model_randomisation(
    model: LoadedModel,
    image: ImageInput,
    objective: Objective,
    spec: MethodSpec[Any],
    params: Any,
    *,
    top_k: int = 1,
    seed: int = 0,
    mode: RandomiseMode = "normal",
    original: NDArray[Any] | None = None,
    progress: Progress = no_progress,
) -> SanityResult:
    """Randomise the top ``top_k`` layers and compare the method's new map with
    ``original`` (computed here first when not given; its passes are then counted too)."""
    forward = backward = 0
    if original is None:
        first = spec.fn(model, image, objective, params, lambda f: progress(0.5 * f))
        original = first.values
        forward += first.model_calls
        backward += int(first.extras.get("backward_passes", 0))
        start = 0.5
    else:
        start = 0.0
    proto, layers = randomise_model(model.proto(), top_k, seed=seed, mode=mode)
    with tempfile.TemporaryDirectory(prefix="lantern-sanity-") as tmp:
        variant = load_variant(model, proto, Path(tmp), f"random-k{top_k}-{mode}-s{seed}")
        spec.check(params, variant)
        att = spec.fn(
            variant, image, objective, params, lambda f: progress(start + (1 - start) * f),
        )
    forward += att.model_calls
    backward += int(att.extras.get("backward_passes", 0))
    values = np.asarray(att.values, dtype=np.float32)
    return SanityResult(
        top_k=top_k,
        layers=layers,
        spearman=spearman(original, values),
        spearman_abs=spearman(np.abs(original), np.abs(values)),
        ssim=ssim(original, values),
        forward_passes=forward,
        backward_passes=backward,
        mode=mode,
        seed=seed,
        randomised_values=values,
    )
