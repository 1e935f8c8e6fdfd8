"""Sync answers batched across requests (LANTERN_SYNC_BATCH_WINDOW_MS), through the app:
concurrent Grad-CAM (and saliency, CAM, activation maps, Grad-CAM++, gradient × input)
requests answer what the same
requests answer one by one with batching off, and share batches; a refused request among
them gets its own error."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from lantern.settings import Settings
from lantern_testing.batching import (
    CLASSES,
    SIZE,
    count_batches,
    hold_first_batch,
    two_conv_classifier,
)
from lantern_testing.images import b64, png_bytes
from lantern_testing.models import manifest
from service.app import create_app
from service.state import ServiceState

N = 8


def app_client(data: Path, window_ms: float, forward_batch: int = 8) -> TestClient:
    settings = Settings(
        data_dir=data, builtin_model=False, sync_batch_window_ms=window_ms,
        forward_batch=forward_batch,
    )
    client = TestClient(create_app(settings))
    return client


def register(client: TestClient) -> None:
    r = client.post(
        "/v1/models",
        files={"file": ("m.onnx", two_conv_classifier().SerializeToString(), "application/x")},
        data={"manifest": json.dumps(manifest("two", SIZE, CLASSES))},
    )
    assert r.status_code == 201, r.text


@pytest.fixture(scope="module")
def clients(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, TestClient]]:
    """(batching off, batching on with a 1 s window, the most allowed): two apps, the
    same model (a lone call never waits for the window: an idle lane runs it at once)."""
    with (
        app_client(tmp_path_factory.mktemp("off"), 0.0) as off,
        app_client(tmp_path_factory.mktemp("on"), 1000.0) as on,
    ):
        register(off)
        register(on)
        yield off, on


def pngs(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [b64(png_bytes(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8))) for _ in range(n)]


def body(method: str, image: str, target: Any, params: dict[str, Any]) -> dict[str, Any]:
    return {"model": "two", "method": method, "image": image, "target": target,
            "params": params, "outputs": ["values"]}


def state_of(client: TestClient) -> ServiceState:
    state: ServiceState = client.app.state.lantern  # type: ignore[attr-defined]
    return state


def concurrently(client: TestClient, bodies: list[dict[str, Any]]) -> list[Any]:
    """POST every body ?wait at once, from a thread each; the responses in order."""
    out: list[Any] = [None] * len(bodies)
    start = threading.Barrier(len(bodies))

    def post(i: int) -> None:
        start.wait()
        out[i] = client.post("/v1/explanations?wait=30", json=bodies[i])

    threads = [threading.Thread(target=post, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return out


@pytest.mark.parametrize(
    ("method", "params", "seed"),
    [
        ("grad_cam", {}, 1),
        ("grad_cam", {"layer": "act1", "score": "probability"}, 2),
        ("saliency", {"reduce": "signed"}, 3),
        ("cam", {}, 4),
        ("activation_maps", {"top_k": 3}, 5),
        ("grad_cam_plus_plus", {}, 6),
        ("gradient_x_input", {"reduce": "signed"}, 7),
    ],
)
def test_concurrent_sync_requests_answer_as_sequential_ones(
    clients: tuple[TestClient, TestClient],
    method: str,
    params: dict[str, Any],
    seed: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    off, on = clients
    images = pngs(N, seed)
    bodies = [body(method, img, i % len(CLASSES), params) for i, img in enumerate(images)]
    sequential = []
    for b in bodies:
        r = off.post("/v1/explanations?wait=30", json=b)
        assert r.status_code == 200, r.text
        sequential.append(r.json())
    assert "explain" not in state_of(off).batchers  # off: the one-by-one path
    found = state_of(on).batchers.get("explain")
    before = (0, 0) if found is None else (found.stats.batches, found.stats.calls)
    # the first batch of a model measures its best batch (1 call per batch until then);
    # N - 1: after the first request (alone: an idle lane), the rest fill one batch
    state_of(on).batch_limits["two"] = N - 1
    # the batch of every forward (probe) or VJP run; the first batch holds the lane until
    # all N have arrived, so the rest meet in one batch on a loaded host too
    hold = hold_first_batch(lambda: state_of(on).batchers["explain"], before[1], N)
    sizes = count_batches(monkeypatch, before=hold)
    answers = concurrently(on, bodies)
    monkeypatch.undo()
    batcher = state_of(on).batchers["explain"]
    for r, s in zip(answers, sequential, strict=True):
        assert r.status_code == 200, r.text
        got = r.json()
        np.testing.assert_allclose(
            got["attribution"]["values"], s["attribution"]["values"], rtol=1e-5, atol=1e-6
        )
        assert got["target"] == s["target"]
        assert got["cost"] == s["cost"]
    batches = batcher.stats.batches - before[0]
    calls = batcher.stats.calls - before[1]
    assert calls == N
    # what had arrived when the idle lane took its first batch (one call, or a few on a
    # loaded host), then — held until all had arrived — the rest, together
    assert batches == 2
    assert len(sizes) == 2 and sum(sizes) == N  # one pass over each batch's stacked inputs


def test_a_refused_request_in_a_batch_fails_alone(
    clients: tuple[TestClient, TestClient],
) -> None:
    _, on = clients
    state_of(on).batch_limits["two"] = N - 1
    images = pngs(6, 9)
    bodies = [body("grad_cam", img, i % len(CLASSES), {}) for i, img in enumerate(images)]
    bodies[2]["target"] = 17  # no such class: refused at submit, inside the batch
    bodies[4]["image"] = b64(b"not an image")
    answers = concurrently(on, bodies)
    assert [r.status_code for r in answers] == [200, 200, 422, 200, 422, 200]
    assert answers[2].json()["code"] != answers[4].json()["code"]
    for i in (0, 1, 3, 5):
        assert len(answers[i].json()["attribution"]["values"]) == SIZE


def test_a_lone_request_is_answered_by_the_batched_lane(
    clients: tuple[TestClient, TestClient],
) -> None:
    _, on = clients
    r = on.post("/v1/explanations?wait=30", json=body("grad_cam", pngs(1, 11)[0], 2, {}))
    assert r.status_code == 200, r.text
    assert r.json()["target"]["index"] == 2


def predict_concurrently(client: TestClient, images: list[str]) -> list[Any]:
    out: list[Any] = [None] * len(images)
    start = threading.Barrier(len(images))

    def post(i: int) -> None:
        start.wait()
        out[i] = client.post("/v1/models/two/predict", json={"image": images[i], "top_k": 4})

    threads = [threading.Thread(target=post, args=(i,)) for i in range(len(images))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return out


def test_concurrent_predicts_answer_as_sequential_ones(
    clients: tuple[TestClient, TestClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    off, on = clients
    images = pngs(N, 21)
    images[5] = b64(b"not an image")
    sequential = [
        off.post("/v1/models/two/predict", json={"image": img, "top_k": 4}) for img in images
    ]
    state_of(on).batch_limits["two"] = N - 1
    # all N reach the batcher (the image that is not one fails its decoding there)
    found = state_of(on).batchers.get("predict")
    hold = hold_first_batch(
        lambda: state_of(on).batchers["predict"], 0 if found is None else found.stats.calls, N
    )
    sizes = count_batches(monkeypatch, ("run",), before=hold)
    answers = predict_concurrently(on, images)
    monkeypatch.undo()
    for i, (r, s) in enumerate(zip(answers, sequential, strict=True)):
        assert r.status_code == s.status_code, r.text
        if i == 5:
            assert r.status_code == 422 and r.json()["code"] == s.json()["code"]
            continue
        got, want = r.json()["predictions"], s.json()["predictions"]
        assert [p["index"] for p in got] == [p["index"] for p in want]
        np.testing.assert_allclose([p["score"] for p in got], [p["score"] for p in want],
                                   rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose([p["logit"] for p in got], [p["logit"] for p in want],
                                   rtol=1e-5, atol=1e-5)
    # one forward over each of two batches (the image that is not one never reaches it)
    assert len(sizes) == 2 and sum(sizes) == N - 1


def test_the_best_batch_is_measured_or_the_operators(
    clients: tuple[TestClient, TestClient], tmp_path: Path
) -> None:
    """Measured: a batch size the model was timed at (1: no gain from batching); with
    LANTERN_FORWARD_BATCH (here 8) that batch, whatever the timings."""
    from service.routers.explanations import best_batch

    _, on = clients
    state = state_of(on)
    model = state.rt.load("two")
    assert best_batch(state, model) == 8  # the fixture's LANTERN_FORWARD_BATCH
    with app_client(tmp_path, 5.0, forward_batch=0) as c:
        register(c)
        measured = state_of(c)
        assert best_batch(measured, measured.rt.load("two")) in (1, 4, 8, 16)


def test_a_model_that_gains_nothing_from_batches_takes_the_plain_lane(tmp_path: Path) -> None:
    """Batching on, but the model measured at 1 (no faster per image in batches, as on a
    2-core CPU): concurrent requests never pass through the batcher."""
    with app_client(tmp_path, 50.0, forward_batch=0) as c:
        register(c)
        state_of(c).batch_limits["two"] = 1
        bodies = [body("grad_cam", img, i % len(CLASSES), {}) for i, img in enumerate(pngs(4, 31))]
        answers = concurrently(c, bodies)
        assert [r.status_code for r in answers] == [200] * 4
        assert "explain" not in state_of(c).batchers
        r = c.post("/v1/models/two/predict", json={"image": pngs(1, 32)[0]})
        assert r.status_code == 200 and "predict" not in state_of(c).batchers
