"""Redis going away and coming back: 503 with Retry-After meanwhile, recovery without
restarting the API, and with appendonly (as in the compose file) 50 queued jobs survive a
Redis restart and all complete."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import pytest

from lantern_testing.images import b64, chelsea_png
from lantern_testing.processes import LANTERN, Proc, RedisServer, free_port, wait_for

pytestmark = pytest.mark.e2e


def test_jobs_survive_a_redis_restart(tmp_path: Path) -> None:
    redis = RedisServer(tmp_path / "redis", appendonly=True)
    redis.start()
    env = {
        **os.environ,
        "LANTERN_REDIS_URL": redis.url,
        "LANTERN_DATA_DIR": str(tmp_path / "data"),
        "LANTERN_ORT_THREADS": "1",
    }
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    procs = [Proc([*LANTERN, "serve", "--port", str(port)], env, tmp_path / "api.log")]
    try:
        wait_for(lambda: httpx.get(f"{base}/readyz").status_code == 200, 120, "the API")
        image = b64(chelsea_png())
        with httpx.Client(base_url=base, timeout=60) as client:
            jobs = []
            for target in range(50):  # no worker yet: all 50 stay queued in Redis
                r = client.post("/v1/explanations", json={
                    "model": "efficientnet-lite0", "method": "occlusion", "image": image,
                    "target": target, "params": {"window": 112, "stride": 112}})
                assert r.status_code == 202, r.text
                jobs.append(r.json()["id"])
            assert len(set(jobs)) == 50

            redis.stop()
            r = client.post("/v1/explanations", json={
                "model": "efficientnet-lite0", "method": "occlusion", "image": image,
                "target": 999, "params": {"window": 112, "stride": 112}})
            assert r.status_code == 503, r.text
            assert r.json()["code"] == "backend_unavailable"
            assert int(r.headers["retry-after"]) > 0
            assert client.get(f"/v1/jobs/{jobs[0]}").status_code == 503
            assert client.get("/readyz").status_code == 503

            redis.start()  # same port, same append-only file; the API is not restarted
            wait_for(lambda: client.get("/readyz").status_code == 200, 30, "recovery")
            assert client.get(f"/v1/jobs/{jobs[0]}").json()["state"] == "queued"

            procs.append(Proc([*LANTERN, "worker", "--concurrency", "2"], env,
                              tmp_path / "worker.log"))
            deadline = time.monotonic() + 300
            pending = set(jobs)
            while pending and time.monotonic() < deadline:
                for job in list(pending):
                    if client.get(f"/v1/jobs/{job}").json()["state"] == "succeeded":
                        pending.discard(job)
                time.sleep(0.5)
            assert not pending, f"{len(pending)} of 50 jobs did not complete"
    except Exception:
        for p in procs:
            print(f"--- {p.log.name} ---\n{p.tail()}")
        raise
    finally:
        for p in procs:
            p.stop()
        redis.stop()
