"""Gradient and CAM methods through the API: sync answers, capabilities, refusals."""

from __future__ import annotations

import io
import json

import numpy as np
import onnx
from fastapi.testclient import TestClient
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from lantern_testing.images import b64, chelsea_png, png_bytes
from lantern_testing.models import conv_classifier, manifest


def upload(client: TestClient, model: onnx.ModelProto, name: str, size: int, classes: int) -> dict:  # type: ignore[type-arg]
    r = client.post(
        "/v1/models",
        files={"file": ("m.onnx", model.SerializeToString())},
        data={"manifest": json.dumps(manifest(name, size, [f"c{i}" for i in range(classes)]))},
    )
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def reflect_pad_model() -> onnx.ModelProto:
    """Pad(mode=reflect) on the path: ONNX Runtime runs it, onnx-ad has no rule for it."""
    rng = np.random.default_rng(0)
    graph = helper.make_graph(
        [
            helper.make_node("Pad", ["input", "pads"], ["padded"], name="reflect_pad",
                             mode="reflect"),
            helper.make_node("Conv", ["padded", "cw"], ["conv"], name="conv"),
            helper.make_node("GlobalAveragePool", ["conv"], ["pool"], name="pool"),
            helper.make_node("Flatten", ["pool"], ["flat"], name="flatten"),
            helper.make_node("Gemm", ["flat", "fw"], ["logits"], name="fc", transB=1),
        ],
        "reflect",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])],
        initializer=[
            numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "pads"),
            numpy_helper.from_array(rng.normal(size=(4, 3, 3, 3)).astype(np.float32), "cw"),
            numpy_helper.from_array(rng.normal(size=(2, 4)).astype(np.float32), "fw"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_capabilities_are_listed(client: TestClient) -> None:
    info = upload(client, conv_classifier(), "convcap", 16, 3)
    caps = info["capabilities"]
    assert caps == {"gradients": True, "gradients_refusal": None, "cam": True,
                    "default_layer": "act"}
    builtin = client.get("/v1/models/efficientnet-lite0").json()["capabilities"]
    assert builtin["gradients"] and builtin["cam"] and builtin["default_layer"] == "head.act"
    tiny = client.get("/v1/models/tiny").json()["capabilities"]
    assert tiny["gradients"] and not tiny["cam"] and tiny["default_layer"] is None


def test_an_op_without_a_gradient_rule_is_refused_at_submit(client: TestClient) -> None:
    info = upload(client, reflect_pad_model(), "reflect", 8, 2)
    assert info["capabilities"]["gradients"] is False
    assert "reflect_pad" in info["capabilities"]["gradients_refusal"]
    img = b64(png_bytes(np.zeros((8, 8, 3), np.uint8)))
    for method in ("saliency", "integrated_gradients", "smoothgrad", "gradient_x_input"):
        r = client.post("/v1/explanations", json={"model": "reflect", "method": method,
                                                  "image": img, "target": 0})
        assert r.status_code == 422, (method, r.text)
        err = r.json()
        assert err["code"] == "unsupported_model"
        assert "Pad" in err["message"] and "reflect_pad" in err["message"]
    # Grad-CAM differentiates only from the last conv on: the pad is off that path
    r = client.post("/v1/explanations?wait=20", json={"model": "reflect", "method": "grad_cam",
                                                      "image": img, "target": 0})
    assert r.status_code == 200, r.text
    assert r.json()["extras"]["layer"] == "conv"
    # perturbation methods need no gradients: still fine
    r = client.post("/v1/explanations?wait=20", json={"model": "reflect", "method": "occlusion",
                                                      "image": img, "target": 0,
                                                      "params": {"window": 4, "stride": 4}})
    assert r.status_code == 200, r.text


def test_saliency_answers_synchronously(client: TestClient) -> None:
    # the tiny model: logit "left" = sum of red over the top-left quadrant
    r = client.post("/v1/explanations?wait=20", json={
        "model": "tiny", "method": "saliency", "target": "left",
        "image": b64(png_bytes(np.full((8, 8, 3), 7, np.uint8))),
        "params": {"reduce": "abs_sum"}})
    assert r.status_code == 200, r.text
    body = r.json()
    expected = np.zeros((8, 8))
    expected[:4, :4] = 1.0
    np.testing.assert_allclose(body["attribution"]["values"], expected, atol=1e-6)
    assert body["model_calls"] == 1  # one forward-backward: its logits give the target score


def test_grad_cam_and_activation_maps_on_the_builtin_model(client: TestClient) -> None:
    img = b64(chelsea_png())
    r = client.post("/v1/explanations?wait=60", json={
        "model": "efficientnet-lite0", "method": "grad_cam", "image": img, "target": 285})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["extras"]["layer"] == "head.act"
    assert body["attribution"]["shape"] == [224, 224]
    r = client.post("/v1/explanations?wait=60", json={
        "model": "efficientnet-lite0", "method": "activation_maps", "image": img,
        "params": {"top_k": 9}})
    assert r.status_code == 200, r.text
    job = r.json()["job"]
    assert len(r.json()["extras"]["channels"]) == 9
    stats = client.get(f"/v1/jobs/{job}/artifacts/channel_stats").json()["data"]
    assert len(stats["rows"]) == 1280
    grid = Image.open(io.BytesIO(client.get(f"/v1/jobs/{job}/result?format=png").content))
    assert grid.size[0] > 100 and grid.size[0] == grid.size[1]  # a 3 x 3 grid of tiles


def test_method_param_errors(client: TestClient) -> None:
    img = b64(chelsea_png())
    r = client.post("/v1/explanations", json={
        "model": "efficientnet-lite0", "method": "grad_cam", "image": img,
        "params": {"layer": "logits"}})
    assert r.status_code == 422 and r.json()["code"] == "invalid_params"
    r = client.post("/v1/explanations", json={
        "model": "tiny", "method": "cam", "image": b64(png_bytes(np.zeros((8, 8, 3), np.uint8)))})
    assert r.status_code == 422 and r.json()["code"] == "unsupported_model"
    r = client.post("/v1/explanations", json={
        "model": "efficientnet-lite0", "method": "integrated_gradients", "image": img,
        "params": {"steps": 1}})
    assert r.status_code == 422 and r.json()["code"] == "invalid_params"
    # SmoothGrad: squared (mean of g²) and average "abs" do not combine; refused at submit
    tiny_img = b64(png_bytes(np.zeros((8, 8, 3), np.uint8)))
    r = client.post("/v1/explanations", json={
        "model": "tiny", "method": "smoothgrad", "image": tiny_img,
        "params": {"squared": True, "average": "abs"}})
    assert r.status_code == 422 and r.json()["code"] == "invalid_params", r.text
    assert "squared" in r.json()["message"] and "average" in r.json()["message"]
    r = client.post("/v1/explanations", json={
        "model": "tiny", "method": "smoothgrad", "image": tiny_img,
        "params": {"average": "mean"}})
    assert r.status_code == 422 and r.json()["code"] == "invalid_params", r.text
    # integrated gradients: a tolerance refines by halving intervals, trapezoid rule only
    for params in ({"tolerance": 0.01, "method": "gausslegendre"},
                   {"tolerance": 0.01, "steps": 100, "max_steps": 64}):
        r = client.post("/v1/explanations", json={
            "model": "tiny", "method": "integrated_gradients", "image": tiny_img,
            "params": params})
        assert r.status_code == 422 and r.json()["code"] == "invalid_params", r.text


def test_methods_catalogue_lists_the_gradient_methods(client: TestClient) -> None:
    methods = {  # the image methods (a name has a spec per modality)
        m["name"]: m
        for m in client.get("/v1/methods").json()["methods"]
        if "image" in m["modalities"]
    }
    for name in ("saliency", "gradient_x_input", "cam", "grad_cam", "grad_cam_plus_plus",
                 "activation_maps"):
        assert methods[name]["execution"] == "sync", name
    for name in ("integrated_gradients", "smoothgrad"):
        assert methods[name]["execution"] == "job", name
    assert methods["integrated_gradients"]["params_schema"]["properties"]["steps"]["default"] == 50


def test_integrated_gradients_with_a_tolerance_reports_its_rounds(client: TestClient) -> None:
    # the tiny model is linear: the trapezoid rule is exact and the first round suffices
    r = client.post("/v1/explanations?wait=30", json={
        "model": "tiny", "method": "integrated_gradients", "target": "left",
        "image": b64(png_bytes(np.full((8, 8, 3), 7, np.uint8))),
        "params": {"steps": 4, "tolerance": 0.001}})
    assert r.status_code == 200, r.text
    extras = r.json()["extras"]
    assert extras["method"] == "riemann_trapezoid" and extras["tolerance_met"] is True
    assert [round_["steps"] for round_ in extras["rounds"]] == [4]
    assert extras["completeness_error"] <= 0.001
