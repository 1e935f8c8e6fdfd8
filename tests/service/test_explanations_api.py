from __future__ import annotations

import base64
import io
import json
import time

import numpy as np
from fastapi.testclient import TestClient
from PIL import Image

from lantern_testing.images import b64, chelsea_png, png_bytes


def quadrant_png() -> bytes:
    px = np.zeros((8, 8, 3), np.uint8)
    px[..., 0] = 10
    return png_bytes(px)


def expected_tiny_map() -> np.ndarray:
    # window 4, stride 4, black baseline: hiding the top-left quadrant drops "left" by 16*10
    e = np.zeros((8, 8))
    e[:4, :4] = 160.0
    return e


def explain(client: TestClient, **overrides: object) -> dict[str, object]:
    body = {
        "model": "tiny",
        "method": "occlusion",
        "image": b64(quadrant_png()),
        "target": "left",
        "params": {"window": 4, "stride": 4},
        **overrides,
    }
    return body


def poll(client: TestClient, job: str, timeout: float = 30) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st: dict[str, object] = client.get(f"/v1/jobs/{job}").json()
        if st["state"] in ("succeeded", "failed", "cancelled"):
            return st
        time.sleep(0.05)
    raise AssertionError("job did not finish")


def test_submit_poll_and_fetch_every_format(client: TestClient) -> None:
    r = client.post(
        "/v1/explanations", json=explain(client, params={"window": 4, "stride": 4, "batch_size": 1})
    )
    assert r.status_code == 202, r.text
    job = r.json()["id"]
    assert r.headers["location"] == f"/v1/jobs/{job}"
    assert r.json()["state"] in ("queued", "running", "succeeded")
    st = poll(client, job)
    assert st["state"] == "succeeded" and st["progress"] == 1.0
    assert set(st["timings"]) == {"queued_ms", "compute_ms"}  # type: ignore[arg-type]
    assert st["links"]["png"] == f"/v1/jobs/{job}/result?format=png"  # type: ignore[index]

    res = client.get(f"/v1/jobs/{job}/result?format=json").json()
    assert res["attribution"]["shape"] == [8, 8]
    np.testing.assert_allclose(res["attribution"]["values"], expected_tiny_map(), rtol=1e-5)
    assert res["target"]["index"] == 0 and res["target"]["label"] == "left"
    assert res["model_calls"] == 6
    assert set(res["timings"]) == {"queued_ms", "compute_ms"}

    npy = client.get(f"/v1/jobs/{job}/result?format=npy")
    arr = np.load(io.BytesIO(npy.content))
    np.testing.assert_allclose(arr, expected_tiny_map(), rtol=1e-5)

    png = client.get(f"/v1/jobs/{job}/result?format=png&colormap=gray")
    assert png.headers["content-type"] == "image/png"
    img = Image.open(io.BytesIO(png.content))
    assert img.size == (8, 8) and img.getpixel((0, 0)) == (255, 255, 255)
    assert img.getpixel((7, 7)) == (0, 0, 0)


def test_overlay_is_at_the_original_size(client: TestClient) -> None:
    big = np.zeros((30, 50, 3), np.uint8)
    body = explain(client, image=b64(png_bytes(big)))
    r = client.post("/v1/explanations?wait=20", json=body)
    assert r.status_code == 200, r.text
    job = r.json()["job"]
    ov = client.get(f"/v1/jobs/{job}/result?format=overlay&alpha=0.3&colormap=viridis")
    assert Image.open(io.BytesIO(ov.content)).size == (50, 30)


def test_wait_answers_the_result_with_asked_outputs(client: TestClient) -> None:
    r = client.post(
        "/v1/explanations?wait=20", json=explain(client, outputs=["values", "png", "overlay"])
    )
    assert r.status_code == 200, r.text
    body = r.json()
    np.testing.assert_allclose(body["attribution"]["values"], expected_tiny_map(), rtol=1e-5)
    for key in ("png", "overlay"):
        Image.open(io.BytesIO(base64.b64decode(body["images"][key]))).verify()


def test_the_same_request_is_the_same_job(client: TestClient) -> None:
    a = client.post("/v1/explanations?wait=20", json=explain(client)).json()
    # same params spelled differently (defaults filled in), same target by index
    b = client.post(
        "/v1/explanations?wait=20",
        json=explain(client, target=0, params={"window": 4, "stride": 4, "baseline": "zero"}),
    ).json()
    assert a["job"] == b["job"]
    c = client.post("/v1/explanations?wait=20", json=explain(client, params={"window": 2})).json()
    assert c["job"] != a["job"]


def test_multipart_explanation(client: TestClient) -> None:
    r = client.post(
        "/v1/explanations?wait=20",
        files={"file": ("q.png", quadrant_png(), "image/png")},
        data={
            "model": "tiny",
            "method": "occlusion",
            "target": "0",
            "params": json.dumps({"window": 4, "stride": 4}),
        },
    )
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(r.json()["attribution"]["values"], expected_tiny_map(), rtol=1e-5)


def test_occlusion_on_chelsea_with_the_builtin_model(client: TestClient) -> None:
    body = {
        "model": "efficientnet-lite0",
        "method": "occlusion",
        "image": b64(chelsea_png()),
        "target": 285,
        "params": {"window": 56, "stride": 56},
    }
    r = client.post("/v1/explanations?wait=60", json=body)
    assert r.status_code == 200, r.text
    res = r.json()
    assert res["target"] == {"index": 285, "label": "Egyptian cat", "score": res["target"]["score"]}
    assert abs(res["target"]["score"] - 0.763) < 0.01
    assert res["model_calls"] == 2 + 16
    values = np.array(res["attribution"]["values"])
    assert values.shape == (224, 224) and np.isfinite(values).all()
    assert values.max() > 0  # hiding part of the cat lowers the cat's logit


def test_cancel(client: TestClient) -> None:
    # 64 windows one at a time on the built-in model: long enough to cancel
    body = {
        "model": "efficientnet-lite0",
        "method": "occlusion",
        "image": b64(chelsea_png()),
        "target": 1,
        "params": {"window": 8, "stride": 8, "batch_size": 1},
    }
    job = client.post("/v1/explanations", json=body).json()["id"]
    r = client.delete(f"/v1/jobs/{job}")
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    assert client.delete(f"/v1/jobs/{job}").json()["state"] == "cancelled"  # idempotent
    time.sleep(0.5)
    assert client.get(f"/v1/jobs/{job}").json()["state"] == "cancelled"
    r = client.get(f"/v1/jobs/{job}/result")
    assert r.status_code == 409 and r.json()["code"] == "job_cancelled"  # its real state
    # resubmitting a cancelled request starts it again
    again = client.post("/v1/explanations", json=body).json()
    assert again["id"] == job and again["state"] in ("queued", "running")
    client.delete(f"/v1/jobs/{job}")


def test_cancelling_a_finished_job_is_409(client: TestClient) -> None:
    job = client.post("/v1/explanations?wait=20", json=explain(client)).json()["job"]
    r = client.delete(f"/v1/jobs/{job}")
    assert r.status_code == 409 and r.json()["code"] == "job_finished"


def test_methods_catalogue(client: TestClient) -> None:
    methods = {  # the image methods (a name has a spec per modality)
        m["name"]: m
        for m in client.get("/v1/methods").json()["methods"]
        if "image" in m["modalities"]
    }
    occ = methods["occlusion"]
    assert occ["kind"] == "perturbation" and occ["execution"] == "job"
    props = occ["params_schema"]["properties"]
    assert props["window"]["default"] == 16 and props["stride"]["default"] == 8
