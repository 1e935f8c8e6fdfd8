"""Tabular models over the API: registration with a training sample (CSV), explanations of
a row (object or array) with their bar chart renderings, the built-in breast-cancer models,
the methods' modalities, and bad rows refused with codes before a job is queued."""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from lantern_testing.tabular import linear_data, skl_onnx

FEATURES = [
    {"name": "a"},
    {"name": "b"},
    {"name": "colour", "type": "categorical", "values": ["red", "green", "blue"]},
    {"name": "flag", "type": "boolean"},
]


def training_csv(n: int = 300) -> tuple[str, np.ndarray, np.ndarray]:
    x, _ = linear_data([1.0, -1.0], n=n)
    rng = np.random.default_rng(1)
    colour = rng.integers(0, 3, n)
    flag = rng.integers(0, 2, n)
    y = ((x[:, 0] - x[:, 1] + (colour == 2) * 2 + flag - x[:, :2].mean() * 0) > 0).astype(int)
    names = ["red", "green", "blue"]
    lines = ["a,b,colour,flag,label"] + [
        f"{x[i, 0]:.5f},{x[i, 1]:.5f},{names[colour[i]]},{'true' if flag[i] else 'false'},{y[i]}"
        for i in range(n)
    ]
    feats = np.c_[x, colour, flag].astype(np.float32)
    return "\n".join(lines) + "\n", feats, y


@pytest.fixture(scope="module")
def tab_model(client: TestClient) -> str:
    from sklearn.ensemble import GradientBoostingClassifier

    csv, x, y = training_csv()
    gbm = GradientBoostingClassifier(n_estimators=40, random_state=0).fit(x, y)
    manifest = {"name": "tiny-tab", "modality": "tabular", "labels": ["no", "yes"],
                "features": FEATURES}
    r = client.post(
        "/v1/models",
        files={
            "file": ("m.onnx", skl_onnx(gbm, 4), "application/octet-stream"),
            "training": ("train.csv", csv.encode(), "text/csv"),
        },
        data={"manifest": json.dumps(manifest)},
    )
    assert r.status_code == 201, r.text
    info = r.json()
    assert info["output"] == "probabilities"
    st = info["manifest"]["statistics"]
    assert st["rows"] == 300 and len(st["background"]) == 10
    assert len(st["features"][2]["frequencies"]) == 3
    return "tiny-tab"


ROW = {"a": 1.2, "b": -0.4, "colour": "blue", "flag": True}


def explain(client: TestClient, model: str, method: str, row: Any, **kw: Any) -> Any:
    return client.post(
        "/v1/explanations?wait=30",
        json={"model": model, "method": method, "input": {"modality": "tabular", "row": row},
              **kw},
    )


@pytest.mark.parametrize("method", ["lime", "kernel_shap"])
def test_a_row_is_explained_with_feature_weights(
    client: TestClient, tab_model: str, method: str
) -> None:
    r = explain(client, tab_model, method, ROW, target="yes", outputs=["values", "png"])
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["attribution"]["shape"] == [4] and len(body["attribution"]["values"]) == 4
    assert body["target"]["label"] == "yes"
    assert 0.0 <= body["target"]["score"] <= 1.0
    arts = {a["name"]: a for a in body["artifacts"]}
    assert arts["attribution"]["axes"] == ["feature"]
    assert arts["attribution"]["meta"]["feature_names"] == ["a", "b", "colour", "flag"]
    fw = arts["features"]
    assert fw["type"] == "feature_weights" and {"png", "svg", "json"} <= set(fw["links"])
    assert body["views"]["png"] == "features"
    data = client.get(fw["links"]["json"]).json()["data"]
    shown = {f["name"]: f["value"] for f in data["features"]}
    assert shown == {"a": "1.2", "b": "-0.4", "colour": "blue", "flag": "true"}
    weights = [f["weight"] for f in data["features"]]
    assert [abs(weights[i]) for i in data["order"]] == sorted(map(abs, weights), reverse=True)
    png = Image.open(io.BytesIO(client.get(fw["links"]["png"]).content))
    assert png.size[0] > 300 and png.size[1] > 4 * 20
    svg = client.get(fw["links"]["svg"])
    assert svg.headers["content-type"].startswith("image/svg") and b"colour" in svg.content
    # the result's png and overlay are the bar chart (an overlay has no image to go over)
    result_png = client.get(f"/v1/jobs/{body['job']}/result?format=overlay")
    assert result_png.status_code == 200 and result_png.content[:4] == b"\x89PNG"


