"""Lantern in the model-serving platforms' protocols, over HTTP on built-in models: KServe
V1 ``:predict`` / ``:explain`` and the Open Inference Protocol (V2) — requests built by the
official Triton client's request builder (tritonclient, no server of its own), answers read
back by its result parser and validated against the protocol's published schema (a copy in
tests/service/oip/, source named there).

Every answer is checked against Lantern's own API on the same input: the V1/V2 explanation
of an instance is the very job ``POST /v1/explanations`` makes for it (same id: requests
are content-addressed), and ``infer`` gives ONNX Runtime's output on the same tensor."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as triton
import yaml
from fastapi.testclient import TestClient

from lantern.settings import Settings
from lantern_testing.images import b64, png_bytes
from service.app import create_app

SPEC = yaml.safe_load((Path(__file__).parent / "oip" / "open_inference_rest.yaml").read_text())


def check(schema: str, body: Any) -> None:
    """``body`` against the protocol's ``components.schemas[schema]``."""
    jsonschema.validate(body, {"$ref": f"#/components/schemas/{schema}",
                               "components": SPEC["components"]})


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Any:
    settings = Settings(data_dir=tmp_path_factory.mktemp("data"),
                        builtin_models=["digits-cnn", "breast-cancer-mlp", "sentiment-tfidf"])
    with TestClient(create_app(settings)) as c:
        yield c


def digit(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    px = np.zeros((8, 8, 3), np.uint8)
    px[1:7, 3:5] = rng.integers(150, 256)  # a bar: a "1"-ish stroke
    px += rng.integers(0, 30, px.shape).astype(np.uint8)
    return png_bytes(px)


def row(client: TestClient, k: int) -> list[float]:
    """A plausible breast-cancer row: the model's training means, scaled."""
    stats = client.get("/v1/models/breast-cancer-mlp").json()["manifest"]["statistics"]
    return [f["mean"] * (0.8 + 0.1 * k) for f in stats["features"]]


def lantern_job(client: TestClient, model: str, method: str, input_: dict[str, Any]) -> dict[
        str, Any]:
    r = client.post("/v1/explanations?wait=60", json={"model": model, "method": method,
                                                      "input": input_, "outputs": ["values"]})
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


# -- KServe V1 ----------------------------------------------------------------------------


def test_v1_explain_image_is_lanterns_own_explanation(client: TestClient) -> None:
    images = [b64(digit(1)), {"image_bytes": {"b64": b64(digit(2))}}]
    r = client.post("/v1/models/digits-cnn:explain", json={"instances": images})
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["predictions"]) == 2 and len(body["explanations"]) == 2
    for k, (expl, probs) in enumerate(zip(body["explanations"], body["predictions"],
                                          strict=True)):
        np.testing.assert_allclose(sum(probs), 1.0, atol=1e-5)
        assert expl["method"] == "saliency" and expl["attribution"]["shape"] == [8, 8]
        own = lantern_job(client, "digits-cnn", "saliency",
                          {"modality": "image", "data": b64(digit(k + 1))})
        assert expl["job"] == own["job"]
        np.testing.assert_array_equal(expl["attribution"]["values"],
                                      own["attribution"]["values"])
        # the prediction is the model's: the explained (top-1) class has its probability
        assert int(np.argmax(probs)) == expl["target"]["index"]
        np.testing.assert_allclose(probs[expl["target"]["index"]], expl["target"]["score"],
                                   rtol=1e-5)


def test_v1_predict_matches_lanterns_predict(client: TestClient) -> None:
    r = client.post("/v1/models/digits-cnn:predict", json={"instances": [b64(digit(3))]})
    assert r.status_code == 200, r.text
    probs = r.json()["predictions"][0]
    top = client.post("/v1/models/digits-cnn/predict",
                      json={"image": b64(digit(3)), "top_k": 1}).json()
    best = top["predictions"][0] if "predictions" in top else top["top_k"][0]
    assert int(np.argmax(probs)) == best["index"]
    np.testing.assert_allclose(max(probs), best["score"], rtol=1e-5)


