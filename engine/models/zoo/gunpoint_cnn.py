"""gunpoint-cnn: a small 1-D CNN on the UCR GunPoint series (the built-in time-series model).

Data: GunPoint (Ratanamahatana & Keogh; UCR archive: 50 training / 150 test series of 150
steps, x-coordinate of an actor's hand; classes Gun-Draw and Point), as the ``.ts`` text
files that ship inside the ``sktime`` wheel (BSD-3-Clause). They are read as plain text
from the installed package's folder; sktime itself is never imported (it would pull
pandas' and sktime's import time for nothing). sktime was picked over aeon, which ships
the same files, because aeon also depends on numba/llvmlite (~45 MB more).

Model (NCT, input ``series`` (N, 1, 150)):

    conv1 k7 1→16 (pad 3) ReLU · conv2 k5 16→16 stride 2 (pad 2) ReLU (75 steps) ·
    conv3 k3 16→16 (pad 1) ReLU · global average pool · linear 16→2

trained at build by Lantern's own gradient engine (:mod:`engine.training`: onnx-ad
gradients w.r.t. the weights, a numpy Adam loop), seeded, one ORT thread: the same weights
on every build. The held-out accuracy on the 150 test series is measured at build and
written into the manifest's description and the zoo's ``gunpoint-cnn.json``.
"""

from __future__ import annotations

import importlib.util
import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from numpy.typing import NDArray
from onnx import TensorProto, helper, numpy_helper

from api_schemas.modalities.time_series import TimeSeriesManifest
from api_schemas.models import ModelInfo
from engine.models.store import ModelStore
from engine.models.zoo.registry import BuiltinModel, atomic_write, register_builtin

NAME = "gunpoint-cnn"
LABELS = ["Gun-Draw", "Point"]
LENGTH = 150
SEED = 0
_LOCK = threading.Lock()


def manifest() -> dict[str, Any]:
    return {
        "name": NAME,
        "modality": "time_series",
        "channels": 1,
        "length": LENGTH,
        "layout": "NCT",
        "channel_names": ["hand x"],
        "labels": LABELS,
    }


def data_dir() -> Path:
    """The GunPoint folder inside the installed sktime package (found, not imported)."""
    spec = importlib.util.find_spec("sktime")
    if spec is None or spec.origin is None:
        raise RuntimeError("the sktime package (which ships GunPoint) is not installed")
    return Path(spec.origin).parent / "datasets" / "data" / "GunPoint"


def read_ts(path: Path) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """A univariate, equal-length ``.ts`` file -> series (N, 1, T) and labels 0..K-1 (the
    header's ``@classLabel`` order)."""
    classes: list[str] = []
    rows: list[list[float]] = []
    labels: list[int] = []
    in_data = False
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not in_data:
            low = line.lower()
            if low.startswith("@classlabel"):
                classes = line.split()[2:]
            elif low.startswith("@data"):
                in_data = True
            continue
        values, label = line.rsplit(":", 1)
        rows.append([float(v) for v in values.split(",")])
        labels.append(classes.index(label.strip()))
    return np.asarray(rows, np.float32)[:, None, :], np.asarray(labels, np.int64)


def gunpoint() -> tuple[
    NDArray[np.float32], NDArray[np.int64], NDArray[np.float32], NDArray[np.int64]
]:
    """(train x, train y, test x, test y): 50 and 150 series of (1, 150)."""
    d = data_dir()
    xtr, ytr = read_ts(d / "GunPoint_TRAIN.ts")
    xte, yte = read_ts(d / "GunPoint_TEST.ts")
    return xtr, ytr, xte, yte