def test_a_row_by_position_is_the_same_row(client: TestClient, tab_model: str) -> None:
    a = explain(client, tab_model, "kernel_shap", ROW, target=1)
    b = explain(client, tab_model, "kernel_shap", [1.2, -0.4, "blue", True], target=1)
    assert a.status_code == b.status_code == 200
    assert a.json()["attribution"]["values"] == b.json()["attribution"]["values"]
    e = a.json()["extras"]
    assert abs(e["sum_check"]) < 1e-3


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ({"a": 1.0, "b": 2.0, "colour": "red"}, "missing_column"),
        ({**ROW, "c": 1}, "extra_column"),
        ({**ROW, "colour": "purple"}, "unknown_category"),
        ({**ROW, "a": "1.2"}, "wrong_type"),
        ({**ROW, "flag": None}, "missing_value"),
        ([1.0, 2.0], "wrong_length"),
    ],
)
def test_bad_rows_are_refused_with_codes(
    client: TestClient, tab_model: str, row: Any, reason: str
) -> None:
    r = explain(client, tab_model, "lime", row)
    assert r.status_code == 422, r.text
    err = r.json()
    assert err["code"] == "invalid_row" and err["details"]["reason"] == reason


def test_nan_in_a_row_is_refused(client: TestClient, tab_model: str) -> None:
    body = (
        '{"model": "tiny-tab", "method": "lime", "input": {"modality": "tabular", '
        '"row": {"a": NaN, "b": 1, "colour": "red", "flag": true}}}'
    )
    r = client.post("/v1/explanations?wait=5", content=body,
                    headers={"content-type": "application/json"})
    assert r.status_code == 422 and "finite" in r.json()["message"]


def test_an_image_method_names_the_tabular_methods(client: TestClient, tab_model: str) -> None:
    r = explain(client, tab_model, "grad_cam", ROW)
    assert r.status_code == 422, r.text
    err = r.json()
    assert err["code"] == "unsupported_modality"
    assert {"lime", "kernel_shap", "saliency", "integrated_gradients"} <= set(
        err["details"]["methods"]
    )
    # and a tree ensemble has no gradients: saliency is refused naming the op
    r = explain(client, tab_model, "saliency", ROW)
    assert r.status_code == 422 and "TreeEnsembleClassifier" in r.json()["message"]


def test_methods_list_the_tabular_modality(client: TestClient) -> None:
    rows = client.get("/v1/methods").json()
    rows = rows["methods"] if isinstance(rows, dict) else rows
    tab = sorted({m["name"] for m in rows if "tabular" in m.get("modalities", [])})
    assert tab == ["integrated_gradients", "kernel_shap", "lime", "saliency"]


def test_builtin_mlp_explained_by_gradients(client: TestClient) -> None:
    from engine.models.zoo.tabular import split

    info = client.get("/v1/models/breast-cancer-mlp").json()
    assert info["builtin"] and info["capabilities"]["gradients"]
    assert "held-out accuracy" in info["manifest"]["description"]
    _, xte, _, _ = split()
    row = [float(v) for v in xte[0]]
    for method in ("saliency", "integrated_gradients", "lime"):
        r = explain(client, "breast-cancer-mlp", method, row, target="top1")
        assert r.status_code == 200, (method, r.text)
        assert r.json()["attribution"]["shape"] == [30]
    gbm = client.get("/v1/models/breast-cancer-gbm").json()
    assert gbm["builtin"] and not gbm["capabilities"]["gradients"]


