"""A model whose forward passes run on a remote Open Inference Protocol server: a real one —
another Lantern (uvicorn, embedded) serving the same graph at /v2/models/{name}/infer —
reached directly or through a real local proxy that fails on purpose.

Occlusion, LIME and the prediction through the remote give the local answers exactly;
batches go ``batch`` items per request with at most ``concurrency`` in flight; a 503 is
retried with backoff, a refusal is a typed error (502 predictor_failed), and a server that
never answers fails after the configured tries."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnx
import pytest

from api_schemas.models import ModelManifest
from engine.errors import LanternError
from engine.methods.base import no_progress
from engine.methods.registry import get_method
from engine.modalities.image import ImageInput
from engine.models.remote import PredictorFailed
from engine.models.runtime import LoadedModel, RuntimeOptions
from engine.objectives import ClassScore
from lantern_testing.models import conv_classifier, manifest
from lantern_testing.processes import embedded_api, free_port

SIZE = 16


@pytest.fixture(scope="module")
def graph() -> onnx.ModelProto:
    return conv_classifier(SIZE, SIZE, 3)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, graph: onnx.ModelProto) -> Iterator[str]:
    """A real Lantern serving the graph as "conv" (its OIP infer endpoint is the remote)."""
    with embedded_api(tmp_path_factory.mktemp("remote"), LANTERN_BUILTIN_MODEL="false") as base:
        r = httpx.post(f"{base}/v1/models", files={"file": ("c.onnx", graph.SerializeToString())},
                       data={"manifest": json.dumps(manifest("conv", SIZE, ["a", "b", "c"]))},
                       timeout=60)
        assert r.status_code == 201, r.text
        yield base


class Proxy:
    """A real HTTP proxy in front of the server: fails the first ``fail`` requests with
    ``status``, counts requests and the most in flight at once."""

    def __init__(self, target: str, fail: int = 0, status: int = 503, delay: float = 0.0
                 ) -> None:
        self.target, self.fail, self.status, self.delay = target, fail, status, delay
        self.requests = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.sizes: list[int] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with proxy._lock:
                    proxy.requests += 1
                    n = proxy.requests
                    proxy.in_flight += 1
                    proxy.max_in_flight = max(proxy.max_in_flight, proxy.in_flight)
                status, headers, content = proxy.status, {}, b""
                try:
                    time.sleep(proxy.delay)
                    if n > proxy.fail:
                        header = self.headers.get("Inference-Header-Content-Length")
                        shape = json.loads(body[: int(header)] if header else body)["inputs"][
                            0]["shape"]
                        proxy.sizes.append(int(shape[0]))
                        r = httpx.post(proxy.target + self.path, content=body, headers={
                            k: v for k, v in self.headers.items()
                            if k.lower() in ("content-type", "inference-header-content-length")})
                        status, content = r.status_code, r.content
                        headers = {k: r.headers[k] for k in
                                   ("content-type", "inference-header-content-length")
                                   if k in r.headers}
                finally:  # done before the answer leaves: the client may send the next
                    with proxy._lock:
                        proxy.in_flight -= 1
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

        self.port = free_port()
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def load(tmp_path: Path, graph: onnx.ModelProto, predictor: dict[str, Any] | None
         ) -> LoadedModel:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "c.onnx"
    onnx.save(graph, path)
    m = manifest("conv", SIZE, ["a", "b", "c"])
    if predictor is not None:
        m["predictor"] = {"model": "conv", **predictor}
    return LoadedModel("conv", "v", path, ModelManifest.model_validate(m),
                       RuntimeOptions(max_batch=8))


def picture() -> ImageInput:
    return ImageInput(np.random.default_rng(3).uniform(0, 255, (SIZE, SIZE, 3)).astype(
        np.float32))


def explain(model: LoadedModel, method: str, **params: Any) -> Any:
    spec = get_method(method, "image")
    return spec.fn(model, picture(), ClassScore(1), spec.parse_params(params), no_progress)


def test_occlusion_and_lime_through_the_remote_are_the_local_answers(
        tmp_path: Path, graph: onnx.ModelProto, server: str) -> None:
    local = load(tmp_path / "l", graph, None)
    proxy = Proxy(server)
    try:
        remote = load(tmp_path / "r", graph, {"url": proxy.url, "batch": 5, "concurrency": 3})
        assert remote.remote is not None
        for method, params in (("occlusion", {"window": 4, "stride": 4}),
                               ("lime", {"num_samples": 64, "seed": 1})):
            want = explain(local, method, **params)
            got = explain(remote, method, **params)
            np.testing.assert_allclose(got.values, want.values, rtol=1e-5, atol=1e-6)
        x = local.codec.item_input(picture())
        np.testing.assert_allclose(remote.run(np.repeat(x, 12, axis=0)),
                                   local.run(np.repeat(x, 12, axis=0)), rtol=1e-6)
        assert proxy.requests == remote.remote.requests > 0
        assert max(proxy.sizes) <= 5 and 1 <= proxy.max_in_flight <= 3
    finally:
        proxy.close()


def test_concurrency_is_bounded(tmp_path: Path, graph: onnx.ModelProto, server: str) -> None:
    proxy = Proxy(server, delay=0.05)
    try:
        remote = load(tmp_path, graph, {"url": proxy.url, "batch": 1, "concurrency": 2})
        x = np.repeat(remote.codec.item_input(picture()), 8, axis=0)
        remote.run(x)
        assert proxy.requests == 8 and proxy.sizes == [1] * 8
        assert proxy.max_in_flight == 2
    finally:
        proxy.close()


def test_a_503_is_retried_until_it_answers(tmp_path: Path, graph: onnx.ModelProto,
                                           server: str) -> None:
    proxy = Proxy(server, fail=2, status=503)
    try:
        remote = load(tmp_path, graph, {"url": proxy.url, "retries": 3})
        local = load(tmp_path / "l", graph, None)
        x = remote.codec.item_input(picture())
        np.testing.assert_allclose(remote.run(x), local.run(x), rtol=1e-6)
        assert proxy.requests == 3 and remote.remote is not None and remote.remote.retried == 2
    finally:
        proxy.close()


def test_refusals_and_silence_are_typed_errors(tmp_path: Path, graph: onnx.ModelProto,
                                               server: str) -> None:
    x = load(tmp_path / "l", graph, None).codec.item_input(picture())
    wrong = load(tmp_path / "w", graph, {"url": server, "model": "no-such-model"})
    with pytest.raises(PredictorFailed) as e:
        wrong.run(x)
    assert isinstance(e.value, LanternError) and e.value.status == 502
    assert e.value.code == "predictor_failed" and "404" in e.value.message
    proxy = Proxy(server, fail=100, status=503)
    try:
        down = load(tmp_path / "d", graph, {"url": proxy.url, "retries": 2})
        with pytest.raises(PredictorFailed, match="after 3 tries"):
            down.run(x)
        assert proxy.requests == 3
    finally:
        proxy.close()
    nobody = load(tmp_path / "n", graph, {"url": f"http://127.0.0.1:{free_port()}",
                                          "retries": 1})
    with pytest.raises(PredictorFailed, match="ConnectError"):
        nobody.run(x)


def test_a_manifest_refuses_a_bad_predictor() -> None:
    base = manifest("conv", SIZE, ["a", "b", "c"])
    for bad in ({"url": "ftp://x"}, {"url": "http://x", "batch": 0},
                {"url": "http://x", "extra": 1}):
        with pytest.raises(ValueError):
            ModelManifest.model_validate({**base, "predictor": bad})
