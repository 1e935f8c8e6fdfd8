"""A Redis-mode cluster of real processes: redis-server (append-only, fsync always), two
Celery workers and the API, for the reliability tests and bench/recovery.py."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx
import redis as redis_lib

from lantern_testing.images import b64, chelsea_png
from lantern_testing.processes import LANTERN, Proc, RedisServer, free_port, wait_for

PREFIX = "lantern"


class Cluster:
    def __init__(self, root: Path, data: Path, lease_s: float = 4.0, **env: str) -> None:
        self.root = root
        self.redis = RedisServer(root / "redis", appendonly=True)
        self.redis.start()
        self.env = {
            **os.environ,
            "LANTERN_REDIS_URL": self.redis.url,
            "LANTERN_DATA_DIR": str(data),
            "LANTERN_ORT_THREADS": "1",
            "LANTERN_LEASE_S": str(lease_s),
            "LANTERN_RECONCILE_INTERVAL_S": "0.5",
            **env,
        }
        self.workers = {name: self._worker(name) for name in ("w1", "w2")}
        port = free_port()
        self.api = Proc([*LANTERN, "serve", "--port", str(port)], self.env, root / "api.log")
        self.base = f"http://127.0.0.1:{port}"
        wait_for(lambda: httpx.get(f"{self.base}/readyz").status_code == 200, 180, "the API")
        for name in self.workers:
            wait_for(lambda n=name: b" ready." in (root / f"{n}.log").read_bytes(), 180, name)
        self.r = redis_lib.Redis.from_url(self.redis.url)
        self.client = httpx.Client(base_url=self.base, timeout=60)

    def _worker(self, name: str) -> Proc:
        return Proc(
            [*LANTERN, "worker", "--hostname", f"{name}@%h", "--concurrency", "1"],
            self.env,
            self.root / f"{name}.log",
        )

    def stop(self) -> None:
        self.client.close()
        for p in [self.api, *self.workers.values()]:
            try:
                p.stop()
            except ProcessLookupError:
                pass
        self.redis.stop()

    def logs(self) -> str:
        out = [f"--- api ---\n{self.api.tail()}"]
        out += [f"--- {n} ---\n{p.tail()}" for n, p in self.workers.items()]
        return "\n".join(out)

    # -- jobs ---------------------------------------------------------------------------
    def submit(self, target: int, **params: Any) -> str:
        r = self.client.post("/v1/explanations", json={
            "model": "efficientnet-lite0", "method": "occlusion", "image": b64(chelsea_png()),
            "target": target, "params": {"incremental": False, "batch_size": 1, **params}})
        assert r.status_code == 202, r.text
        return str(r.json()["id"])

    def field(self, job: str, name: str) -> Any:
        raw = self.r.hget(f"{PREFIX}:job:{job}", name)
        return None if raw is None else json.loads(raw)

    def state(self, job: str) -> str:
        return str(self.field(job, "state"))

    def wait_done(self, jobs: list[str], timeout: float) -> None:
        wait_for(lambda: all(self.state(j) == "succeeded" for j in jobs), timeout, "jobs")

    def holder(self, lease: str) -> str:
        """The worker (w1 or w2) whose pool process holds a lease."""
        token = self.r.get(lease)
        assert token is not None, f"no lease {lease}"
        pid = int(token.decode().split(":")[1])
        for name, p in self.workers.items():
            if os.getpgid(pid) == p.p.pid:
                return name
        raise AssertionError(f"lease {lease} held by an unknown process {pid}")
