"""Series models over the API: the built-in gunpoint-cnn, an uploaded planted-spike CNN,
inputs as JSON arrays and .npy uploads, refusals with codes, methods by modality, the
series plot PNG."""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from lantern_testing.series import spike_cnn, spiky_series

T = 64
SPIKE = 40


@pytest.fixture(scope="module")
def spike_model(client: TestClient) -> str:
    manifest = {"name": "spike-1d", "modality": "time_series", "labels": ["spike", "flat"],
                "channels": 1, "length": T, "layout": "NCT"}
    r = client.post(
        "/v1/models",
        files={"file": ("m.onnx", spike_cnn(T).SerializeToString(), "application/octet-stream")},
        data={"manifest": json.dumps(manifest)},
    )
    assert r.status_code == 201, r.text
    return "spike-1d"


def explain(client: TestClient, model: str, method: str, values: Any, **kw: Any) -> Any:
    return client.post(
        "/v1/explanations?wait=60",
        json={"model": model, "method": method,
              "input": {"modality": "time_series", "values": values}, **kw},
    )


def test_the_built_in_series_model_is_listed(client: TestClient) -> None:
    info = client.get("/v1/models/gunpoint-cnn").json()
    assert info["builtin"] and info["manifest"]["modality"] == "time_series"
    assert info["manifest"]["length"] == 150
    assert "held-out accuracy" in info["manifest"]["description"]


def test_methods_list_their_modalities(client: TestClient) -> None:
    methods = client.get("/v1/methods").json()
    items = methods if isinstance(methods, list) else methods.get("methods", methods)
    series = {m["name"] for m in items if "time_series" in m.get("modalities", [])}
    assert {"grad_cam", "occlusion", "lime", "integrated_gradients", "saliency"} <= series


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("grad_cam", {}),
        ("saliency", {}),
        ("occlusion", {"window": 5, "stride": 1}),
        ("integrated_gradients", {"steps": 32}),
    ],
)
def test_methods_find_the_planted_spike(
    client: TestClient, spike_model: str, method: str, params: dict[str, Any]
) -> None:
    values = spiky_series(T, SPIKE)[0].tolist()
    r = explain(client, spike_model, method, values, target=0, params=params)
    assert r.status_code == 200, r.text
    job = r.json()["job"]
    att = client.get(f"/v1/jobs/{job}/artifacts/attribution?format=json").json()
    assert att["axes"][-1] == "time"
    v = np.abs(np.asarray(att["data"]["values"], np.float64)).reshape(-1, T).max(axis=0)
    assert abs(int(np.argmax(v)) - SPIKE) <= 2
    png = client.get(f"/v1/jobs/{job}/artifacts/plot?format=png")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(png.content)).size[0] > 100
    assert client.get(f"/v1/jobs/{job}/result?format=png").content == png.content


def test_an_npy_upload_is_the_same_series(client: TestClient, spike_model: str) -> None:
    x = spiky_series(T, SPIKE)
    buf = io.BytesIO()
    np.save(buf, x)
    r = client.post(
        "/v1/explanations?wait=60",
        files={"file": ("x.npy", buf.getvalue(), "application/octet-stream")},
        data={"model": spike_model, "method": "saliency", "target": "0"},
    )
    assert r.status_code == 200, r.text
    a = r.json()
    b = explain(client, spike_model, "saliency", x.tolist(), target=0).json()
    va = client.get(f"/v1/jobs/{a['job']}/artifacts/attribution?format=json").json()
    vb = client.get(f"/v1/jobs/{b['job']}/artifacts/attribution?format=json").json()
    np.testing.assert_allclose(va["data"]["values"], vb["data"]["values"], rtol=1e-6)


