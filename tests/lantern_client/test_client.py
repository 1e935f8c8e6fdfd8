"""The Python client (sync and async) against a real `lantern serve` (uvicorn, embedded mode)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from api_schemas import ExplanationResult, JobState, ModelManifest
from lantern_client import (
    AsyncLanternClient,
    LanternAPIError,
    LanternClient,
    LanternTimeoutError,
)
from lantern_testing.images import chelsea_png, png_bytes, solid
from lantern_testing.models import linear_classifier, manifest
from lantern_testing.processes import embedded_api

REPO = Path(__file__).resolve().parents[2]
BUILTIN = "efficientnet-lite0"


def tiny_model() -> bytes:
    """Class "left" = sum of red over the top-left quadrant of an 8x8 image."""
    w = np.zeros((2, 3, 8, 8), np.float32)
    w[0, 0, :4, :4] = 1.0
    data: bytes = linear_classifier(w).SerializeToString()
    return data


def red_corner(size: int = 32) -> np.ndarray:
    img = solid(size, (0, 0, 40))
    img[: size // 2, : size // 2, 0] = 250
    return img


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`python -m lantern.cli serve` on a free port, embedded mode, with the tiny model."""
    with embedded_api(tmp_path_factory.mktemp("client")) as base:
        with LanternClient(base) as c:
            c.upload_model(tiny_model(), manifest("tiny", 8, ["left", "other"]))
        yield base


@pytest.fixture()
def client(server: str) -> Iterator[LanternClient]:
    with LanternClient(server) as c:
        yield c


# -- models ------------------------------------------------------------------------------


def test_models_list_get_upload_delete(client: LanternClient, tmp_path: Path) -> None:
    names = {m.name for m in client.list_models()}
    assert {BUILTIN, "tiny"} <= names
    info = client.get_model("tiny")
    assert info.manifest.input_size == (8, 8) and info.manifest.labels == ["left", "other"]

    # from a path and a manifest file, and from bytes and a ModelManifest
    path = tmp_path / "m.onnx"
    path.write_bytes(tiny_model())
    mfile = tmp_path / "m.json"
    mfile.write_text(json.dumps(manifest("tiny-path", 8, ["a", "b"])))
    assert client.upload_model(path, mfile).name == "tiny-path"
    typed = ModelManifest.model_validate(manifest("tiny-typed", 8, ["a", "b"]))
    assert client.upload_model(tiny_model(), typed).name == "tiny-typed"
    assert {"tiny-path", "tiny-typed"} <= {m.name for m in client.list_models()}
    client.delete_model("tiny-path")
    client.delete_model("tiny-typed")
    assert "tiny-path" not in {m.name for m in client.list_models()}
    with pytest.raises(LanternAPIError) as e:
        client.get_model("tiny-path")
    assert e.value.status == 404 and e.value.code == "unknown_model"


def test_predict_accepts_every_image_kind(client: LanternClient, tmp_path: Path) -> None:
    arr = red_corner()
    path = tmp_path / "img.png"
    path.write_bytes(png_bytes(arr))
    for image in (arr, Image.fromarray(arr), png_bytes(arr), path, str(path)):
        r = client.predict(image, "tiny", top_k=2)
        assert r.model == "tiny"
        assert [p.label for p in r.predictions] == ["left", "other"]
        assert r.predictions[0].score > 0.99
    top = client.predict(chelsea_png(), BUILTIN, top_k=3)
    assert len(top.predictions) == 3 and top.predictions[0].index == 285


def test_bad_image_inputs_are_refused_before_sending(client: LanternClient) -> None:
    with pytest.raises(ValueError, match="uint8"):
        client.predict(np.zeros((8, 8, 3), np.float32), "tiny")
    with pytest.raises(TypeError):
        client.predict(12, "tiny")  # type: ignore[arg-type]


# -- explanations --------------------------------------------------------------------------


def test_explain_with_wait(client: LanternClient) -> None:
    seen: list[tuple[float, str]] = []
    res = client.explain(
        red_corner(),
        "tiny",
        "occlusion",
        params={"window": 2, "stride": 2},
        wait=30,
        progress=lambda p, s: seen.append((p, s)),
    )
    assert isinstance(res, ExplanationResult)
    assert res.target.label == "left" and res.target.index == 0
    assert res.attribution.shape == [8, 8] and res.attribution.values is not None
    values = np.asarray(res.attribution.values)
    assert values[:4, :4].min() > 0 and values[4:, :].max() == 0
    assert res.params["window"] == 2 and res.model_calls == 2 + 16
    assert seen[-1] == (1.0, "succeeded")


