"""Manifests and inputs by modality on the wire."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient

from lantern_testing.api import tiny_weights
from lantern_testing.images import b64, png_bytes, solid
from lantern_testing.models import linear_classifier, manifest


def test_a_manifest_of_an_unknown_modality_is_refused_naming_the_known(
    client: TestClient,
) -> None:
    model = linear_classifier(tiny_weights())
    body = {**manifest("video-model", 8, ["a", "b"]), "modality": "video"}
    r = client.post(
        "/v1/models",
        files={"file": ("m.onnx", model.SerializeToString(), "application/octet-stream")},
        data={"manifest": json.dumps(body)},
    )
    assert r.status_code == 422, r.text
    err = r.json()
    assert err["code"] == "invalid_manifest"
    for known in ("image", "tabular", "text", "time_series"):
        assert known in err["message"]
    assert client.get("/v1/models/video-model").status_code == 404  # nothing half-stored


def test_a_manifest_without_a_modality_is_an_image_manifest(client: TestClient) -> None:
    info = client.get("/v1/models/tiny").json()
    assert info["manifest"]["modality"] == "image"
    assert info["output"] == "logits"


def test_an_input_of_another_modality_is_refused_naming_the_models(client: TestClient) -> None:
    r = client.post(
        "/v1/explanations?wait=5",
        json={
            "model": "tiny",
            "method": "saliency",
            "input": {"modality": "time_series", "values": [0.0, 1.0, 2.0]},
        },
    )
    assert r.status_code == 422, r.text
    err = r.json()
    assert err["code"] == "unsupported_modality"
    assert err["details"] == {"model": "tiny", "modality": "image", "sent": "time_series"}
    assert '"modality": "image"' in err["message"]


def test_the_image_shorthand_and_an_image_input_are_the_same_job(client: TestClient) -> None:
    data = b64(png_bytes(solid(8, (200, 10, 10))))
    a = client.post(
        "/v1/explanations?wait=10", json={"model": "tiny", "method": "saliency", "image": data}
    )
    b = client.post(
        "/v1/explanations?wait=10",
        json={"model": "tiny", "method": "saliency", "input": {"modality": "image", "data": data}},
    )
    assert a.status_code == b.status_code == 200, (a.text, b.text)
    assert a.json()["job"] == b.json()["job"]
