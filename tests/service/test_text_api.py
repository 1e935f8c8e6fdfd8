"""Text models over the API: the built-in sentiment model, an uploaded skl2onnx pipeline,
the methods' modalities, refusals with codes, highlighted text renderings."""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from engine.models.zoo.sentiment_tfidf import text_pipeline_onnx

TRAIN = ["good film", "bad film", "great fun", "awful bore", "good great", "bad awful"]
Y = [1, 0, 1, 0, 1, 0]


@pytest.fixture(scope="module")
def text_model(client: TestClient) -> str:
    data, _ = text_pipeline_onnx(TRAIN, Y, raw_scores=True, norm=None)
    manifest = {
        "name": "tiny-text",
        "modality": "text",
        "labels": ["neg", "pos"],
        "scores": "logits",
        "max_chars": 200,
    }
    r = client.post(
        "/v1/models",
        files={"file": ("m.onnx", data, "application/octet-stream")},
        data={"manifest": json.dumps(manifest)},
    )
    assert r.status_code == 201, r.text
    info = r.json()
    assert info["manifest"]["modality"] == "text" and info["output"] == "probabilities"
    return "tiny-text"


def explain(client: TestClient, model: str, method: str, text: Any, **kw: Any) -> Any:
    return client.post(
        "/v1/explanations?wait=30",
        json={"model": model, "method": method, "input": {"modality": "text", "text": text}, **kw},
    )


def test_builtin_text_model_is_listed(client: TestClient) -> None:
    info = client.get("/v1/models/sentiment-tfidf").json()
    assert info["builtin"] and info["manifest"]["modality"] == "text"
    assert info["output"] == "probabilities"
    assert "held-out accuracy 0.9" in info["manifest"]["description"]


def test_methods_list_their_modalities(client: TestClient) -> None:
    methods = client.get("/v1/methods").json()
    rows = methods["methods"] if isinstance(methods, dict) else methods
    text = sorted({m["name"] for m in rows if "text" in m.get("modalities", [])})
    assert text == ["kernel_shap", "lime", "occlusion"]
    grad = [m for m in rows if m["name"] == "grad_cam"]
    assert grad and grad[0]["modalities"] == ["image"]


@pytest.mark.parametrize("method", ["occlusion", "kernel_shap", "lime"])
def test_builtin_model_finds_the_planted_words(client: TestClient, method: str) -> None:
    r = explain(
        client,
        "sentiment-tfidf",
        method,
        "the film was wonderful and the music superb",
        target="positive",
        params={"num_samples": 300} if method != "occlusion" else {},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    extras = body["extras"]
    assert set(extras["top_positive"][:2]) == {"wonderful", "superb"}, extras
    assert body["target"]["label"] == "positive"
    arts = {a["name"]: a for a in body["artifacts"]}
    assert arts["attribution"]["axes"] == ["word"]
    assert arts["attribution"]["meta"]["feature_names"][:3] == ["the", "film", "was"]
    assert "html" in arts["attribution"]["links"]
    if method == "kernel_shap":
        assert abs(extras["sum_check"]) < 1e-3


def test_renderings_of_word_attributions(client: TestClient, text_model: str) -> None:
    r = explain(client, text_model, "occlusion", "good & great, not bad!", target="pos")
    assert r.status_code == 200, r.text
    job = r.json()["job"]
    data = client.get(f"/v1/jobs/{job}/artifacts/attribution?format=json").json()
    assert data["meta"]["feature_names"] == ["good", "great", "not", "bad"]
    values = np.asarray(data["data"]["values"])
    assert values[0] > 0 and values[1] > 0 and values[3] < 0 and values[2] == 0
    html = client.get(f"/v1/jobs/{job}/artifacts/attribution?format=html")
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    assert html.text.count('class="lantern-word"') == 4 and "&amp;" not in html.text
    png = client.get(f"/v1/jobs/{job}/artifacts/attribution?format=png")
    img = Image.open(io.BytesIO(png.content))
    assert png.status_code == 200 and img.size[0] == 760
    words = client.get(f"/v1/jobs/{job}/artifacts/words?format=json").json()
    assert words["data"]["columns"] == ["feature", "word", "start", "end", "weight"]
    assert [row[2:4] for row in words["data"]["rows"]] == [[0, 4], [7, 12], [14, 17], [18, 21]]


def test_an_image_method_on_a_text_model_names_the_text_methods(
    client: TestClient,
    text_model: str,
) -> None:
    r = explain(client, text_model, "grad_cam", "good film")
    assert r.status_code == 422, r.text
    err = r.json()
    assert err["code"] == "unsupported_modality"
    assert err["details"]["methods"] == ["kernel_shap", "lime", "occlusion"]


@pytest.mark.parametrize(
    ("text", "status", "code"),
    [
        ("", 422, "empty_text"),
        ("x" * 201, 413, "text_too_long"),
        ("?! ... --", 422, "no_words"),
        (42, 422, None),
        (["good"], 422, None),
    ],
)
def test_bad_text_is_a_4xx_with_a_code(
    client: TestClient, text_model: str, text: Any, status: int, code: str | None
) -> None:
    r = explain(client, text_model, "occlusion", text)
    assert r.status_code == status, r.text
    err = r.json()
    assert isinstance(err.get("code"), str) and err["code"]
    if code is not None:
        assert err["code"] == code


def test_client_returns_plain_structures(client: TestClient, text_model: str) -> None:
    from lantern_client import LanternClient

    with LanternClient("http://testserver", transport=client._transport) as lantern:
        result = lantern.explain_text(
            "good film, not bad",
            text_model,
            "kernel_shap",
            target="pos",
            params={"num_samples": 100},
        )
        words = lantern.word_attributions(result.job)
        html = lantern.text_html(result.job)
    assert words.words == ["good", "film", "not", "bad"]
    assert isinstance(words.values, np.ndarray) and words.values.dtype == np.float32
    assert words.spans == [[(0, 4)], [(5, 9)], [(11, 14)], [(15, 18)]]
    assert words.ranked()[0][0] in {"good", "bad"}
    assert words.as_dict()["values"] is words.values
    assert html.count("lantern-word") == 4


def test_async_client_explains_text(client: TestClient, text_model: str) -> None:
    import asyncio

    import httpx

    from lantern_client.aio import AsyncLanternClient

    async def go() -> Any:
        transport = httpx.ASGITransport(app=client.app)
        async with AsyncLanternClient("http://testserver", transport=transport) as lantern:
            result = await lantern.explain_text("bad film", text_model, "occlusion", target="pos")
            return await lantern.word_attributions(result.job)

    words = asyncio.run(go())
    assert words.words == ["bad", "film"] and words.values[0] < 0
