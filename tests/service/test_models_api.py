from __future__ import annotations

import json

import numpy as np
from fastapi.testclient import TestClient

from lantern_testing.images import b64, chelsea_png, png_bytes
from lantern_testing.models import conv_classifier, manifest


def test_health_and_ready(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    r = client.get("/readyz")
    assert r.status_code == 200 and r.json()["checks"]["models"] is True


def test_builtin_model_is_listed_with_layers(client: TestClient) -> None:
    names = [m["name"] for m in client.get("/v1/models").json()["models"]]
    assert "efficientnet-lite0" in names and "tiny" in names
    info = client.get("/v1/models/efficientnet-lite0").json()
    assert info["builtin"] is True
    assert len(info["manifest"]["labels"]) == 1000
    assert info["inputs"][0]["shape"][1:] == [3, 224, 224]
    layers = {layer["name"]: layer for layer in info["layers"]}
    assert layers["head.act"]["shape"][1:] == [1280, 7, 7] and layers["head.act"]["spatial"]


def test_predict_chelsea_json_and_multipart(client: TestClient) -> None:
    png = chelsea_png()
    r = client.post("/v1/models/efficientnet-lite0/predict", json={"image": b64(png), "top_k": 5})
    assert r.status_code == 200, r.text
    preds = r.json()["predictions"]
    assert [p["index"] for p in preds] == [285, 281, 282, 287, 728]
    assert preds[0]["label"] == "Egyptian cat"
    assert abs(preds[0]["score"] - 0.763) < 0.01
    r2 = client.post(
        "/v1/models/efficientnet-lite0/predict",
        files={"file": ("cat.png", png, "image/png")},
        data={"top_k": "2"},
    )
    assert r2.status_code == 200
    assert [p["index"] for p in r2.json()["predictions"]] == [285, 281]


def test_predict_tiny_by_hand(client: TestClient) -> None:
    px = np.zeros((8, 8, 3), np.uint8)
    px[:4, :4, 0] = 1  # class "left" logit = 16, "other" = 0
    r = client.post("/v1/models/tiny/predict", json={"image": b64(png_bytes(px)), "top_k": 2})
    preds = r.json()["predictions"]
    assert preds[0]["label"] == "left" and preds[0]["logit"] == 16.0
    assert abs(preds[0]["score"] - 1 / (1 + np.exp(-16.0))) < 1e-6


def test_upload_get_delete(client: TestClient) -> None:
    model = conv_classifier().SerializeToString()
    r = client.post(
        "/v1/models",
        files={"file": ("m.onnx", model)},
        data={"manifest": json.dumps(manifest("conv", 16, ["a", "b", "c"]))},
    )
    assert r.status_code == 201, r.text
    assert r.json()["version"] and any(layer["name"] == "act" for layer in r.json()["layers"])
    assert client.get("/v1/models/conv").status_code == 200
    assert client.delete("/v1/models/conv").status_code == 204
    r = client.get("/v1/models/conv")
    assert r.status_code == 404 and r.json()["code"] == "unknown_model"


def test_builtin_cannot_be_deleted(client: TestClient) -> None:
    r = client.delete("/v1/models/efficientnet-lite0")
    assert r.status_code == 409 and r.json()["code"] == "model_protected"


def test_bad_uploads_are_4xx_with_codes(client: TestClient) -> None:
    good = json.dumps(manifest("x", 16, ["a", "b", "c"]))
    cases = [
        ({"file": ("m.onnx", b"garbage" * 10)}, {"manifest": good}, 422, "invalid_model"),
        (
            {"file": ("m.onnx", conv_classifier().SerializeToString())},
            {"manifest": json.dumps(manifest("x", 16, ["a", "b"]))},
            422,
            "invalid_manifest",
        ),
        ({"file": ("m.onnx", b"x")}, {"manifest": "{not json"}, 422, "invalid_manifest"),
        ({"file": ("m.onnx", b"x")}, {}, 422, "invalid_input"),
        (None, {"manifest": good}, 422, "invalid_input"),
    ]
    for files, data, status, code in cases:
        r = client.post("/v1/models", files=files, data=data)
        assert r.status_code == status, (r.status_code, r.text)
        body = r.json()
        assert body["code"] == code and body["message"].endswith(".")
