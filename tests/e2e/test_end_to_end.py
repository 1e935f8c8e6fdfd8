"""End to end with real processes: a private redis-server, a `lantern worker` (Celery,
prefork) and `lantern serve` (uvicorn) talking to it, driven over HTTP with httpx."""

from __future__ import annotations

import io
import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from lantern_testing.images import b64, chelsea_png
from lantern_testing.processes import LANTERN, Proc, free_port, redis_server, wait_for

pytestmark = pytest.mark.e2e

@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    root = tmp_path_factory.mktemp("e2e")
    with redis_server(root / "redis") as url:
        env = {
            **os.environ,
            "LANTERN_REDIS_URL": url,
            "LANTERN_DATA_DIR": str(root / "data"),
            "LANTERN_ORT_THREADS": "1",
        }
        worker = Proc([*LANTERN, "worker", "--concurrency", "1"], env, root / "worker.log")
        port = free_port()
        api = Proc([*LANTERN, "serve", "--port", str(port)], env, root / "api.log")
        base = f"http://127.0.0.1:{port}"
        procs = {"worker": worker, "api": api}
        try:
            wait_for(lambda: httpx.get(f"{base}/readyz").status_code == 200, 120, "the API")
            wait_for(lambda: b"ready" in (root / "worker.log").read_bytes(), 120, "the worker")
            yield {"base": base, "env": env, "root": root, "procs": procs, "port": port}
        except Exception:
            for name, p in procs.items():
                print(f"--- {name} log ---\n{p.tail()}")
            raise
        finally:
            for p in procs.values():
                p.stop()


def poll(client: httpx.Client, job: str, timeout: float = 120) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    seen_progress: set[float] = set()
    while time.monotonic() < deadline:
        st: dict[str, object] = client.get(f"/v1/jobs/{job}").json()
        seen_progress.add(float(st["progress"]))  # type: ignore[arg-type]
        if st["state"] in ("succeeded", "failed", "cancelled"):
            st["_progress_seen"] = sorted(seen_progress)
            return st
        time.sleep(0.1)
    raise AssertionError(f"job {job} did not finish")


def test_occlusion_on_chelsea_through_redis_and_a_celery_worker(stack: dict[str, object]) -> None:
    with httpx.Client(base_url=str(stack["base"]), timeout=60) as client:
        body = {
            "model": "efficientnet-lite0",
            "method": "occlusion",
            "image": b64(chelsea_png()),
            "target": "top1",
            "params": {"window": 16, "stride": 8},
        }
        r = client.post("/v1/explanations", json=body)
        assert r.status_code == 202, r.text
        job = r.json()["id"]
        st = poll(client, job)
        assert st["state"] == "succeeded", st
        assert st["model_calls"] == 2 + 729
        summary = st["result_summary"]
        assert summary["target"]["index"] == 285  # type: ignore[index]
        # progress was reported while it ran (values strictly between 0 and 1)
        assert any(0 < p < 1 for p in st["_progress_seen"]), st["_progress_seen"]  # type: ignore[union-attr]

        png = client.get(f"/v1/jobs/{job}/result", params={"format": "png"})
        assert png.status_code == 200 and png.headers["content-type"] == "image/png"
        heat = Image.open(io.BytesIO(png.content))
        assert heat.size == (224, 224)
        overlay = client.get(f"/v1/jobs/{job}/result", params={"format": "overlay"})
        assert Image.open(io.BytesIO(overlay.content)).size == (451, 300)  # chelsea's own size
        values = np.load(io.BytesIO(client.get(f"/v1/jobs/{job}/result?format=npy").content))
        assert values.shape == (224, 224) and np.isfinite(values).all() and values.max() > 0

        # the same request is the same job, answered at once from the store
        again = client.post("/v1/explanations?wait=5", json=body)
        assert again.status_code == 200 and again.json()["job"] == job


def test_cancel_reaches_the_worker(stack: dict[str, object]) -> None:
    with httpx.Client(base_url=str(stack["base"]), timeout=60) as client:
        body = {
            "model": "efficientnet-lite0",
            "method": "occlusion",
            "image": b64(chelsea_png()),
            "target": 1,
            "params": {"window": 8, "stride": 4, "batch_size": 1},
        }
        job = client.post("/v1/explanations", json=body).json()["id"]
        wait_for(lambda: client.get(f"/v1/jobs/{job}").json()["state"] == "running", 60, "running")
        assert client.delete(f"/v1/jobs/{job}").json()["state"] == "cancelled"
        time.sleep(1.0)
        st = client.get(f"/v1/jobs/{job}").json()
        assert st["state"] == "cancelled" and st["progress"] < 1.0
        # the worker is free again: a small job completes
        small = {**body, "params": {"window": 112, "stride": 112}}
        r = client.post("/v1/explanations?wait=60", json=small)
        assert r.status_code == 200, r.text


def test_results_survive_an_api_restart(stack: dict[str, object]) -> None:
    procs: dict[str, Proc] = stack["procs"]  # type: ignore[assignment]
    base = str(stack["base"])
    with httpx.Client(base_url=base, timeout=60) as client:
        body = {
            "model": "efficientnet-lite0",
            "method": "occlusion",
            "image": b64(chelsea_png()),
            "target": 281,
            "params": {"window": 112, "stride": 56},
        }
        r = client.post("/v1/explanations?wait=60", json=body)
        assert r.status_code == 200, r.text
        job = r.json()["job"]
    procs["api"].stop()
    root: Path = stack["root"]  # type: ignore[assignment]
    env: dict[str, str] = stack["env"]  # type: ignore[assignment]
    procs["api"] = Proc([*LANTERN, "serve", "--port", str(stack["port"])], env, root / "api2.log")
    wait_for(lambda: httpx.get(f"{base}/readyz").status_code == 200, 120, "the restarted API")
    with httpx.Client(base_url=base, timeout=60) as client:
        st = client.get(f"/v1/jobs/{job}").json()
        assert st["state"] == "succeeded"
        res = client.get(f"/v1/jobs/{job}/result").json()
        assert res["target"]["index"] == 281 and res["attribution"]["shape"] == [224, 224]