def test_explain_by_polling_reports_progress(client: LanternClient) -> None:
    seen: list[tuple[float, str]] = []
    res = client.explain(
        chelsea_png(),
        BUILTIN,
        "occlusion",
        target=281,
        params={"window": 56, "stride": 28, "batch_size": 2},
        progress=lambda p, s: seen.append((p, s)),
    )
    assert res.target.index == 281 and res.attribution.shape == [224, 224]
    values = [p for p, _ in seen]
    assert len(values) >= 2, seen
    assert values == sorted(values), seen  # never goes back
    assert values[-1] == 1.0 and seen[-1][1] == "succeeded"
    assert all(0.0 <= v <= 1.0 for v in values)

    # the result's array, images and JSON agree
    arr = client.result_array(res.job)
    assert arr.shape == (224, 224) and arr.dtype == np.float32
    full = client.result(res.job)
    assert full.attribution.values is not None
    np.testing.assert_allclose(arr, np.asarray(full.attribution.values), rtol=1e-6)
    assert client.result_image(res.job).size == (224, 224)
    overlay = client.result_image(res.job, "overlay", colormap="viridis", alpha=0.3)
    assert overlay.size == (451, 300) and overlay.mode == "RGB"


def test_submit_job_and_cancel(client: LanternClient) -> None:
    params = {"window": 8, "stride": 4, "batch_size": 1}
    st = client.submit(chelsea_png(), BUILTIN, "occlusion", 1, params)
    assert st.state in (JobState.queued, JobState.running)
    assert client.job(st.id).id == st.id
    with pytest.raises(LanternTimeoutError) as t:
        client.explain(chelsea_png(), BUILTIN, "occlusion", 1, params, poll=False)
    assert t.value.status.id == st.id  # the same request is the same job
    cancelled = client.cancel(st.id)
    assert cancelled.state == JobState.cancelled and cancelled.progress < 1.0
    with pytest.raises(LanternAPIError) as e:
        client.result_array(st.id)
    assert e.value.status == 409 and e.value.code == "job_cancelled"
    with pytest.raises(LanternAPIError) as e:
        client.wait(st.id, timeout=5)
    assert e.value.code == "job_cancelled"


def test_errors_carry_status_and_code(client: LanternClient) -> None:
    img = red_corner()
    with pytest.raises(LanternAPIError) as e:
        client.explain(img, "no-such-model", "occlusion", wait=5)
    assert e.value.status == 404 and e.value.code == "unknown_model" and e.value.message
    with pytest.raises(LanternAPIError) as e:
        client.explain(img, "tiny", "occlusion", params={"window": 0}, wait=5)
    assert e.value.status == 422 and e.value.code == "invalid_params"
    assert e.value.details["errors"][0]["loc"] == "window"
    with pytest.raises(LanternAPIError) as e:
        client.explain(img, "tiny", "occlusion", target="no-such-label", wait=5)
    assert e.value.status == 422 and e.value.code == "unknown_label"
    with pytest.raises(LanternAPIError) as e:
        client.job("0" * 32)
    assert e.value.status == 404 and e.value.code == "unknown_job"
    with pytest.raises(LanternAPIError) as e:
        client.predict(b"not an image", "tiny")
    assert e.value.status == 422 and e.value.code == "invalid_image"


def test_api_key_is_sent_as_bearer(server: str) -> None:
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization"))
        return httpx.Response(200, json={"methods": []})

    with LanternClient(server, api_key="s3cret", transport=httpx.MockTransport(handler)) as c:
        assert c.methods() == []
    assert seen == ["Bearer s3cret"]


def test_non_json_errors_become_api_errors() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, text="Bad gateway")

    with LanternClient("http://lantern.invalid", transport=httpx.MockTransport(handler)) as c:
        with pytest.raises(LanternAPIError) as e:
            c.list_models()
    assert e.value.status == 502 and e.value.code == "http_error"
    assert "Bad gateway" in e.value.message


