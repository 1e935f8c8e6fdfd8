"""Tabular models for tests: scikit-learn estimators through skl2onnx, with their manifest
and training statistics, loaded as the engine loads them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from api_schemas.modalities.tabular import TabularManifest
from engine.gradients import GradientCache
from engine.modalities.tabular_sample import statistics_of
from engine.models.runtime import GraphIO, LoadedModel, RuntimeOptions
from engine.models.store import ModelStore


def skl_onnx(estimator: Any, width: int, **options: Any) -> bytes:
    """The fitted estimator as ONNX: one float input [N, width], zipmap off."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    onx = to_onnx(
        estimator,
        initial_types=[("input", FloatTensorType([None, width]))],
        options={"zipmap": False, **options},
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    return bytes(onx.SerializeToString())


def linear_data(
    coef: list[float], n: int = 600, seed: int = 0, scales: list[float] | None = None
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    rng = np.random.default_rng(seed)
    d = len(coef)
    s = np.asarray(scales or [1.0] * d, np.float32)
    x = (rng.normal(size=(n, d)) * s + rng.normal(size=d) * 3).astype(np.float32)
    logits = (x - x.mean(axis=0)) @ np.asarray(coef, np.float32)
    y = (logits + rng.logistic(size=n) > 0).astype(np.int64)
    return x, y


def numeric_manifest(name: str, d: int, **kw: Any) -> TabularManifest:
    return TabularManifest.model_validate(
        {
            "name": name,
            "modality": "tabular",
            "labels": ["no", "yes"],
            "features": [{"name": f"f{j}"} for j in range(d)],
            **kw,
        }
    )


def with_stats(manifest: TabularManifest, x: NDArray[Any]) -> TabularManifest:
    stats = statistics_of(manifest, np.asarray(x, np.float64))
    return TabularManifest.model_validate(
        {**manifest.model_dump(), "statistics": stats.model_dump()}
    )


def load_tabular(directory: Path, data: bytes, manifest: TabularManifest) -> LoadedModel:
    """Register through the store (the graph checks) and load as the runtime does."""
    store = ModelStore(directory / "models")
    info = store.add(data, manifest)
    return LoadedModel(
        info.name,
        info.version,
        store.path(info.name, info.version),
        info.manifest,
        RuntimeOptions(),
        GradientCache(directory / "gradients"),
        io=GraphIO(info.inputs[0].name, info.output or info.outputs[0].name),
    )
