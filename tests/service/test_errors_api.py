"""Every error a caller can cause is a 4xx with a stable code and a sentence — never a 500."""

from __future__ import annotations

import io
import json

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
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="x.png"\r\n'
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


# -- non-finite numbers and deep nesting in JSON ---------------------------------------------


def raw_body(params_text: str) -> bytes:
    """An explanation request whose params are given as raw JSON text."""
    text = json.dumps(body(params={"__p__": 0}))
    return text.replace('{"__p__": 0}', params_text).encode()


@pytest.mark.parametrize(
    "params_text",
    [
        '{"window": 4, "stride": NaN}',
        '{"window": 4, "stride": Infinity}',
        '{"window": 4, "stride": -Infinity}',
        '{"window": 4, "stride": 1e999}',
        '{"window": 4, "stride": -1e999}',
    ],
)
def test_non_finite_numbers_in_json_bodies_are_refused(
    client: TestClient, params_text: str
) -> None:
    r = client.post(
        "/v1/explanations",
        content=raw_body(params_text),
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 422, r.text
    err = r.json()
    assert err["code"] == "invalid_input"
    assert "params.stride" in err["message"] and "finite" in err["message"], err
    assert err["details"]["field"] == "params.stride"


def test_non_finite_numbers_in_multipart_json_fields_are_refused(client: TestClient) -> None:
    png = png_bytes(np.zeros((8, 8, 3), np.uint8))
    for text in ('{"window": NaN}', '{"window": 1e999}', "[Infinity]"):
        r = client.post(
            "/v1/explanations",
            files={"file": ("x.png", png)},
            data={"model": "tiny", "method": "occlusion", "target": "0", "params": text},
        )
        assert r.status_code == 422, r.text
        assert r.json()["code"] == "invalid_input" and "finite" in r.json()["message"]
        assert "params" in r.json()["message"]


def test_a_nan_param_says_it_must_be_finite(client: TestClient) -> None:
    """json.dumps writes NaN: the answer names the field and says it must be finite, not
    that it should be <= some bound."""
    text = json.dumps(body(method="smoothgrad", params={"noise": float("nan")}))
    r = client.post("/v1/explanations", content=text, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert "finite" in r.json()["message"] and "params.noise" in r.json()["message"]
    assert "less than" not in r.json()["message"]


def test_huge_integers_are_refused_not_500(client: TestClient) -> None:
    r = client.post(
        "/v1/explanations",
        content=raw_body('{"window": ' + "9" * 5000 + "}"),
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 422 and r.json()["code"] == "invalid_input", r.text


@pytest.mark.parametrize(
    "content",
    [
        raw_body('{"a": ' * 100_000 + "1" + "}" * 100_000),
        raw_body("[" * 100_000 + "]" * 100_000),
        b"[" * 1_000_000,
        b'{"a": ' + b"[" * 1_000_000,
        raw_body('{"a": ' * 65 + "1" + "}" * 65),
    ],
    ids=["objects-100k", "arrays-100k", "open-1m", "open-in-object-1m", "65-levels"],
)
def test_deeply_nested_json_is_refused_before_parsing(client: TestClient, content: bytes) -> None:
    r = client.post(
        "/v1/explanations", content=content, headers={"content-type": "application/json"}
    )
    assert r.status_code == 422, r.text[:500]
    err = r.json()
    assert err["code"] == "invalid_input" and "64" in err["message"], err


def test_brackets_inside_strings_do_not_count(client: TestClient) -> None:
    deep_string = "[" * 10_000 + '\\"{' * 100
    r = client.post(
        "/v1/explanations",
        content=raw_body('{"baseline": "' + deep_string + '"}'),
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 422, r.text[:500]
    assert r.json()["code"] == "invalid_params", r.text[:500]


def test_deep_multipart_json_fields_are_refused(client: TestClient) -> None:
    png = png_bytes(np.zeros((8, 8, 3), np.uint8))
    for text in ('{"a": ' * 100_000 + "1" + "}" * 100_000, "[" * 200_000):
        r = client.post(
            "/v1/explanations",
            files={"file": ("x.png", png)},
            data={"model": "tiny", "method": "occlusion", "target": "0", "params": text},
        )
        assert r.status_code == 422, r.text[:500]
        assert r.json()["code"] == "invalid_input" and "64" in r.json()["message"]


def test_json_at_the_depth_limit_is_parsed(client: TestClient) -> None:
    nested: object = 1
    for _ in range(60):
        nested = [nested]
    r = client.post("/v1/explanations", json=body(params={"window": 4, "deep": nested}))
    assert r.status_code == 422 and r.json()["code"] == "invalid_params", r.text[:500]
