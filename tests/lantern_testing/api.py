"""Helpers for API tests."""

from __future__ import annotations

import json

import numpy as np
from fastapi.testclient import TestClient

from lantern_testing.models import linear_classifier, manifest


def tiny_weights() -> np.ndarray:
    """Class "left" = sum of red over the top-left quadrant of an 8x8 image."""
    w = np.zeros((2, 3, 8, 8), np.float32)
    w[0, 0, :4, :4] = 1.0
    return w


def register_tiny(client: TestClient, name: str = "tiny") -> dict[str, object]:
    model = linear_classifier(tiny_weights()).SerializeToString()
    r = client.post(
        "/v1/models",
        files={"file": ("m.onnx", model, "application/octet-stream")},
        data={"manifest": json.dumps(manifest(name, 8, ["left", "other"]))},
    )
    assert r.status_code == 201, r.text
    body: dict[str, object] = r.json()
    return body
