"""Completion callbacks end to end, with real processes: a private redis-server, a Celery
`lantern worker` and `lantern serve` (uvicorn) with API keys, and real local receivers —
docs/CALLBACKS.md's receiver run as written there, and one that fails twice."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from jobs.callbacks import verify
from lantern_client import AsyncLanternClient, LanternAPIError, LanternClient
from lantern_testing.api import register_tiny
from lantern_testing.images import b64, png_bytes, solid
from lantern_testing.processes import LANTERN, Proc, free_port, redis_server, wait_for

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
KEY = "alice-key-0123456789"
HEADERS = {"X-API-Key": KEY}


def recipe() -> str:
    """The receiver of docs/CALLBACKS.md, verbatim (its first python block)."""
    text = (ROOT / "docs" / "CALLBACKS.md").read_text(encoding="utf-8")
    match = re.search(r"```python\n(.*?)```", text, re.S)
    assert match is not None
    return match.group(1)


class FlakyReceiver:
    """Answers 503 to the first ``fail`` POSTs, then 204; records them all."""

    def __init__(self, fail: int) -> None:
        self.calls: list[dict[str, Any]] = []
        self.fail = fail
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.calls.append({"headers": dict(self.headers), "body": body})
                self.send_response(503 if len(outer.calls) <= outer.fail else 204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/flaky"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("callbacks")
    keys = [{"name": "alice", "role": "admin", "sha256": hashlib.sha256(KEY.encode()).hexdigest()}]
    with redis_server(root / "redis") as url:
        env = {
            **os.environ,
            "LANTERN_REDIS_URL": url,
            "LANTERN_DATA_DIR": str(root / "data"),
            "LANTERN_ORT_THREADS": "1",
            "LANTERN_BUILTIN_MODEL": "false",
            "LANTERN_API_KEYS": json.dumps(keys),
            "LANTERN_CALLBACK_HOSTS": json.dumps(["127.0.0.1"]),
            "LANTERN_CALLBACK_SECRET": "server-secret-0123456789",
            "LANTERN_CALLBACK_BACKOFF_S": "0.2",
            "LANTERN_CALLBACK_POLL_S": "0.05",
        }
        worker = Proc([*LANTERN, "worker", "--concurrency", "1"], env, root / "worker.log")
        port = free_port()
        api = Proc([*LANTERN, "serve", "--port", str(port)], env, root / "api.log")
        base = f"http://127.0.0.1:{port}"
        procs = {"worker": worker, "api": api}
        try:
            wait_for(lambda: httpx.get(f"{base}/readyz").status_code == 200, 120, "the API")
            wait_for(lambda: b"ready" in (root / "worker.log").read_bytes(), 120, "the worker")
            with httpx.Client(base_url=base, headers=HEADERS, timeout=60) as client:
                register_tiny(client)  # type: ignore[arg-type]
                yield {"client": client, "root": root, "env": env}
        except Exception:
            for name, p in procs.items():
                print(f"--- {name} log ---\n{p.tail()}")
            raise
        finally:
            for p in procs.values():
                p.stop()


def submit(client: httpx.Client, callback_url: str, colour: tuple[int, int, int]) -> str:
    r = client.post("/v1/explanations", json={
        "model": "tiny", "method": "occlusion", "image": b64(png_bytes(solid(8, colour))),
        "params": {"window": 2, "stride": 2}, "callback_url": callback_url})
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


def test_delivered_to_the_documented_receiver_which_verifies_it(
    stack: dict[str, Any],
) -> None:
    client: httpx.Client = stack["client"]
    secret = client.get("/v1/keys/me/callback-secret").json()
    assert secret["key"] == "alice"
    port = free_port()
    log = stack["root"] / "recipe.log"
    env = {**os.environ, "CALLBACK_SECRET": secret["secret"], "PORT": str(port)}
    receiver = Proc([sys.executable, "-c", recipe()], env, log)
    try:
        hook = f"http://127.0.0.1:{port}/hook"
        wait_for(lambda: httpx.post(hook, content=b"{}", headers={
            "X-Lantern-Signature": "t=0,v1=00", "X-Lantern-Delivery": "x:0"}).status_code == 401,
            30, "the recipe receiver (refusing a forged signature)")
        job = submit(client, hook, (250, 0, 0))
        def delivered() -> list[str]:  # the receiver's prints (its access log goes beside)
            return [x for x in log.read_text().splitlines() if x.startswith("{")]

        wait_for(delivered, 120, "the callback")
        (line,) = delivered()
        body = json.loads(line)
        assert body["id"] == job and body["state"] == "succeeded" and body["attempt"] == 1
        assert body["links"]["result"] == f"/v1/jobs/{job}/result?format=json"
        status = client.get(f"/v1/jobs/{job}").json()
        assert body["timings"] == status["timings"]
        assert body["model_calls"] == status["model_calls"] > 0
    finally:
        receiver.stop()


def test_retried_after_the_receiver_fails_twice(stack: dict[str, Any]) -> None:
    client: httpx.Client = stack["client"]
    secret = client.get("/v1/keys/me/callback-secret").json()["secret"]
    recv = FlakyReceiver(fail=2)
    try:
        job = submit(client, recv.url, (0, 250, 0))
        wait_for(lambda: len(recv.calls) >= 3, 120, "three tries")
        assert len(recv.calls) == 3
        assert {c["headers"]["X-Lantern-Delivery"] for c in recv.calls} == {f"{job}:1"}
        assert len({c["body"] for c in recv.calls}) == 1
        for c in recv.calls:
            assert verify(secret, c["body"], c["headers"]["X-Lantern-Signature"], time.time())
        assert json.loads(recv.calls[0]["body"])["state"] == "succeeded"
    finally:
        recv.close()


def test_the_python_clients_pass_a_callback_url(stack: dict[str, Any]) -> None:
    """LanternClient.submit and AsyncLanternClient.explain send ``callback_url`` (multipart
    field): each job's status reaches the receiver, signed; a refused host is the API's 422."""
    base = str(stack["client"].base_url)
    recv = FlakyReceiver(fail=0)
    try:
        with LanternClient(base, api_key=KEY) as lc:
            secret = lc.callback_secret()
            status = lc.submit(png_bytes(solid(8, (0, 0, 250))), "tiny", "occlusion",
                               params={"window": 2, "stride": 2}, callback_url=recv.url)
            with pytest.raises(LanternAPIError) as refused:
                lc.submit(png_bytes(solid(8, (9, 9, 9))), "tiny", "occlusion",
                          params={"window": 2, "stride": 2},
                          callback_url="http://192.168.1.10/hook")
            assert refused.value.code == "callback_not_allowed"

        async def via_async() -> str:
            async with AsyncLanternClient(base, api_key=KEY) as ac:
                result = await ac.explain(png_bytes(solid(8, (250, 250, 0))), "tiny",
                                          "occlusion", params={"window": 2, "stride": 2},
                                          callback_url=recv.url, timeout=120)
                assert await ac.callback_secret() == secret
                return result.job

        other = asyncio.run(via_async())
        wait_for(lambda: len(recv.calls) >= 2, 120, "both callbacks")
        bodies = {json.loads(c["body"])["id"]: c for c in recv.calls}
        assert set(bodies) == {status.id, other}
        for c in bodies.values():
            assert verify(secret, c["body"], c["headers"]["X-Lantern-Signature"], time.time())
            assert json.loads(c["body"])["state"] == "succeeded"
    finally:
        recv.close()


def test_a_host_the_operator_has_not_allowed_is_refused(stack: dict[str, Any]) -> None:
    client: httpx.Client = stack["client"]
    for url, why in [
        ("http://192.168.1.10:8080/hook", "not in LANTERN_CALLBACK_HOSTS"),
        ("http://169.254.169.254/latest/meta-data/", "not in LANTERN_CALLBACK_HOSTS"),
        ("http://metadata.example.com/", "not in LANTERN_CALLBACK_HOSTS"),
        ("file:///etc/passwd", "http or https"),
    ]:
        r = client.post("/v1/explanations", json={
            "model": "tiny", "method": "occlusion", "image": b64(png_bytes(solid(8, (1, 2, 3)))),
            "params": {"window": 2, "stride": 2}, "callback_url": url})
        assert r.status_code == 422, r.text
        err = r.json()
        assert err["code"] == "callback_not_allowed" and why in err["message"], err
    # nothing was stored for a refused request: the same request without the URL is new
    r = client.post("/v1/explanations", json={
        "model": "tiny", "method": "occlusion", "image": b64(png_bytes(solid(8, (1, 2, 3)))),
        "params": {"window": 2, "stride": 2}})
    assert r.status_code == 202, r.text


def test_a_pending_callback_survives_an_api_restart(tmp_path: Path) -> None:
    """A cancelled job's callback, refused while the only API runs, is delivered by the
    next API process (from the delivery recorded in Redis): nothing accepted is lost."""
    recv = FlakyReceiver(fail=10**6)
    with redis_server(tmp_path / "redis") as url:
        env = {
            **os.environ,
            "LANTERN_REDIS_URL": url,
            "LANTERN_DATA_DIR": str(tmp_path / "data"),
            "LANTERN_BUILTIN_MODEL": "false",
            "LANTERN_QUEUE": "no-worker-here",  # the job stays queued until cancelled
            "LANTERN_CALLBACK_HOSTS": json.dumps(["127.0.0.1"]),
            "LANTERN_CALLBACK_SECRET": "server-secret-0123456789",
            "LANTERN_CALLBACK_BACKOFF_S": "0.1",
            "LANTERN_CALLBACK_MAX_BACKOFF_S": "0.2",
        }

        def serve(name: str) -> tuple[Proc, str]:
            port = free_port()
            proc = Proc([*LANTERN, "serve", "--port", str(port)], env, tmp_path / f"{name}.log")
            base = f"http://127.0.0.1:{port}"
            wait_for(lambda: httpx.get(f"{base}/readyz").status_code == 200, 120, name)
            return proc, base

        first, base = serve("api1")
        try:
            with httpx.Client(base_url=base, timeout=60) as client:
                register_tiny(client)  # type: ignore[arg-type]
                job = submit(client, recv.url, (9, 9, 9))
                r = client.delete(f"/v1/jobs/{job}")
                assert r.status_code == 200 and r.json()["state"] == "cancelled", r.text
                wait_for(lambda: len(recv.calls) >= 2, 60, "refused tries")
        finally:
            first.stop()
        tries_before = len(recv.calls)
        recv.fail = 0  # the receiver is fixed while no API runs
        second, _ = serve("api2")
        try:
            wait_for(lambda: len(recv.calls) > tries_before, 60, "the delivery after restart")
            last = recv.calls[-1]
            assert last["headers"]["X-Lantern-Delivery"] == f"{job}:0"
            assert json.loads(last["body"])["state"] == "cancelled"
            assert len({c["body"] for c in recv.calls}) == 1
        finally:
            second.stop()
            recv.close()