def test_a_training_sample_is_for_tabular_models_only(client: TestClient) -> None:
    from lantern_testing.api import tiny_weights
    from lantern_testing.models import linear_classifier, manifest

    r = client.post(
        "/v1/models",
        files={
            "file": ("m.onnx", linear_classifier(tiny_weights()).SerializeToString(),
                     "application/octet-stream"),
            "training": ("t.csv", b"a\n1\n", "text/csv"),
        },
        data={"manifest": json.dumps(manifest("img2", 8, ["a", "b"]))},
    )
    assert r.status_code == 422 and "tabular" in r.json()["message"]


def test_a_bad_training_sample_is_refused(client: TestClient) -> None:
    from sklearn.linear_model import LogisticRegression

    x, y = linear_data([1.0, -1.0])
    manifest = {"name": "bad-sample", "modality": "tabular", "labels": ["no", "yes"],
                "features": [{"name": "a"}, {"name": "b"}]}
    r = client.post(
        "/v1/models",
        files={
            "file": ("m.onnx", skl_onnx(LogisticRegression().fit(x, y), 2), "application/x"),
            "training": ("t.csv", b"a,c\n1,2\n", "text/csv"),
        },
        data={"manifest": json.dumps(manifest)},
    )
    assert r.status_code == 422 and r.json()["code"] == "invalid_training_sample"
    r = client.post(
        "/v1/models",
        files={"file": ("m.onnx", skl_onnx(LogisticRegression().fit(x, y), 2), "application/x")},
        data={"manifest": json.dumps(manifest)},
    )
    assert r.status_code == 422 and "training sample" in r.json()["message"]
    assert client.get("/v1/models/bad-sample").status_code == 404


def test_several_rows_by_json_and_by_csv_upload(client: TestClient, tab_model: str) -> None:
    rows = [ROW, {**ROW, "a": -1.0, "colour": "red", "flag": False}]
    r = client.post(
        "/v1/explanations?wait=30",
        json={"model": tab_model, "method": "kernel_shap", "target": 1,
              "input": {"modality": "tabular", "rows": rows}},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["attribution"]["shape"] == [2, 4]
    arts = {a["name"]: a for a in body["artifacts"]}
    assert arts["attribution"]["axes"] == ["row", "feature"]
    e = body["extras"]
    assert e["rows"] == 2 and len(e["sum_check"]) == 2 and max(map(abs, e["sum_check"])) < 1e-3
    single = explain(client, tab_model, "kernel_shap", rows[1], target=1).json()
    assert body["attribution"]["values"][1] == single["attribution"]["values"]
    csv = b"flag,colour,a,b\ntrue,blue,1.2,-0.4\nfalse,red,-1.0,-0.4\n"
    up = client.post(
        "/v1/explanations?wait=30",
        files={"file": ("rows.csv", csv, "text/csv")},
        data={"model": tab_model, "method": "kernel_shap", "target": "1"},
    )
    assert up.status_code == 200, up.text
    assert up.json()["attribution"]["values"] == body["attribution"]["values"]
    bad = client.post(
        "/v1/explanations?wait=30",
        files={"file": ("rows.csv", b"a,b,colour,flag\n1,2,purple,true\n", "text/csv")},
        data={"model": tab_model, "method": "lime"},
    )
    assert bad.status_code == 422 and bad.json()["details"]["reason"] == "unknown_category"
    png = client.get(f"/v1/jobs/{body['job']}/result?format=png")
    assert png.status_code == 200 and png.content[:4] == b"\x89PNG"
    both = client.post("/v1/explanations?wait=5", json={
        "model": tab_model, "method": "lime",
        "input": {"modality": "tabular", "row": ROW, "rows": rows}})
    assert both.status_code == 422 and both.json()["code"] == "invalid_input"


def test_an_integer_beyond_64_bits_is_refused(client: TestClient, tab_model: str) -> None:
    body = (
        '{"model": "tiny-tab", "method": "lime", "input": {"modality": "tabular", '
        '"row": {"a": ' + "9" * 400 + ', "b": 1, "colour": "red", "flag": true}}}'
    )
    r = client.post("/v1/explanations?wait=5", content=body,
                    headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
