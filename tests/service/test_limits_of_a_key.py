"""What one caller controls in embedded mode: a cap on the cost it has queued and running,
a sync lane that long jobs never block, and the smaller refusals of the reliability issue."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from lantern.settings import Settings
from lantern_testing.images import b64, chelsea_png
from service.app import create_app

BUILTIN = "efficientnet-lite0"
SLOW = {"window": 8, "stride": 8, "incremental": False, "batch_size": 1}  # 784 passes


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory, zoo_dir: Path) -> Iterator[TestClient]:
    data: Path = tmp_path_factory.mktemp("data")
    (data / "zoo").mkdir()
    for f in zoo_dir.iterdir():
        (data / "zoo" / f.name).symlink_to(f)
    settings = Settings(data_dir=data, max_queued_cost_per_key=1000, embedded_workers=1)
    with TestClient(create_app(settings)) as c:
        yield c


def occlusion(client: TestClient, target: int) -> object:
    return client.post("/v1/explanations", json={
        "model": BUILTIN, "method": "occlusion", "image": b64(chelsea_png()),
        "target": target, "params": SLOW})


def test_a_key_cannot_queue_more_than_its_cap(capped: TestClient) -> None:
    first = occlusion(capped, 1)
    assert first.status_code == 202  # type: ignore[attr-defined]
    job = first.json()["id"]  # type: ignore[attr-defined]
    second = occlusion(capped, 2)
    assert second.status_code == 429, second.text  # type: ignore[attr-defined]
    body = second.json()  # type: ignore[attr-defined]
    assert body["code"] == "queue_full" and body["details"]["limit"] == 1000
    assert int(second.headers["retry-after"]) > 0  # type: ignore[attr-defined]
    # a sync method never queues behind it: answered in the request
    r = capped.post("/v1/explanations?wait=10", json={
        "model": BUILTIN, "method": "grad_cam", "image": b64(chelsea_png()), "target": 3})
    assert r.status_code == 200, r.text
    # cancelling frees the key's budget
    capped.delete(f"/v1/jobs/{job}")
    third = occlusion(capped, 3)
    assert third.status_code == 202, third.text  # type: ignore[attr-defined]
    capped.delete(f"/v1/jobs/{third.json()['id']}")  # type: ignore[attr-defined]


def test_out_of_range_channels_are_refused_at_submit(client: TestClient) -> None:
    r = client.post("/v1/explanations", json={
        "model": BUILTIN, "method": "activation_maps", "image": b64(chelsea_png()),
        "params": {"channels": [0, 99999]}})
    assert r.status_code == 422 and r.json()["code"] == "invalid_params", r.text
    assert r.json()["details"]["channels"] == [99999]


def test_an_overlay_whose_input_expired_says_which_part(client: TestClient) -> None:
    res = client.post("/v1/explanations?wait=30", json={
        "model": BUILTIN, "method": "grad_cam", "image": b64(chelsea_png()), "target": 7})
    assert res.status_code == 200, res.text
    job = res.json()["job"]
    rt = client.app.state.lantern.rt  # type: ignore[attr-defined]
    rec = rt.jobs.get_job(job)
    rt.jobs.kv.delete(f"{rt.jobs.prefix}:input:{rec.input_key}")  # as after its TTL
    r = client.get(f"/v1/jobs/{job}/result?format=overlay")
    assert r.status_code == 410 and r.json()["code"] == "input_expired"
    assert r.json()["details"]["part"] == "input"
    assert client.get(f"/v1/jobs/{job}/result?format=png").status_code == 200
    assert client.get(f"/v1/jobs/{job}/result?format=json").status_code == 200
