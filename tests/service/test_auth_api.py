"""API keys, roles, job visibility and the per-key rate limit."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from lantern.settings import ApiKey, Settings
from lantern_testing.images import b64, png_bytes
from lantern_testing.models import linear_classifier, manifest
from service.app import create_app

ADMIN, ALICE, BOB = "admin-secret", "alice-secret", "bob-secret"


def key(name: str, role: str, secret: str) -> ApiKey:
    return ApiKey(name=name, role=role, sha256=hashlib.sha256(secret.encode()).hexdigest())  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    data: Path = tmp_path_factory.mktemp("auth")
    settings = Settings(
        data_dir=data,
        builtin_model=False,
        api_keys=[
            key("root", "admin", ADMIN),
            key("alice", "user", ALICE),
            key("bob", "user", BOB),
        ],
        rate_limit_per_minute=1000,
    )
    with TestClient(create_app(settings)) as c:
        yield c


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def upload(client: TestClient, secret: str) -> int:
    w = np.zeros((2, 3, 8, 8), np.float32)
    w[0, 0] = 1
    r = client.post(
        "/v1/models",
        files={"file": ("m.onnx", linear_classifier(w).SerializeToString())},
        data={"manifest": json.dumps(manifest("tiny", 8, ["a", "b"]))},
        headers=bearer(secret),
    )
    return r.status_code


def test_keys_are_required_except_for_health(client: TestClient) -> None:
    assert client.get("/healthz").status_code == 200
    r = client.get("/v1/models")
    assert r.status_code == 401 and r.json()["code"] == "unauthorized"
    assert r.headers["www-authenticate"] == "Bearer"
    r = client.get("/v1/models", headers=bearer("wrong"))
    assert r.status_code == 401
    assert client.get("/v1/models", headers={"X-API-Key": ALICE}).status_code == 200
    assert client.get("/v1/methods", headers=bearer(ALICE)).status_code == 200


def test_only_admins_register_and_delete(client: TestClient) -> None:
    assert upload(client, ALICE) == 403
    assert upload(client, ADMIN) == 201
    r = client.delete("/v1/models/tiny", headers=bearer(BOB))
    assert r.status_code == 403 and r.json()["code"] == "forbidden"


def test_jobs_are_visible_to_their_creator_and_admins(client: TestClient) -> None:
    if upload(client, ADMIN) not in (200, 201):
        pytest.fail("upload failed")
    body = {
        "model": "tiny",
        "method": "occlusion",
        "target": 0,
        "params": {"window": 4},
        "image": b64(png_bytes(np.full((8, 8, 3), 9, np.uint8))),
    }
    r = client.post("/v1/explanations?wait=20", json=body, headers=bearer(ALICE))
    assert r.status_code == 200, r.text
    job = r.json()["job"]
    assert client.get(f"/v1/jobs/{job}", headers=bearer(ALICE)).status_code == 200
    assert client.get(f"/v1/jobs/{job}", headers=bearer(ADMIN)).status_code == 200
    r = client.get(f"/v1/jobs/{job}", headers=bearer(BOB))
    assert r.status_code == 404 and r.json()["code"] == "unknown_job"
    assert client.get(f"/v1/jobs/{job}/result", headers=bearer(BOB)).status_code == 404
    assert client.delete(f"/v1/jobs/{job}", headers=bearer(BOB)).status_code == 404
    # the same request by Bob is Bob's own job
    r = client.post("/v1/explanations?wait=20", json=body, headers=bearer(BOB))
    assert r.status_code == 200 and r.json()["job"] != job


def test_rate_limit(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        builtin_model=False,
        api_keys=[key("carol", "user", "c")],
        rate_limit_per_minute=3,
    )
    with TestClient(create_app(settings)) as c:
        codes = [c.get("/v1/models", headers=bearer("c")).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        r = c.get("/v1/models", headers=bearer("c"))
        assert r.json()["code"] == "rate_limited" and int(r.headers["retry-after"]) >= 1


def test_auth_required_without_keys_refuses_to_start(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="LANTERN_API_KEYS"):
        create_app(Settings(data_dir=tmp_path, auth_required=True))


def test_keys_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    digest = hashlib.sha256(b"k").hexdigest()
    monkeypatch.setenv(
        "LANTERN_API_KEYS", json.dumps([{"name": "n", "role": "user", "sha256": digest}])
    )
    assert Settings().api_keys == [ApiKey(name="n", role="user", sha256=digest)]
