from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from engine.models.zoo import BUILTIN_MODEL_ID
from lantern.settings import Settings
from lantern_testing.images import b64, chelsea_png, png_bytes
from lantern_testing.models import conv_classifier, manifest
from service.app import create_app


def test_health_and_ready(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    r = client.get("/readyz")
    assert r.status_code == 200 and r.json()["checks"]["models"] is True


def test_builtin_model_is_listed_with_layers(client: TestClient) -> None:
    names = [m["name"] for m in client.get("/v1/models").json()["models"]]
    assert "efficientnet-lite0" in names and "tiny" in names
    info = client.get("/v1/models/efficientnet-lite0").json()
    assert info["builtin"] is True
    assert len(info["manifest"]["labels"]) == 1000
    assert info["inputs"][0]["shape"][1:] == [3, 224, 224]
    layers = {layer["name"]: layer for layer in info["layers"]}
    assert layers["head.act"]["shape"][1:] == [1280, 7, 7] and layers["head.act"]["spatial"]


def test_predict_chelsea_json_and_multipart(client: TestClient) -> None:
    png = chelsea_png()
    r = client.post("/v1/models/efficientnet-lite0/predict", json={"image": b64(png), "top_k": 5})
    assert r.status_code == 200, r.text
    preds = r.json()["predictions"]
    assert [p["index"] for p in preds] == [285, 281, 282, 287, 728]
    assert preds[0]["label"] == "Egyptian cat"
    assert abs(preds[0]["score"] - 0.763) < 0.01
    r2 = client.post(
        "/v1/models/efficientnet-lite0/predict",
        files={"file": ("cat.png", png, "image/png")},
        data={"top_k": "2"},
    )
    assert r2.status_code == 200
    assert [p["index"] for p in r2.json()["predictions"]] == [285, 281]


def test_predict_tiny_by_hand(client: TestClient) -> None:
    px = np.zeros((8, 8, 3), np.uint8)
    px[:4, :4, 0] = 1  # class "left" logit = 16, "other" = 0
    r = client.post("/v1/models/tiny/predict", json={"image": b64(png_bytes(px)), "top_k": 2})
    preds = r.json()["predictions"]
    assert preds[0]["label"] == "left" and preds[0]["logit"] == 16.0
    assert abs(preds[0]["score"] - 1 / (1 + np.exp(-16.0))) < 1e-6


def test_upload_get_delete(client: TestClient) -> None:
    model = conv_classifier().SerializeToString()
    r = client.post(
        "/v1/models",
        files={"file": ("m.onnx", model)},
        data={"manifest": json.dumps(manifest("conv", 16, ["a", "b", "c"]))},
    )
    assert r.status_code == 201, r.text
    assert r.json()["version"] and any(layer["name"] == "act" for layer in r.json()["layers"])
    assert client.get("/v1/models/conv").status_code == 200
    assert client.delete("/v1/models/conv").status_code == 204
    r = client.get("/v1/models/conv")
    assert r.status_code == 404 and r.json()["code"] == "unknown_model"


def test_builtin_cannot_be_deleted(client: TestClient) -> None:
    r = client.delete("/v1/models/efficientnet-lite0")
    assert r.status_code == 409 and r.json()["code"] == "model_protected"


def test_bad_uploads_are_4xx_with_codes(client: TestClient) -> None:
    good = json.dumps(manifest("x", 16, ["a", "b", "c"]))
    cases = [
        ({"file": ("m.onnx", b"garbage" * 10)}, {"manifest": good}, 422, "invalid_model"),
        (
            {"file": ("m.onnx", conv_classifier().SerializeToString())},
            {"manifest": json.dumps(manifest("x", 16, ["a", "b"]))},
            422,
            "invalid_manifest",
        ),
        ({"file": ("m.onnx", b"x")}, {"manifest": "{not json"}, 422, "invalid_manifest"),
        ({"file": ("m.onnx", b"x")}, {}, 422, "invalid_input"),
        (None, {"manifest": good}, 422, "invalid_input"),
    ]
    for files, data, status, code in cases:
        r = client.post("/v1/models", files=files, data=data)
        assert r.status_code == status, (r.status_code, r.text)
        body = r.json()
        assert body["code"] == code and body["message"].endswith(".")


# -- non-finite numbers, damaged records, duplicate parts ---------------------------------------


def _upload(client: TestClient, manifest_text: str, name: str = "conv") -> object:
    return client.post(
        "/v1/models",
        files={"file": ("m.onnx", conv_classifier().SerializeToString())},
        data={"manifest": manifest_text},
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("scale", "1e999"),
        ("scale", "Infinity"),
        ("scale", "-Infinity"),
        ("scale", "NaN"),
        ("mean", "[0.0, NaN, 0.0]"),
        ("std", "[1.0, 1.0, NaN]"),
        ("std", "[1.0, 1e999, 1.0]"),
    ],
)
def test_non_finite_manifest_numbers_are_refused(
    client: TestClient, field: str, value: str
) -> None:
    """Python's json.dumps writes NaN and Infinity; they were stored as null and broke the
    listing for everyone."""
    m = manifest("nonfinite", 16, ["a", "b", "c"])
    text = json.dumps(m).replace(json.dumps({field: m[field]})[1:-1], f'"{field}": {value}')
    assert value in text
    r = _upload(client, text)  # type: ignore[assignment]
    assert r.status_code == 422, r.text  # type: ignore[attr-defined]
    body = r.json()  # type: ignore[attr-defined]
    assert body["code"] in ("invalid_manifest", "invalid_input"), body
    assert field in body["message"] and "finite" in body["message"], body
    assert client.get("/v1/models").status_code == 200
    assert client.get("/v1/models/nonfinite").status_code == 404


