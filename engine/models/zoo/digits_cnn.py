"""digits-cnn: a small CNN on scikit-learn's ``load_digits`` (8×8 digits 0–9), trained at
build time by Lantern's own gradient engine (:mod:`engine.training`), as a second built-in
model that dataset analyses can use on a fresh machine (with the built-in dataset
``digits``, :mod:`engine.datasets.builtin`).

Input: RGB 8×8 (NCHW; the digits' 0..16 gray levels are stored as 0..255 gray PNGs, so the
three channels are equal); the graph averages the channels first (``gray``), then

    conv1 3×3 1→16 (pad 1) ReLU · conv2 3×3 16→32 stride 2 ReLU (4×4) ·
    conv3 3×3 32→32 ReLU · global average pool · linear 32→10

Training: a seeded split (1,437 train / 360 held out, stratified), Adam, fixed epochs;
one ORT thread, so the same weights every build. The held-out accuracy is measured at
build and written into the model's description (and bench/RESULTS.md).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from numpy.typing import NDArray
from onnx import TensorProto, helper, numpy_helper

from api_schemas.models import ImageManifest, ModelInfo
from engine.models.store import ModelStore
from engine.models.zoo.registry import BuiltinModel, atomic_write, register_builtin

NAME = "digits-cnn"
LABELS = [str(i) for i in range(10)]
LAYERS = ("conv1", "conv2", "conv3")
SEED = 0
_LOCK = threading.Lock()


def manifest() -> dict[str, Any]:
    return {
        "name": NAME,
        "modality": "image",
        "layout": "NCHW",
        "input_size": [8, 8],
        "channel_order": "RGB",
        "scale": 1.0 / 255.0,
        "mean": [0.0, 0.0, 0.0],
        "std": [1.0, 1.0, 1.0],
        "resize": "bilinear",
        "labels": LABELS,
    }


def digits_pixels() -> tuple[NDArray[np.uint8], NDArray[np.int64]]:
    """The 1,797 digits as 8×8 uint8 gray levels 0..255 (round(v·255/16)) and labels."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.rint(np.asarray(d.images, np.float64) * (255.0 / 16.0)).astype(np.uint8)
    return images, np.asarray(d.target, np.int64)