def test_v1_explain_takes_a_method_and_a_target(client: TestClient) -> None:
    r = client.post("/v1/models/digits-cnn:explain", json={
        "instances": [b64(digit(4))],
        "parameters": {"method": "grad_cam", "target": 7, "params": {"layer": "conv2"}}})
    assert r.status_code == 200, r.text
    expl = r.json()["explanations"][0]
    assert expl["method"] == "grad_cam" and expl["target"]["index"] == 7
    assert expl["params"]["layer"] == "conv2"


def test_v1_tabular_rows_and_text(client: TestClient) -> None:
    rows = [row(client, 1), row(client, 3)]
    r = client.post("/v1/models/breast-cancer-mlp:explain", json={"instances": rows})
    assert r.status_code == 200, r.text
    expl = r.json()["explanations"]
    assert [e["attribution"]["shape"] for e in expl] == [[30], [30]]
    own = lantern_job(client, "breast-cancer-mlp", "saliency",
                      {"modality": "tabular", "row": rows[1]})
    assert expl[1]["job"] == own["job"]

    r = client.post("/v1/models/sentiment-tfidf:explain",
                    json={"instances": ["a wonderful, moving film"]})
    assert r.status_code == 200, r.text
    (e,) = r.json()["explanations"]
    assert e["method"] == "occlusion"
    assert e["attribution"]["shape"] == [4]  # a weight per word
    assert r.json()["predictions"][0][e["target"]["index"]] == max(r.json()["predictions"][0])


def test_v1_refusals_have_codes(client: TestClient) -> None:
    r = client.post("/v1/models/digits-cnn:explain", json={"instances": [[1, 2, 3]]})
    assert r.status_code == 422 and r.json()["code"] == "invalid_input"
    assert "base64" in r.json()["message"]
    r = client.post("/v1/models/nope:explain", json={"instances": ["x"]})
    assert r.status_code == 404 and r.json()["code"] == "unknown_model"
    r = client.post("/v1/models/digits-cnn:explain", json={"instances": []})
    assert r.status_code == 422
    r = client.post("/v1/models/digits-cnn:explain", json={
        "instances": [b64(digit(1))], "parameters": {"method": "no-such-method"}})
    assert r.status_code == 404 or r.status_code == 422
    assert r.json()["code"] in ("unknown_method", "invalid_input")
    r = client.post("/v1/models/digits-cnn:explain", json={"instances": ["not base64!"]})
    assert r.status_code == 422


# -- Open Inference Protocol (V2) ---------------------------------------------------------


def test_v2_health_and_metadata(client: TestClient) -> None:
    assert client.get("/v2/health/live").status_code == 200
    assert client.get("/v2/health/ready").status_code == 200
    server = client.get("/v2").json()
    check("metadata_server_response", server)
    assert "explain" in server["extensions"]
    meta = client.get("/v2/models/digits-cnn").json()
    check("metadata_model_response", meta)
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 3, 8, 8]}]
    version = meta["versions"][0]
    assert client.get(f"/v2/models/digits-cnn/versions/{version}").json() == meta
    assert client.get("/v2/models/digits-cnn/ready").status_code == 200
    r = client.get("/v2/models/digits-cnn/versions/0000000000000000")
    assert r.status_code == 404
    check("metadata_model_error_response", r.json())


def _session(client: TestClient, tmp: Path) -> ort.InferenceSession:
    state = client.app.state.lantern  # type: ignore[attr-defined]
    info = state.rt.models.get("digits-cnn")
    return ort.InferenceSession(str(state.rt.models.path("digits-cnn", info.version)),
                                providers=["CPUExecutionProvider"])


