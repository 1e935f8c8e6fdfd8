"""Every error a caller can cause is a 4xx with a stable code and a sentence — never a 500."""

from __future__ import annotations

import io

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from lantern_testing.images import b64, png_bytes

OK_IMAGE = b64(png_bytes(np.zeros((8, 8, 3), np.uint8)))


def body(**overrides: object) -> dict[str, object]:
    return {
        "model": "tiny",
        "method": "occlusion",
        "image": OK_IMAGE,
        "target": 0,
        "params": {"window": 4},
        **overrides,
    }


def truncated_png() -> str:
    data = png_bytes(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    return b64(data[: len(data) // 2])


def bomb_png() -> str:
    img = Image.new("1", (3000, 3000))  # 9 Mpx > the test limit of 5 Mpx, tiny file
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return b64(buf.getvalue())


CASES = [
    (body(model="nope"), 404, "unknown_model"),
    (body(method="nope"), 404, "unknown_method"),
    (body(target="zebra"), 422, "unknown_label"),
    (body(target=2), 422, "invalid_target"),
    (body(params={"window": 0}), 422, "invalid_params"),
    (body(params={"window": 9}), 422, "invalid_params"),
    (body(params={"windw": 4}), 422, "invalid_params"),
    (body(params={"baseline": "purple"}), 422, "invalid_params"),
    (body(image=""), 422, "invalid_image"),
    (body(image="!!!notbase64"), 422, "invalid_input"),
    (body(image=b64(b"just text, no image")), 422, "invalid_image"),
    (body(image=truncated_png()), 422, "invalid_image"),
    (body(image=bomb_png()), 413, "image_too_large"),
    (body(outputs=["gif"]), 422, "invalid_input"),
    (body(extra=1), 422, "invalid_input"),
    ({"model": "tiny"}, 422, "invalid_input"),
]


@pytest.mark.parametrize(("payload", "status", "code"), CASES)
def test_bad_explanation_requests(
    client: TestClient, payload: dict[str, object], status: int, code: str
) -> None:
    r = client.post("/v1/explanations", json=payload)
    assert r.status_code == status, r.text
    err = r.json()
    assert err["code"] == code
    assert isinstance(err["message"], str) and len(err["message"]) > 20
    assert "details" in err


@pytest.mark.parametrize(
    ("content", "ctype", "code"),
    [
        (b"{not json", "application/json", "invalid_input"),
        (b"[1, 2]", "application/json", "invalid_input"),
        (b"hello", "text/plain", "invalid_input"),
    ],
)
def test_unparseable_bodies(client: TestClient, content: bytes, ctype: str, code: str) -> None:
    r = client.post("/v1/explanations", content=content, headers={"content-type": ctype})
    assert r.status_code == 422 and r.json()["code"] == code


def test_payload_too_large(client: TestClient) -> None:
    big = b64(b"\x00" * 2_100_000)  # over the 2 MB test limit
    r = client.post("/v1/explanations", json=body(image=big))
    assert r.status_code == 413 and r.json()["code"] == "payload_too_large"
    r = client.post("/v1/models/tiny/predict", files={"file": ("x.png", b"\x00" * 2_100_000)})
    assert r.status_code == 413


def test_unknown_job_and_bad_format(client: TestClient) -> None:
    r = client.get("/v1/jobs/doesnotexist")
    assert r.status_code == 404 and r.json()["code"] == "unknown_job"
    r = client.get("/v1/jobs/" + "x" * 500)
    assert r.status_code == 404
    job = client.post("/v1/explanations?wait=20", json=body()).json()["job"]
    r = client.get(f"/v1/jobs/{job}/result?format=gif")
    assert r.status_code == 422 and r.json()["code"] == "validation_error"
    r = client.get(f"/v1/jobs/{job}/result?format=overlay&alpha=2")
    assert r.status_code == 422


def test_wait_out_of_range(client: TestClient) -> None:
    r = client.post("/v1/explanations?wait=1000", json=body())
    assert r.status_code == 422 and r.json()["code"] == "validation_error"


def test_unknown_route_and_method(client: TestClient) -> None:
    r = client.get("/v1/nothing")
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    r = client.put("/v1/models")
    assert r.status_code == 405 and r.json()["code"] == "method_not_allowed"


def test_predict_errors(client: TestClient) -> None:
    r = client.post("/v1/models/tiny/predict", json={"image": OK_IMAGE, "top_k": 0})
    assert r.status_code == 422 and r.json()["code"] == "invalid_input"
    r = client.post("/v1/models/nope/predict", json={"image": OK_IMAGE})
    assert r.status_code == 404 and r.json()["code"] == "unknown_model"
    r = client.post("/v1/models/tiny/predict", json={"image": b64(b"GIF89a")})
    assert r.status_code == 422 and r.json()["code"] == "invalid_image"


def test_oversized_streamed_multipart_is_413(client: TestClient) -> None:
    boundary = "lanternboundary"
    head = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.png\"\r\n"
        "Content-Type: image/png\r\n\r\n"
    ).encode()

    def body() -> object:  # no content-length: the limit is counted on the stream
        yield head
        for _ in range(40):
            yield b"\x00" * 100_000
        yield f"\r\n--{boundary}--\r\n".encode()

    r = client.post(
        "/v1/models/tiny/predict",
        content=body(),  # type: ignore[arg-type]
        headers={"content-type": f"multipart/form-data; boundary={boundary}"},
    )
    assert r.status_code == 413 and r.json()["code"] == "payload_too_large"
