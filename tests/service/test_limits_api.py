"""Cost and time limits, request ids, and the Prometheus metrics of jobs."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from lantern.settings import Settings
from lantern_testing.api import register_tiny
from lantern_testing.images import b64, chelsea_png, png_bytes
from service.app import create_app


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    data: Path = tmp_path_factory.mktemp("limits")
    settings = Settings(data_dir=data, max_job_cost=100, job_time_limit_s=0.3)
    with TestClient(create_app(settings)) as c:
        register_tiny(c)
        yield c


def tiny_image() -> str:
    return b64(png_bytes(np.full((8, 8, 3), 5, np.uint8)))


def test_a_request_over_the_cost_limit_is_refused(limited: TestClient) -> None:
    r = limited.post("/v1/explanations", json={
        "model": "tiny", "method": "integrated_gradients", "image": tiny_image(),
        "params": {"steps": 200}})
    assert r.status_code == 422
    err = r.json()
    assert err["code"] == "job_too_costly" and err["details"] == {"cost": 202, "limit": 100}
    r = limited.post("/v1/explanations?wait=20", json={
        "model": "tiny", "method": "integrated_gradients", "image": tiny_image(),
        "params": {"steps": 50}})
    assert r.status_code == 200, r.text


def test_a_job_past_its_time_limit_fails_with_a_code(limited: TestClient) -> None:
    # 64 windows one at a time on the built-in model: well over 0.3 s
    r = limited.post("/v1/explanations", json={
        "model": "efficientnet-lite0", "method": "occlusion", "image": b64(chelsea_png()),
        "target": 1, "params": {"window": 28, "stride": 28, "batch_size": 1}})
    assert r.status_code == 202, r.text
    job = r.json()["id"]
    deadline = time.monotonic() + 60
    st = {}
    while time.monotonic() < deadline:
        st = limited.get(f"/v1/jobs/{job}").json()
        if st["state"] in ("succeeded", "failed"):
            break
        time.sleep(0.05)
    assert st["state"] == "failed", st
    assert st["error"]["code"] == "time_limit"
    r = limited.get(f"/v1/jobs/{job}/result")
    assert r.status_code == 409 and r.json()["code"] == "job_failed"


def test_request_ids_are_echoed(client: TestClient) -> None:
    r = client.get("/healthz", headers={"X-Request-ID": "abc123"})
    assert r.headers["x-request-id"] == "abc123"
    assert len(client.get("/healthz").headers["x-request-id"]) == 32


def test_job_metrics(client: TestClient) -> None:
    r = client.post("/v1/explanations?wait=20", json={
        "model": "tiny", "method": "occlusion", "image": tiny_image(), "target": 0,
        "params": {"window": 2, "stride": 2}})
    assert r.status_code == 200
    client.post("/v1/explanations?wait=20", json={
        "model": "tiny", "method": "occlusion", "image": tiny_image(), "target": 0,
        "params": {"window": 2, "stride": 2}})  # the same: a result-cache hit
    text = client.get("/metrics").text
    assert 'lantern_jobs_finished_total{method="occlusion",state="succeeded"}' in text
    assert 'lantern_job_duration_seconds_bucket{le="+Inf",method="occlusion"}' in text
    assert 'lantern_job_model_calls_total{method="occlusion"}' in text
    assert 'lantern_jobs_submitted_total{deduplicated="true",method="occlusion"}' in text
    assert "lantern_queue_depth" in text
    assert 'lantern_http_requests_total{route="/v1/explanations",status="200"}' in text