def _he(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int) -> NDArray[np.float32]:
    out: NDArray[np.float32] = (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(
        np.float32
    )
    return out


def build_graph(seed: int = SEED) -> onnx.ModelProto:
    """The untrained 1-D CNN (He-initialised from ``seed``)."""
    rng = np.random.default_rng(seed)
    w = {
        "conv1.weight": _he(rng, (16, 1, 7), 7),
        "conv1.bias": np.zeros(16, np.float32),
        "conv2.weight": _he(rng, (16, 16, 5), 80),
        "conv2.bias": np.zeros(16, np.float32),
        "conv3.weight": _he(rng, (16, 16, 3), 48),
        "conv3.bias": np.zeros(16, np.float32),
        "fc.weight": (rng.standard_normal((2, 16)) * np.sqrt(1.0 / 16)).astype(np.float32),
        "fc.bias": np.zeros(2, np.float32),
    }
    nodes = [
        helper.make_node(
            "Conv",
            ["series", "conv1.weight", "conv1.bias"],
            ["conv1.pre"],
            kernel_shape=[7],
            pads=[3, 3],
        ),
        helper.make_node("Relu", ["conv1.pre"], ["conv1"]),
        helper.make_node(
            "Conv",
            ["conv1", "conv2.weight", "conv2.bias"],
            ["conv2.pre"],
            kernel_shape=[5],
            pads=[2, 2],
            strides=[2],
        ),
        helper.make_node("Relu", ["conv2.pre"], ["conv2"]),
        helper.make_node(
            "Conv",
            ["conv2", "conv3.weight", "conv3.bias"],
            ["conv3.pre"],
            kernel_shape=[3],
            pads=[1, 1],
        ),
        helper.make_node("Relu", ["conv3.pre"], ["conv3"]),
        helper.make_node("GlobalAveragePool", ["conv3"], ["pool"]),
        helper.make_node("Flatten", ["pool"], ["pool.flat"], axis=1),
        helper.make_node("Gemm", ["pool.flat", "fc.weight", "fc.bias"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "gunpoint_cnn",
        [helper.make_tensor_value_info("series", TensorProto.FLOAT, ["N", 1, LENGTH])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])],
        [numpy_helper.from_array(v, k) for k, v in w.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    model.producer_name = "lantern-gunpoint-cnn"
    return model


EPOCHS = 150
BATCH = 10
LR = 3e-3


def train_model() -> tuple[onnx.ModelProto, dict[str, Any]]:
    """The trained CNN and its training record (held-out accuracy, seconds, epochs)."""
    from engine.training import TrainConfig, accuracy, train

    xtr, ytr, xte, yte = gunpoint()
    cfg = TrainConfig(epochs=EPOCHS, batch_size=BATCH, lr=LR, lr_decay=0.99, seed=SEED)
    result = train(build_graph(), xtr, ytr, cfg)
    record = {
        "held_out_accuracy": round(accuracy(result.model, xte, yte), 4),
        "train_accuracy": round(accuracy(result.model, xtr, ytr), 4),
        "train_series": len(ytr),
        "held_out_series": len(yte),
        "epochs": cfg.epochs,
        "steps": result.steps,
        "train_seconds": round(result.seconds, 2),
        "losses": [round(v, 4) for v in result.losses[:: max(1, len(result.losses) // 30)]],
        "seed": SEED,
        "data": "UCR GunPoint, from the sktime 1.2.0 wheel (BSD-3-Clause)",
    }
    return result.model, record


def ensure(zoo_dir: Path) -> tuple[Path, dict[str, Any]]:
    """``zoo_dir/gunpoint-cnn.onnx`` and its training record, trained first where missing
    (the record first, the model last: a model file means both are complete)."""
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
        "1-D CNN (3 conv layers, global pooling, linear head) on the UCR GunPoint series "
        "(hand x-coordinate: Gun-Draw vs Point), trained at build by Lantern's gradient "
        f"engine; held-out accuracy {100 * float(record['held_out_accuracy']):.1f} % on "
        f"the {record['held_out_series']} test series."
    )


def _register(store: ModelStore, zoo_dir: Path) -> ModelInfo:
    path, record = ensure(zoo_dir)
    m = TimeSeriesManifest.model_validate({**manifest(), "description": description(record)})
    return store.add(path.read_bytes(), m, builtin=True)


register_builtin(
    BuiltinModel(
        name=NAME,
        modality="time_series",
        description="1-D CNN on the UCR GunPoint series, trained by Lantern at build "
        "(held-out accuracy recorded in the zoo's gunpoint-cnn.json)",
        register=_register,
    )
)