@pytest.mark.parametrize(
    ("values", "code", "reason"),
    [
        ([0.0] * (T - 1), "invalid_series", "wrong_length"),
        ([[0.0] * T, [0.0] * T], "invalid_series", "wrong_channels"),
        ([], "invalid_series", "empty"),
        ([[]], "invalid_series", "empty"),
        ([[0.0] * T, [0.0] * 3], "invalid_input", None),  # ragged: a list of lists check
        (["a"] * T, "invalid_input", None),  # not numbers: the body's schema refuses
    ],
)
def test_bad_series_are_4xx_with_codes(
    client: TestClient, spike_model: str, values: Any, code: str, reason: str | None
) -> None:
    r = explain(client, spike_model, "saliency", values)
    assert 400 <= r.status_code < 500, r.text
    err = r.json()
    if reason is not None:
        assert (err["code"], err["details"]["reason"]) == (code, reason), err
    else:
        assert err["code"] in ("invalid_input", "invalid_series"), err


def test_nan_and_non_numbers_are_refused(client: TestClient, spike_model: str) -> None:
    body = ('{"model": "spike-1d", "method": "saliency", "input": {"modality": "time_series", '
            '"values": [NaN, 1, 2]}}')
    r = client.post("/v1/explanations", content=body,
                    headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["code"] == "invalid_input"
    buf = io.BytesIO()
    x = spiky_series(T, SPIKE)
    x[0, 3] = np.nan
    np.save(buf, x)
    r = client.post(
        "/v1/explanations?wait=30",
        files={"file": ("x.npy", buf.getvalue(), "application/octet-stream")},
        data={"model": spike_model, "method": "saliency"},
    )
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "invalid_series"
    assert r.json()["details"]["reason"] == "non_finite"


def test_an_image_only_method_names_the_series_methods(
    client: TestClient, spike_model: str
) -> None:
    r = explain(client, spike_model, "rise", [0.0] * T)
    assert r.status_code == 422, r.text
    err = r.json()
    assert err["code"] == "unsupported_modality"
    assert {"grad_cam", "occlusion", "lime"} <= set(err["details"]["methods"])
    assert "rise" not in err["details"]["methods"]


def test_lime_on_the_built_in_model(client: TestClient) -> None:
    from engine.models.zoo.gunpoint_cnn import gunpoint

    _, _, xte, _ = gunpoint()
    r = explain(client, "gunpoint-cnn", "lime", xte[0].tolist(),
                params={"segments": 10, "num_samples": 200})
    assert r.status_code == 200, r.text
    body = r.json()
    assert {a["name"] for a in body["artifacts"]} >= {"attribution", "plot"}
    assert len(body["extras"]["segments"]) == 10
    att = client.get(f"/v1/jobs/{body['job']}/artifacts/attribution?format=json").json()
    assert att["axes"] == ["time"] and att["shape"] == [150]


def test_client_returns_plain_structures(client: TestClient, spike_model: str) -> None:
    from lantern_client import LanternClient
    from lantern_client.series import series_input

    x = spiky_series(T, SPIKE)
    with LanternClient("http://testserver", transport=client._transport) as lantern:
        result = lantern.explain_series(x, spike_model, "occlusion", target=0,
                                        params={"window": 3, "stride": 1})
        att = lantern.series_attribution(result.job)
    assert isinstance(att.values, np.ndarray) and att.values.dtype == np.float32
    assert att.values.shape == (T,) and att.axes == ["time"]
    np.testing.assert_allclose(att.series, x)
    assert att.channel_names == ["ch0"]
    assert abs(att.peak() - SPIKE) <= 2
    assert att.as_dict()["values"] is att.values
    assert series_input(x[0])["values"] == x[0].astype(np.float64).tolist()
    with pytest.raises(ValueError):
        series_input(np.zeros((1, 2, 3)))


def test_the_async_client_returns_the_same(client: TestClient, spike_model: str) -> None:
    import asyncio

    import httpx

    from lantern_client import AsyncLanternClient

    x = spiky_series(T, SPIKE)

    async def go() -> Any:
        async with AsyncLanternClient(
            "http://testserver", transport=httpx.ASGITransport(app=client.app)
        ) as lantern:
            result = await lantern.explain_series(x[0], spike_model, "saliency", target=0)
            return await lantern.series_attribution(result.job)

    att = asyncio.run(go())
    assert att.values.shape == (1, T) and att.axes == ["channel", "time"]
    assert abs(att.peak() - SPIKE) <= 2