def test_json_dumps_of_a_non_finite_manifest_is_refused(client: TestClient) -> None:
    m = manifest("nonfinite", 16, ["a", "b", "c"])
    m["std"] = [1.0, float("nan"), 1.0]
    r = _upload(client, json.dumps(m))
    assert r.status_code == 422 and "std" in r.json()["message"]  # type: ignore[attr-defined]
    assert client.get("/v1/models").status_code == 200


def test_two_file_parts_are_refused(client: TestClient) -> None:
    model = conv_classifier().SerializeToString()
    good = json.dumps(manifest("twofiles", 16, ["a", "b", "c"]))
    r = client.post(
        "/v1/models",
        files=[("file", ("a.onnx", model)), ("file", ("b.onnx", b"garbage"))],
        data={"manifest": good},
    )
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "invalid_input" and "file" in r.json()["message"]
    assert client.get("/v1/models/twofiles").status_code == 404
    png = png_bytes(np.zeros((8, 8, 3), np.uint8))
    r = client.post(
        "/v1/models/tiny/predict",
        files=[("file", ("a.png", png)), ("file", ("b.png", b"not an image"))],
    )
    assert r.status_code == 422 and r.json()["code"] == "invalid_input"
    assert "file" in r.json()["message"]


def test_two_manifest_fields_are_refused(client: TestClient) -> None:
    model = conv_classifier().SerializeToString()
    r = client.post(
        "/v1/models",
        files=[
            ("file", ("a.onnx", model, "application/octet-stream")),
            ("manifest", (None, json.dumps(manifest("m1", 16, ["a", "b", "c"])))),  # type: ignore[list-item]
            ("manifest", (None, json.dumps(manifest("m2", 16, ["a", "b", "c"])))),  # type: ignore[list-item]
        ],
    )
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "invalid_input" and "manifest" in r.json()["message"]


def _store_root(client: TestClient) -> Path:
    root: Path = client.app.state.lantern.rt.models.root  # type: ignore[attr-defined]
    return root


def _damage(root: Path, name: str, record: bytes) -> None:
    """Write a record the way the store lays records out: <root>/<name>/record.json."""
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "record.json").write_bytes(record)