def split(
    n: int, labels: NDArray[np.int64], held_out: float = 0.2
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """A seeded, stratified train / held-out split of indices."""
    rng = np.random.default_rng(SEED)
    train: list[int] = []
    test: list[int] = []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        k = round(len(idx) * held_out)
        test.extend(idx[:k].tolist())
        train.extend(idx[k:].tolist())
    return np.asarray(sorted(train)), np.asarray(sorted(test))


def to_input(pixels: NDArray[np.uint8]) -> NDArray[np.float32]:
    """(N, 8, 8) gray 0..255 -> the model's input (N, 3, 8, 8), as the manifest scales it."""
    x = pixels.astype(np.float32) * np.float32(1.0 / 255.0)
    out: NDArray[np.float32] = np.ascontiguousarray(np.repeat(x[:, None], 3, axis=1))
    return out


def _he(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int) -> NDArray[np.float32]:
    out: NDArray[np.float32] = (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(
        np.float32
    )
    return out


def build_graph(seed: int = SEED) -> onnx.ModelProto:
    """The untrained CNN (He-initialised from ``seed``)."""
    rng = np.random.default_rng(seed)
    w = {
        "conv1.weight": _he(rng, (16, 1, 3, 3), 9),
        "conv1.bias": np.zeros(16, np.float32),
        "conv2.weight": _he(rng, (32, 16, 3, 3), 144),
        "conv2.bias": np.zeros(32, np.float32),
        "conv3.weight": _he(rng, (32, 32, 3, 3), 288),
        "conv3.bias": np.zeros(32, np.float32),
        "fc.weight": (rng.standard_normal((10, 32)) * np.sqrt(1.0 / 32)).astype(np.float32),
        "fc.bias": np.zeros(10, np.float32),
    }
    nodes = [
        helper.make_node("ReduceMean", ["input"], ["gray"], axes=[1], keepdims=1),
        helper.make_node(
            "Conv",
            ["gray", "conv1.weight", "conv1.bias"],
            ["conv1.pre"],
            kernel_shape=[3, 3],
            pads=[1, 1, 1, 1],
        ),
        helper.make_node("Relu", ["conv1.pre"], ["conv1"]),
        helper.make_node(
            "Conv",
            ["conv1", "conv2.weight", "conv2.bias"],
            ["conv2.pre"],
            kernel_shape=[3, 3],
            pads=[1, 1, 1, 1],
            strides=[2, 2],
        ),
        helper.make_node("Relu", ["conv2.pre"], ["conv2"]),
        helper.make_node(
            "Conv",
            ["conv2", "conv3.weight", "conv3.bias"],
            ["conv3.pre"],
            kernel_shape=[3, 3],
            pads=[1, 1, 1, 1],
        ),
        helper.make_node("Relu", ["conv3.pre"], ["conv3"]),
        helper.make_node("GlobalAveragePool", ["conv3"], ["pool"]),
        helper.make_node("Flatten", ["pool"], ["pool.flat"], axis=1),
        helper.make_node("Gemm", ["pool.flat", "fc.weight", "fc.bias"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "digits_cnn",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
        [numpy_helper.from_array(v, k) for k, v in w.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    model.producer_name = "lantern-digits-cnn"
    return model


def train_model() -> tuple[onnx.ModelProto, dict[str, Any]]:
    """The trained CNN and its training record (held-out accuracy, seconds, epochs)."""
    from engine.training import TrainConfig, accuracy, train

    images, labels = digits_pixels()
    tr, te = split(len(labels), labels)
    x = to_input(images)
    cfg = TrainConfig(epochs=50, batch_size=16, lr=3e-3, lr_decay=0.93, seed=SEED)
    result = train(build_graph(), x[tr], labels[tr], cfg)
    acc = accuracy(result.model, x[te], labels[te])
    record = {
        "held_out_accuracy": round(acc, 4),
        "train_accuracy": round(accuracy(result.model, x[tr], labels[tr]), 4),
        "train_images": len(tr),
        "held_out_images": len(te),
        "epochs": cfg.epochs,
        "steps": result.steps,
        "train_seconds": round(result.seconds, 2),
        "losses": [round(v, 4) for v in result.losses],
        "seed": SEED,
    }
    return result.model, record


def ensure(zoo_dir: Path) -> tuple[Path, dict[str, Any]]:
    """``zoo_dir/digits-cnn.onnx`` and its training record, trained first where missing."""
    target = Path(zoo_dir) / f"{NAME}.onnx"
    meta = Path(zoo_dir) / f"{NAME}.json"
    with _LOCK:
        if not (target.is_file() and meta.is_file()):
            model, record = train_model()
            atomic_write(meta, json.dumps(record, indent=1).encode())
            atomic_write(target, model.SerializeToString())
    return target, json.loads(meta.read_text())


def description(record: dict[str, Any]) -> str:
    return (
        "Small CNN (3 conv layers, global pooling, linear head) on scikit-learn's 8x8 digits, "
        "trained at build time by Lantern's gradient engine; held-out accuracy "
        f"{100 * float(record['held_out_accuracy']):.1f} % on {record['held_out_images']} "
        "images."
    )


def _register(store: ModelStore, zoo_dir: Path) -> ModelInfo:
    path, record = ensure(zoo_dir)
    m = ImageManifest.model_validate({**manifest(), "description": description(record)})
    return store.add(path.read_bytes(), m, builtin=True)


register_builtin(
    BuiltinModel(
        name=NAME,
        modality="image",
        description="Small CNN on scikit-learn's 8x8 digits, trained by Lantern at build "
        "(held-out accuracy >= 95 %, recorded in the zoo's digits-cnn.json)",
        register=_register,
    )
)