def test_v2_infer_raw_tensor_is_onnx_runtimes_output(client: TestClient, tmp_path: Path) -> None:
    x = np.random.default_rng(0).normal(size=(2, 3, 8, 8)).astype(np.float32)
    inp = triton.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=False)
    body, _ = triton.InferenceServerClient.generate_request_body(
        [inp], outputs=[triton.InferRequestedOutput("logits", binary_data=False)],
        request_id="r1")
    check("inference_request", json.loads(body))
    r = client.post("/v2/models/digits-cnn/infer", content=body,
                    headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text
    check("inference_response", r.json())
    assert r.json()["id"] == "r1"
    got = triton.InferResult.from_response_body(r.content).as_numpy("logits")
    want = _session(client, tmp_path).run(["logits"], {"input": x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_v2_infer_bytes_images_match_v1_predict(client: TestClient) -> None:
    images = np.array([b64(digit(5)), b64(digit(6))], dtype=np.object_)
    inp = triton.InferInput("input", [2], "BYTES")
    inp.set_data_from_numpy(images, binary_data=False)
    body, _ = triton.InferenceServerClient.generate_request_body(
        [inp], outputs=[triton.InferRequestedOutput("logits", binary_data=False)])
    r = client.post("/v2/models/digits-cnn/infer", content=body,
                    headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text
    logits = triton.InferResult.from_response_body(r.content).as_numpy("logits")
    v1 = client.post("/v1/models/digits-cnn:predict",
                     json={"instances": list(images)}).json()["predictions"]
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(e / e.sum(axis=1, keepdims=True), v1, rtol=1e-5, atol=1e-7)


def test_v2_explain_is_lanterns_explanation(client: TestClient) -> None:
    images = np.array([b64(digit(7)), b64(digit(8))], dtype=np.object_)
    inp = triton.InferInput("input", [2], "BYTES")
    inp.set_data_from_numpy(images, binary_data=False)
    body, _ = triton.InferenceServerClient.generate_request_body(
        [inp], parameters={"method": "gradient_x_input", "target": 1})
    check("inference_request", json.loads(body))
    r = client.post("/v2/models/digits-cnn/explain", content=body,
                    headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text
    check("inference_response", r.json())
    result = triton.InferResult.from_response_body(r.content)
    attribution = result.as_numpy("attribution")
    assert attribution.shape == (2, 8, 8) and attribution.dtype == np.float32
    np.testing.assert_array_equal(result.as_numpy("target"), [1, 1])
    jobs = r.json()["parameters"]["jobs"].split(",")
    for k in range(2):
        r2 = client.post("/v1/explanations?wait=60", json={
            "model": "digits-cnn", "method": "gradient_x_input", "target": 1,
            "image": images[k], "outputs": ["values"]})
        assert r2.json()["job"] == jobs[k]
        np.testing.assert_array_equal(
            attribution[k], np.asarray(r2.json()["attribution"]["values"], np.float32))


def test_v2_explain_tabular_rows_as_a_tensor(client: TestClient) -> None:
    x = np.asarray([row(client, 2), row(client, 4)], np.float32)
    inp = triton.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=False)
    body, _ = triton.InferenceServerClient.generate_request_body([inp])
    r = client.post("/v2/models/breast-cancer-mlp/explain", content=body,
                    headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text
    check("inference_response", r.json())
    attribution = triton.InferResult.from_response_body(r.content).as_numpy("attribution")
    assert attribution.shape == (2, 30)
    own = lantern_job(client, "breast-cancer-mlp", "saliency",
                      {"modality": "tabular", "row": x[1].astype(np.float64).tolist()})
    np.testing.assert_array_equal(
        attribution[1], np.asarray(own["attribution"]["values"], np.float32))


@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        ("/v2/models/digits-cnn/infer",
         {"inputs": [{"name": "input", "shape": [1, 3, 8, 8], "datatype": "FP32",
                      "data": [0.0] * 10}]}, 422, "invalid_input"),
        ("/v2/models/digits-cnn/infer",
         {"inputs": [{"name": "input", "shape": [1, 3, 4, 4], "datatype": "FP32",
                      "data": [0.0] * 48}]}, 422, "invalid_input"),
        ("/v2/models/digits-cnn/infer",
         {"inputs": [{"name": "input", "shape": [1], "datatype": "FP32", "data": [1.0]}],
          "outputs": [{"name": "nope"}]}, 422, "invalid_input"),
        ("/v2/models/digits-cnn/infer", {"inputs": []}, 422, "invalid_input"),
        ("/v2/models/nope/infer",
         {"inputs": [{"name": "input", "shape": [1], "datatype": "FP32", "data": [1.0]}]},
         404, "unknown_model"),
        ("/v2/models/digits-cnn/explain",
         {"inputs": [{"name": "input", "shape": [1, 2], "datatype": "FP32",
                      "data": [1.0, 2.0]}]}, 422, "invalid_input"),
        ("/v2/models/digits-cnn/explain",
         {"inputs": [{"name": "input", "shape": [1], "datatype": "BYTES", "data": ["x!"]}]},
         422, "invalid_input"),
    ],
)
def test_v2_refusals_are_protocol_errors(client: TestClient, path: str, body: dict[str, Any],
                                         status: int, code: str) -> None:
    r = client.post(path, json=body)
    assert r.status_code == status, r.text
    check("inference_error_response", r.json())
    assert r.json()["code"] == code and r.json()["error"] == r.json()["message"]


def test_v2_infer_in_the_binary_extension(client: TestClient, tmp_path: Path) -> None:
    """Tensors as raw bytes after the JSON header (Triton's binary extension), both ways:
    the same numbers as ONNX Runtime's."""
    x = np.random.default_rng(1).normal(size=(3, 3, 8, 8)).astype(np.float32)
    inp = triton.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=True)
    body, json_size = triton.InferenceServerClient.generate_request_body(
        [inp], outputs=[triton.InferRequestedOutput("logits", binary_data=True)])
    assert json_size is not None and len(body) == json_size + x.nbytes
    r = client.post("/v2/models/digits-cnn/infer", content=body, headers={
        "content-type": "application/octet-stream",
        "Inference-Header-Content-Length": str(json_size)})
    assert r.status_code == 200, r.text
    length = int(r.headers["Inference-Header-Content-Length"])
    check("inference_response", {**json.loads(r.content[:length]),
                                  "outputs": [{**o, "data": []} for o in
                                              json.loads(r.content[:length])["outputs"]]})
    got = triton.InferResult.from_response_body(r.content, header_length=length).as_numpy(
        "logits")
    want = _session(client, tmp_path).run(["logits"], {"input": x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_v2_binary_refusals(client: TestClient) -> None:
    header = json.dumps({"inputs": [{"name": "input", "shape": [1, 3, 8, 8], "datatype": "FP32",
                                     "parameters": {"binary_data_size": 768}}]}).encode()
    for tail, length, code in ((b"\0" * 100, len(header), "invalid_input"),
                               (b"\0" * 768, 10 ** 9, "invalid_input"),
                               (b"\0" * 800, len(header), "invalid_input")):
        r = client.post("/v2/models/digits-cnn/infer", content=header + tail, headers={
            "content-type": "application/octet-stream",
            "Inference-Header-Content-Length": str(length)})
        assert r.status_code == 422, r.text
        check("inference_error_response", r.json())
        assert r.json()["code"] == code


def test_v2_explain_refuses_a_method_without_an_attribution(client: TestClient) -> None:
    """deepdream answers images, not an attribution: a 422 saying so, not a 500."""
    inp = triton.InferInput("input", [1], "BYTES")
    inp.set_data_from_numpy(np.array([b64(digit(9))], dtype=np.object_), binary_data=False)
    body, _ = triton.InferenceServerClient.generate_request_body(
        [inp], parameters={"method": "deepdream", "params": json.dumps(
            {"octaves": 1, "steps": 2}), "wait": 60})
    r = client.post("/v2/models/digits-cnn/explain", content=body,
                    headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    check("inference_error_response", r.json())
    assert r.json()["code"] == "invalid_params" and "no attribution" in r.json()["message"]
