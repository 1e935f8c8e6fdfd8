"""Dataset analyses over HTTP on a fresh machine: the built-in digits-cnn over the built-in
digits dataset (request shape: ``dataset`` names it); the second analysis of a layer runs no
forward pass (the job's model_calls); predictions >= 95 % over the digits; refusals before
queueing with stable codes."""

from __future__ import annotations

import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from lantern.settings import Settings
from service.app import create_app


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Any:
    settings = Settings(data_dir=tmp_path_factory.mktemp("data"), builtin_models=["digits-cnn"])
    with TestClient(create_app(settings)) as c:
        yield c


def poll(client: TestClient, job: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st: dict[str, Any] = client.get(f"/v1/jobs/{job}").json()
        if st["state"] in ("succeeded", "failed", "cancelled"):
            return st
        time.sleep(0.1)
    raise AssertionError("job did not finish")


def run(client: TestClient, body: dict[str, Any]) -> dict[str, Any]:
    r = client.post("/v1/explanations", json={"model": "digits-cnn", "dataset": "digits",
                                              **body})
    assert r.status_code == 202, r.text
    st = poll(client, r.json()["id"])
    assert st["state"] == "succeeded", st
    return st


def test_builtins_listed(client: TestClient) -> None:
    ds = client.get("/v1/datasets/digits").json()
    assert ds["count"] == 1797 and ds["builtin"] and ds["sizes"]["common"] == {"8x8": 1797}
    model = client.get("/v1/models/digits-cnn").json()
    assert "held-out accuracy" in model["manifest"]["description"]
    assert client.delete("/v1/datasets/digits").json()["code"] == "dataset_protected"


def test_max_then_min_activating_reuse_the_activations(client: TestClient) -> None:
    objective = {"kind": "channel", "layer": "conv3", "channel": 3}
    first = run(client, {"method": "max_activating", "objective": objective,
                         "params": {"k": 16}})
    assert first["model_calls"] == 1797
    extras = first["result_summary"]["extras"]
    assert extras["dataset"] == "digits" and extras["k"] == 16
    png = client.get(f"/v1/jobs/{first['id']}/artifacts/grid?format=png")
    assert png.status_code == 200 and png.content[:4] == b"\x89PNG"
    ranking = client.get(f"/v1/jobs/{first['id']}/artifacts/ranking?format=json").json()
    scores = [row[4] for row in ranking["data"]["rows"]] if "data" in ranking else [
        row[4] for row in ranking["rows"]]
    assert scores == sorted(scores, reverse=True) and len(scores) == 16
    second = run(client, {"method": "min_activating", "objective": objective})
    assert second["model_calls"] == 0  # the same layer: read from the cache
    preds = run(client, {"method": "dataset_predictions"})
    assert preds["model_calls"] == 0  # the logits were kept with the layer
    assert preds["result_summary"]["extras"]["accuracy"] >= 0.95


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"dataset": None}, 422, "invalid_input"),
        ({"dataset": "nope"}, 404, "unknown_dataset"),
        ({"metrics": ["deletion"]}, 422, "invalid_params"),
        ({"objective": {"kind": "channel", "layer": "conv3", "channel": 99}}, 422,
         "invalid_objective"),
        ({"objective": None, "target": "top1"}, 422, "invalid_objective"),
    ],
)
def test_refused_before_queueing(client: TestClient, body: dict[str, Any], status: int,
                                 code: str) -> None:
    full = {"model": "digits-cnn", "method": "max_activating", "dataset": "digits",
            "objective": {"kind": "channel", "layer": "conv3", "channel": 0}, **body}
    r = client.post("/v1/explanations", json=full)
    assert r.status_code == status, r.text
    assert r.json()["code"] == code


