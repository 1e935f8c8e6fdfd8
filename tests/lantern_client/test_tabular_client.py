"""The client's tabular helpers, sync and async, against a real embedded server with the
built-in breast-cancer GBM: a row by name or in order, feature weights as numpy with the
row's values, and KernelSHAP's sum."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from lantern_client import AsyncLanternClient, LanternClient
from lantern_client.tabular import FeatureWeights, row_input
from lantern_testing.processes import embedded_api


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with embedded_api(tmp_path_factory.mktemp("client-tabular"),
                      LANTERN_BUILTIN_MODELS='["breast-cancer-gbm"]') as base:
        yield base


def a_row() -> dict[str, float]:
    from engine.models.zoo.tabular import breast_cancer, split

    _, xte, _, _ = split()
    names = breast_cancer()[2]
    return {n: float(v) for n, v in zip(names, xte[2], strict=True)}


def test_a_row_explained_as_feature_weights(server: str) -> None:
    row = a_row()
    with LanternClient(server) as c:
        res = c.explain_row(row, "breast-cancer-gbm", "kernel_shap", target="benign")
        fw = c.feature_weights(res.job)
    assert isinstance(fw, FeatureWeights) and fw.weights.dtype == np.float64
    assert fw.names == list(row) and fw.values[0] == f"{row['mean radius']:.4g}"
    assert fw.base is not None and fw.f_x is not None
    assert abs(fw.weights.sum() - (fw.f_x - fw.base)) < 1e-3
    assert fw.ranked()[0][0] == max(fw.as_dict(), key=lambda k: abs(fw.as_dict()[k]))
    assert res.target is not None and res.target.label == "benign"


def test_async_by_position_is_the_same(server: str) -> None:
    row = a_row()

    async def go() -> tuple[FeatureWeights, FeatureWeights]:
        async with AsyncLanternClient(server) as ac:
            a = await ac.explain_row(list(row.values()), "breast-cancer-gbm", "lime", target=1)
            b = await ac.explain_row(row, "breast-cancer-gbm", "lime", target=1)
            return await ac.feature_weights(a.job), await ac.feature_weights(b.job)

    a, b = asyncio.run(go())
    np.testing.assert_array_equal(a.weights, b.weights)
    assert all(cond for cond in a.conditions)  # LIME weighs the row's quartile bins


def test_row_input_takes_numpy_values() -> None:
    assert row_input(np.array([1.5, 2.0]))["row"] == [1.5, 2.0]
    with pytest.raises(TypeError):
        row_input("1,2")


def test_upload_with_a_training_sample(server: str, tmp_path: Any) -> None:
    from sklearn.linear_model import LogisticRegression

    from lantern_testing.tabular import linear_data, skl_onnx

    x, y = linear_data([1.0, -2.0], n=200)
    csv = tmp_path / "train.csv"
    csv.write_text("a,b\n" + "".join(f"{u:.5f},{v:.5f}\n" for u, v in x))
    manifest = {"name": "two", "modality": "tabular", "labels": ["no", "yes"],
                "features": [{"name": "a"}, {"name": "b"}]}
    with LanternClient(server) as c:
        info = c.upload_model(skl_onnx(LogisticRegression().fit(x, y), 2), manifest,
                              training=csv)
        assert info.manifest.statistics.rows == 200  # type: ignore[union-attr]
        res = c.explain_row({"a": 1.0, "b": 0.5}, "two", "kernel_shap", target="yes")
        assert c.feature_weights(res.job).names == ["a", "b"]
