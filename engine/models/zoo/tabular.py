"""Built-in tabular models on scikit-learn's breast-cancer data (``load_breast_cancer``: 569
rows, 30 numeric features, malignant / benign; it ships inside scikit-learn), trained at
build time with scikit-learn and exported with skl2onnx:

* ``breast-cancer-gbm``: ``GradientBoostingClassifier(random_state=0)`` (a TreeEnsemble
  graph: LIME and KernelSHAP explain it; gradients do not exist);
* ``breast-cancer-mlp``: ``StandardScaler`` + ``MLPClassifier((32, 16))``, exported with the
  scaler as Sub/Div (skl2onnx's ``div`` option), so onnx-ad differentiates it: saliency and
  integrated gradients too.

Both take one float tensor [N, 30] and answer probabilities (zipmap off). A stratified,
seeded split keeps 143 rows out; the held-out accuracy is measured at build and written
into the description (and bench/RESULTS.md). The training statistics (LIME's bins,
KernelSHAP's k-means background) are computed from the 426 training rows with the same
code as a registration's training sample (:mod:`engine.modalities.tabular_sample`).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from api_schemas.modalities.tabular import TabularFeature, TabularStatistics
from api_schemas.models import ModelInfo, TabularManifest
from engine.modalities.tabular_sample import statistics_of
from engine.models.store import ModelStore
from engine.models.zoo.registry import BuiltinModel, atomic_write, register_builtin

SEED = 0
HELD_OUT = 0.25
_LOCK = threading.Lock()


def breast_cancer() -> tuple[NDArray[np.float32], NDArray[np.int64], list[str], list[str]]:
    """(rows, labels, feature names, class names) of scikit-learn's breast-cancer data."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    names = [str(n) for n in data.feature_names]
    return (
        np.asarray(data.data, np.float32),
        np.asarray(data.target, np.int64),
        names,
        [str(c) for c in data.target_names],
    )


def split() -> tuple[
    NDArray[np.float32], NDArray[np.float32], NDArray[np.int64], NDArray[np.int64]
]:
    """The seeded, stratified split: train rows, held-out rows, their labels."""
    from sklearn.model_selection import train_test_split

    x, y, _, _ = breast_cancer()
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=HELD_OUT, random_state=SEED, stratify=y)
    return xtr, xte, ytr, yte


def _estimator(kind: str) -> Any:
    if kind == "gbm":
        from sklearn.ensemble import GradientBoostingClassifier

        return GradientBoostingClassifier(random_state=SEED)
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(
        StandardScaler(), MLPClassifier((32, 16), max_iter=2000, random_state=SEED)
    )


def build(kind: str) -> tuple[bytes, dict[str, Any]]:
    """Train and export one model: (the .onnx bytes, its build record)."""
    import onnxruntime as ort
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.neural_network import MLPClassifier
    from sklearn.preprocessing import StandardScaler

    xtr, xte, ytr, yte = split()
    est = _estimator(kind).fit(xtr, ytr)
    options: dict[Any, Any] = (
        {StandardScaler: {"div": "div"}, MLPClassifier: {"zipmap": False}}
        if kind == "mlp"
        else {"zipmap": False}
    )
    onx = to_onnx(
        est,
        initial_types=[("input", FloatTensorType([None, xtr.shape[1]]))],
        options=options,
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    data = onx.SerializeToString()
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    probs = sess.run(["probabilities"], {"input": xte})[0]
    accuracy = float((np.argmax(probs, axis=1) == yte).mean())
    record = {
        "statistics": manifest("breast-cancer").statistics.model_dump(mode="json"),  # type: ignore[union-attr]
        "held_out_accuracy": round(accuracy, 4),
        "held_out_rows": len(yte),
        "train_rows": len(ytr),
        "sklearn_accuracy": round(float(est.score(xte, yte)), 4),
        "seed": SEED,
    }
    return data, record


def ensure(zoo_dir: Path, name: str, kind: str) -> tuple[Path, dict[str, Any]]:
    """``zoo_dir/<name>.onnx`` and its build record, built first where missing."""
    target = Path(zoo_dir) / f"{name}.onnx"
    meta = Path(zoo_dir) / f"{name}.json"
    with _LOCK:
        if not (target.is_file() and meta.is_file()):
            data, record = build(kind)
            atomic_write(meta, json.dumps(record, indent=1).encode())
            atomic_write(target, data)
    return target, json.loads(meta.read_text())


def manifest(
    name: str, description: str = "", statistics: dict[str, Any] | None = None
) -> TabularManifest:
    """The manifest of a breast-cancer model, with the training rows' statistics (computed
    here unless given: the build record keeps them)."""
    _, _, names, classes = breast_cancer()
    base = TabularManifest(
        name=name,
        modality="tabular",
        labels=classes,
        features=[TabularFeature(name=n, type="numeric") for n in names],
        scores="probabilities",
        description=description,
    )
    if statistics is not None:
        stats = TabularStatistics.model_validate(statistics)
    else:
        xtr, _, _, _ = split()
        stats = statistics_of(base, xtr.astype(np.float64))
    return base.model_copy(update={"statistics": stats})


_TITLES = {
    "gbm": "Gradient boosting (scikit-learn, 100 trees of depth 3)",
    "mlp": "MLP (scikit-learn StandardScaler + MLPClassifier 32-16, differentiable)",
}


def _register(name: str, kind: str) -> Any:
    def register(store: ModelStore, zoo_dir: Path) -> ModelInfo:
        path, record = ensure(zoo_dir, name, kind)
        description = (
            f"{_TITLES[kind]} on scikit-learn's breast-cancer data through skl2onnx; held-out "
            f"accuracy {100 * float(record['held_out_accuracy']):.1f} % on "
            f"{record['held_out_rows']} rows."
        )
        m = manifest(name, description, record.get("statistics"))
        return store.add(path.read_bytes(), m, builtin=True)

    return register


for _name, _kind in (("breast-cancer-gbm", "gbm"), ("breast-cancer-mlp", "mlp")):
    register_builtin(
        BuiltinModel(
            name=_name,
            modality="tabular",
            description=f"{_TITLES[_kind]} on scikit-learn's breast-cancer data (30 numeric "
            "features), through skl2onnx",
            register=_register(_name, _kind),
        )
    )