def test_damaged_records_never_break_the_listing(client: TestClient) -> None:
    root = _store_root(client)
    good = json.loads(client.get("/v1/models/tiny").text)
    nulled = dict(good, name="nulled", version="0123456789abcdef")
    nulled["manifest"] = dict(good["manifest"], name="nulled", scale=None)  # NaN stored as null
    _damage(root, "nulled", json.dumps(nulled).encode())
    _damage(root, "corrupt", b'{"name": "corrupt", "vers')
    _damage(root, "notjson", b"\x00\xff" * 10)
    try:
        r = client.get("/v1/models")
        assert r.status_code == 200, r.text
        listing = r.json()
        names = {m["name"] for m in listing["models"]}
        assert {"tiny", "efficientnet-lite0"} <= names
        assert not names & {"nulled", "corrupt", "notjson"}
        broken = {b["name"]: b for b in listing["broken"]}
        assert set(broken) == {"nulled", "corrupt", "notjson"}
        assert broken["nulled"]["version"] == "0123456789abcdef"
        assert broken["corrupt"]["version"] is None
        assert all(isinstance(b["error"], str) and b["error"] for b in broken.values())
        for name in broken:
            r = client.get(f"/v1/models/{name}")
            assert r.status_code == 409, r.text
            assert r.json()["code"] == "model_damaged" and name in r.json()["message"]
        assert client.get("/readyz").status_code == 200
        # an upload under a damaged name says what to do rather than overwriting blindly
        r = _upload(client, json.dumps(manifest("corrupt", 16, ["a", "b", "c"])))
        assert r.status_code == 409 and r.json()["code"] == "model_damaged"  # type: ignore[attr-defined]
        for name in broken:
            r = client.delete(f"/v1/models/{name}")
            assert r.status_code == 204, r.text
            assert client.get(f"/v1/models/{name}").status_code == 404
            assert not (root / name).exists()
        assert client.get("/v1/models").json()["broken"] == []
        r = _upload(client, json.dumps(manifest("corrupt", 16, ["a", "b", "c"])))
        assert r.status_code == 201, r.text  # type: ignore[attr-defined]
        assert client.delete("/v1/models/corrupt").status_code == 204
    finally:
        for name in ("nulled", "corrupt", "notjson"):
            shutil.rmtree(root / name, ignore_errors=True)


def test_damaged_records_survive_a_restart(tmp_path: Path, zoo_dir: Path) -> None:
    """A damaged record (even the built-in's) on disk at start-up: ready, listing 200,
    the built-in model repaired."""
    (tmp_path / "zoo").mkdir()
    shutil.copy(zoo_dir / f"{BUILTIN_MODEL_ID}.onnx", tmp_path / "zoo")
    settings = Settings(data_dir=tmp_path, builtin_models=[BUILTIN_MODEL_ID])
    _damage(settings.models_dir, "junk", b"{")
    _damage(settings.models_dir, BUILTIN_MODEL_ID, b'{"name": null}')
    with TestClient(create_app(settings)) as c:
        assert c.get("/readyz").status_code == 200, c.get("/readyz").text
        r = c.get("/v1/models")
        assert r.status_code == 200, r.text
        assert [m["name"] for m in r.json()["models"]] == [BUILTIN_MODEL_ID]
        assert [b["name"] for b in r.json()["broken"]] == ["junk"]
        assert c.get(f"/v1/models/{BUILTIN_MODEL_ID}").json()["builtin"] is True
        assert c.delete("/v1/models/junk").status_code == 204
        assert c.get("/v1/models").json()["broken"] == []


def test_the_tensor_cap_setting_applies_to_uploads(tmp_path: Path) -> None:
    """LANTERN_MAX_MODEL_TENSOR_BYTES: a graph creating a 4 MiB constant passes the default
    cap and is refused under a 1 MiB one, naming the node."""
    from onnx import TensorProto, helper, numpy_helper

    model = conv_classifier()
    model.graph.node[-1].output[0] = "logits0"
    model.graph.initializer.append(
        numpy_helper.from_array(np.asarray([1024, 1024], np.int64), "fill_shape")
    )
    model.graph.node.extend(
        [
            helper.make_node(
                "ConstantOfShape",
                ["fill_shape"],
                ["fill"],
                name="fill_node",
                value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.0]),
            ),
            helper.make_node("ReduceSum", ["fill"], ["s"], name="sum", keepdims=0),
            helper.make_node("Add", ["logits0", "s"], ["logits"], name="add"),
        ]
    )
    data = model.SerializeToString()
    settings = Settings(data_dir=tmp_path, builtin_model=False, max_model_tensor_bytes=1024 * 1024)
    with TestClient(create_app(settings)) as c:
        r = c.post(
            "/v1/models",
            files={"file": ("m.onnx", data)},
            data={"manifest": json.dumps(manifest("capped", 16, ["a", "b", "c"]))},
        )
        assert r.status_code == 422, r.text
        assert r.json()["code"] == "invalid_model" and "fill_node" in r.json()["message"]
        assert r.json()["details"]["limit"] == 1024 * 1024