# -- async ---------------------------------------------------------------------------------


def test_async_client(server: str) -> None:
    async def main() -> None:
        async with AsyncLanternClient(server) as c:
            assert "tiny" in {m.name for m in await c.list_models()}
            assert (await c.get_model("tiny")).manifest.labels == ["left", "other"]
            pred = await c.predict(red_corner(), "tiny", top_k=1)
            assert pred.predictions[0].label == "left"

            waited = await c.explain(
                red_corner(), "tiny", "occlusion", params={"window": 4, "stride": 2}, wait=30
            )
            assert waited.target.label == "left" and waited.attribution.shape == [8, 8]

            seen: list[float] = []
            polled = await c.explain(
                chelsea_png(),
                BUILTIN,
                "occlusion",
                target=282,
                params={"window": 56, "stride": 28, "batch_size": 2},
                progress=lambda p, s: seen.append(p),
            )
            assert polled.target.index == 282
            assert seen == sorted(seen) and seen[-1] == 1.0 and len(seen) >= 2
            arr = await c.result_array(polled.job)
            full = await c.result(polled.job)
            assert full.attribution.values is not None
            np.testing.assert_allclose(arr, np.asarray(full.attribution.values), rtol=1e-6)
            heat = await c.result_image(polled.job, "png", colormap="gray")
            assert heat.size == (224, 224)
            overlay = await c.result_image(polled.job, "overlay")
            assert overlay.size == (451, 300)

            params = {"window": 8, "stride": 4, "batch_size": 1}
            st = await c.submit(chelsea_png(), BUILTIN, "occlusion", 2, params)
            assert (await c.job(st.id)).id == st.id
            assert (await c.cancel(st.id)).state == JobState.cancelled

            with pytest.raises(LanternAPIError) as e:
                await c.explain(red_corner(), "no-such-model", "occlusion", wait=5)
            assert e.value.status == 404 and e.value.code == "unknown_model"
            with pytest.raises(LanternAPIError) as e:
                await c.explain(red_corner(), "tiny", "occlusion", params={"stride": -1})
            assert e.value.status == 422 and e.value.code == "invalid_params"

            name = "tiny-async"
            info = await c.upload_model(tiny_model(), manifest(name, 8, ["a", "b"]))
            assert info.name == name
            await c.delete_model(name)
            with pytest.raises(LanternAPIError) as e:
                await c.get_model(name)
            assert e.value.code == "unknown_model"

    asyncio.run(main())


def test_result_image_format_is_checked(client: LanternClient) -> None:
    with pytest.raises(ValueError, match="format"):
        client.result_image("x", "npy")  # type: ignore[arg-type]


def test_artifacts_and_objectives_through_the_client(client: LanternClient) -> None:
    res = client.explain(chelsea_png(), BUILTIN, "activation_maps", params={"top_k": 4},
                         wait=30)
    names = [a.name for a in res.artifacts]
    assert names == ["attribution", "grid", "channel_stats"]
    grid = client.artifact_image(res.job, "grid")
    assert grid.mode == "RGB" and grid.size[0] > 0
    pixels = client.artifact_array(res.job, "grid")
    assert pixels.dtype == np.uint8 and pixels.shape == (grid.size[1], grid.size[0], 3)
    stats = client.artifact(res.job, "channel_stats")
    assert stats["type"] == "table" and stats["data"]["columns"][0] == "channel"
    layer = next(ly.name for ly in client.get_model(BUILTIN).layers if ly.spatial)
    inner = client.explain(chelsea_png(), BUILTIN, "saliency", wait=30,
                           objective={"kind": "neuron", "layer": layer, "channel": 2})
    assert inner.objective["kind"] == "neuron" and inner.target is None
    assert client.result_array(inner.job).shape == (224, 224)


def test_the_async_client_reads_artifacts(server: str) -> None:
    async def go() -> None:
        async with AsyncLanternClient(server) as ac:
            res = await ac.explain(chelsea_png(), BUILTIN, "grad_cam", 285, wait=30)
            cam = await ac.artifact_array(res.job, "cam")
            assert cam.shape == (7, 7)
            png = await ac.artifact_image(res.job, "attribution", "overlay", alpha=0.4)
            assert png.size == (451, 300)

    asyncio.run(go())
