from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from lantern.settings import Settings
from lantern_testing.models import linear_classifier, manifest
from service.app import create_app


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


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The app in embedded mode, with the real built-in model and a tiny one."""
    data: Path = tmp_path_factory.mktemp("data")
    settings = Settings(data_dir=data, max_upload_bytes=2_000_000, max_pixels=5_000_000)
    with TestClient(create_app(settings)) as c:
        register_tiny(c)
        yield c
