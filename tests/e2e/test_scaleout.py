"""One job shared by several Celery worker processes, and surviving one of them dying.

Real processes: a private redis-server, two `lantern worker` nodes and `lantern serve`.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from lantern_testing.images import b64, chelsea_png
from lantern_testing.processes import LANTERN, Proc, free_port, redis_server, wait_for

pytestmark = pytest.mark.e2e




@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    root = tmp_path_factory.mktemp("scaleout")
    with redis_server(root / "redis") as url:
        env = {
            **os.environ,
            "LANTERN_REDIS_URL": url,
            "LANTERN_DATA_DIR": str(root / "data"),
            "LANTERN_ORT_THREADS": "1",
            "LANTERN_SPLIT_MIN_SAMPLES": "100",
            "LANTERN_SPLIT_CHUNK_SAMPLES": "48",
        }
        procs = {
            "w1": Proc([*LANTERN, "worker", "--hostname", "w1@%h"], env, root / "w1.log"),
            "w2": Proc([*LANTERN, "worker", "--hostname", "w2@%h"], env, root / "w2.log"),
        }
        port = free_port()
        procs["api"] = Proc([*LANTERN, "serve", "--port", str(port)], env, root / "api.log")
        base = f"http://127.0.0.1:{port}"
        try:
            wait_for(lambda: httpx.get(f"{base}/readyz").status_code == 200, 120, "the API")
            for name in ("w1", "w2"):
                wait_for(lambda n=name: b" ready." in (root / f"{n}.log").read_bytes(), 120, name)
            yield {"base": base, "root": root, "procs": procs}
        except Exception:
            for name, p in procs.items():
                print(f"--- {name} ---\n{p.tail()}")
            raise
        finally:
            for p in procs.values():
                p.stop()


def run(client: httpx.Client, body: dict[str, object], timeout: float = 240) -> dict[str, object]:
    job = client.post("/v1/explanations", json=body).json()["id"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st: dict[str, object] = client.get(f"/v1/jobs/{job}").json()
        if st["state"] in ("succeeded", "failed", "cancelled"):
            return st
        time.sleep(0.2)
    raise AssertionError("job did not finish")


def chunk_count(log: Path) -> int:
    return log.read_text(errors="replace").count("Task lantern.chunk[")


def test_one_job_is_shared_by_two_workers(cluster: dict[str, object]) -> None:
    root: Path = cluster["root"]  # type: ignore[assignment]
    with httpx.Client(base_url=str(cluster["base"]), timeout=60) as client:
        body = {"model": "efficientnet-lite0", "method": "occlusion", "image": b64(chelsea_png()),
                "target": 285, "params": {"window": 32, "stride": 16}}  # 13 x 13 = 169 windows
        st = run(client, body)
        assert st["state"] == "succeeded", st
        assert st["model_calls"] == 2 + 169
        values = np.load(io.BytesIO(client.get(f"/v1/jobs/{st['id']}/result?format=npy").content))
    # both nodes evaluated chunks of it (169 samples in chunks of 48 = 4 chunks)
    assert chunk_count(root / "w1.log") >= 1 and chunk_count(root / "w2.log") >= 1
    # and the map is the one a single process computes
    from PIL import Image
    from skimage import data

    from engine.methods.base import no_progress
    from engine.methods.occlusion import OcclusionParams, occlusion
    from engine.modalities.image import prepare_image
    from engine.objectives import ClassScore
    from jobs.runtime import Runtime
    from lantern.settings import Settings

    rt = Runtime(Settings(data_dir=root / "data", ort_threads=1))
    model = rt.load("efficientnet-lite0")
    inp = prepare_image(Image.fromarray(data.chelsea()), model.manifest)
    params = OcclusionParams(window=32, stride=16)
    local = occlusion(model, inp, ClassScore(285), params, no_progress)
    np.testing.assert_allclose(values, local.values, rtol=1e-5, atol=1e-5)


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def test_a_job_survives_a_worker_process_killed_mid_job(cluster: dict[str, object]) -> None:
    procs: dict[str, Proc] = cluster["procs"]  # type: ignore[assignment]
    with httpx.Client(base_url=str(cluster["base"]), timeout=60) as client:
        body = {"model": "efficientnet-lite0", "method": "occlusion", "image": b64(chelsea_png()),
                "target": 281, "params": {"window": 16, "stride": 12, "batch_size": 4}}
        job = client.post("/v1/explanations", json=body).json()["id"]
        wait_for(lambda: float(client.get(f"/v1/jobs/{job}").json()["progress"]) > 0.05, 120,
                 "progress")
        # SIGKILL the pool process of w1 that is running a chunk
        pool = children(procs["w1"].p.pid)
        assert pool, "the worker has a pool process"
        for pid in pool:
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 300
        st: dict[str, object] = {}
        while time.monotonic() < deadline:
            st = client.get(f"/v1/jobs/{job}").json()
            if st["state"] in ("succeeded", "failed", "cancelled"):
                break
            time.sleep(0.3)
        assert st["state"] == "succeeded", st
        assert st["model_calls"] == 2 + 18 * 18
    # the killed process was running a chunk, which Celery re-queued (acks late,
    # reject on worker lost) and a worker ran again
    log = procs["w1"].log.read_text(errors="replace")
    assert "WorkerLostError" in log and "SIGKILL" in log, log[-2000:]
