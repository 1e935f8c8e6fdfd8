"""concept_graph over HTTP on a fresh machine: the built-in digits-cnn over the built-in
digits dataset. A digit's graph is non-empty, its layers are the three convolutions, its
edges join consecutive layers only, and the top node of the last layer is among the
channels of highest class-mean activation (Summit's activation: a channel's max over
positions), computed here with ONNX Runtime on the model file and the digits themselves;
another digit (or other node counts) runs no forward pass; the SVG and PNG renderings;
bad layer lists are refused before queueing."""

from __future__ import annotations

import io
import time
import xml.etree.ElementTree as ET
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from engine.models.zoo.digits_cnn import digits_pixels, to_input
from lantern.settings import Settings
from service.app import create_app

SVG = "{http://www.w3.org/2000/svg}"
LAYERS = ["conv1", "conv2", "conv3"]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Any:
    settings = Settings(data_dir=tmp_path_factory.mktemp("data"), builtin_models=["digits-cnn"])
    with TestClient(create_app(settings)) as c:
        yield c


@pytest.fixture(scope="module")
def class_max_means(client: TestClient) -> dict[str, np.ndarray]:
    """Per layer: (10, C) — over each digit's images, the mean of each channel's max over
    positions, from ONNX Runtime on the registered model file (not the analysis)."""
    path = client.app.state.lantern.rt.load("digits-cnn").path  # type: ignore[attr-defined]
    proto = onnx.load(str(path))
    for name in LAYERS:
        proto.graph.output.append(onnx.helper.make_tensor_value_info(
            name, onnx.TensorProto.FLOAT, None))
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    pixels, labels = digits_pixels()
    values = sess.run(LAYERS, {"input": to_input(pixels)})
    return {name: np.stack([v[labels == d].max(axis=(2, 3)).mean(axis=0) for d in range(10)])
            for name, v in zip(LAYERS, values, strict=True)}


def poll(client: TestClient, job: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st: dict[str, Any] = client.get(f"/v1/jobs/{job}").json()
        if st["state"] in ("succeeded", "failed", "cancelled"):
            return st
        time.sleep(0.1)
    raise AssertionError("job did not finish")


def run(client: TestClient, **body: Any) -> dict[str, Any]:
    r = client.post("/v1/explanations", json={"model": "digits-cnn", "dataset": "digits",
                                              "method": "concept_graph", **body})
    assert r.status_code in (200, 202), r.text  # 200: the same request's cached result
    st = poll(client, r.json()["id"] if r.status_code == 202 else r.json()["job"])
    assert st["state"] == "succeeded", st
    return st


def graph(client: TestClient, job: str) -> dict[str, Any]:
    r = client.get(f"/v1/jobs/{job}/artifacts/graph?format=json")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    assert body["type"] == "graph"
    data: dict[str, Any] = body["data"]
    return data


def test_a_digits_graph(client: TestClient, class_max_means: dict[str, np.ndarray]) -> None:
    st = run(client, target=3)
    assert st["model_calls"] == 2 * 1797  # the layers' stats, then the influences
    extras = st["result_summary"]["extras"]
    assert extras["class_images"] == 183 and extras["layers"] == LAYERS
    g = graph(client, st["id"])
    assert g["layers"] == LAYERS
    nodes = {n["id"]: n for n in g["nodes"]}
    assert len(nodes) == 3 * 6 and len(g["edges"]) > 0
    for e in g["edges"]:  # only between consecutive layers, input side first
        lo, hi = nodes[e["source"]]["layer"], nodes[e["target"]]["layer"]
        assert LAYERS.index(hi) == LAYERS.index(lo) + 1
        assert 0 < e["weight"] <= 1 and e["count"] == round(e["weight"] * 183)
    for n in g["nodes"]:  # each node's class mean is the reference's
        assert n["mean"] == pytest.approx(float(class_max_means[n["layer"]][3, n["channel"]]),
                                          rel=1e-4)
        assert n["patch"].startswith("data:image/png;base64,")
    last = [n for n in g["nodes"] if n["layer"] == "conv3"]
    top3 = np.argsort(-class_max_means["conv3"][3])[:3].tolist()
    assert last[0]["channel"] in top3, (last[0], top3)
    # the renderings
    svg = client.get(f"/v1/jobs/{st['id']}/artifacts/graph?format=svg")
    assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
    root = ET.fromstring(svg.content)
    assert len([x for x in root.iter(f"{SVG}g") if x.get("class") == "node"]) == len(nodes)
    assert len(list(root.iter(f"{SVG}path"))) == len(g["edges"])
    png = client.get(f"/v1/jobs/{st['id']}/artifacts/graph?format=png")
    assert png.status_code == 200 and png.content[:4] == b"\x89PNG"
    img = Image.open(io.BytesIO(png.content))
    assert img.size == (int(g["layout"]["width"] * 2), int(g["layout"]["height"] * 2))
    assert client.get(f"/v1/jobs/{st['id']}/result?format=png").content == png.content
    channels = client.get(f"/v1/jobs/{st['id']}/artifacts/channels?format=json").json()
    assert len(channels["data"]["rows"]) == 16 + 32 + 32


def test_every_digit_top_node_and_the_shards_reused(
        client: TestClient, class_max_means: dict[str, np.ndarray]) -> None:
    for digit in range(10):
        st = run(client, target=digit, params={"nodes_per_layer": 2})
        assert st["model_calls"] in ((0, 2 * 1797) if digit == 0 else (0,))
        g = graph(client, st["id"])
        assert g["nodes"] and g["edges"]
        top = next(n for n in g["nodes"] if n["layer"] == "conv3")
        assert top["channel"] in np.argsort(-class_max_means["conv3"][digit])[:3].tolist()
    by_mean = run(client, target=7, params={"rank_by": "mean"})
    top = next(n for n in graph(client, by_mean["id"])["nodes"] if n["layer"] == "conv3")
    assert top["channel"] == int(np.argmax(class_max_means["conv3"][7]))
    # other influence counts: new influence shards only (no pass for the layers' stats)
    more = run(client, target=7, params={"top_influences": 5, "layers": ["conv2", "conv3"]})
    assert more["model_calls"] == 1797
    g = graph(client, more["id"])
    assert g["layers"] == ["conv2", "conv3"]


def test_one_chunk_and_many_give_the_same_graph(
        client: TestClient, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The module's app cuts the digits into shards of 256 (8); apps with one shard of all
    1,797 and with 19 shards of 97 give the same graph, bit for bit."""
    want = graph(client, run(client, target=3)["id"])
    for chunk in (4096, 97):
        settings = Settings(data_dir=tmp_path_factory.mktemp(f"chunk{chunk}"),
                            builtin_models=["digits-cnn"], dataset_chunk_images=chunk)
        with TestClient(create_app(settings)) as other:
            st = run(other, target=3)
            assert st["model_calls"] == 2 * 1797
            got = graph(other, st["id"])
        assert got["nodes"] == want["nodes"] and got["edges"] == want["edges"]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"params": {"layers": ["conv3", "conv1"]}}, "invalid_params"),
        ({"params": {"layers": ["conv1", "conv3"]}}, "invalid_params"),
        ({"params": {"layers": ["conv1.pre", "conv1"]}}, "invalid_params"),
        ({"params": {"layers": ["conv1", "nope"]}}, "unknown_layer"),
        ({"params": {"layers": ["conv1"]}}, "invalid_params"),
        ({"params": {"nodes_per_layer": 0}}, "invalid_params"),
        ({"target": "top1"}, "invalid_objective"),
        ({"objective": {"kind": "channel", "layer": "conv3", "channel": 0}},
         "invalid_objective"),
    ],
)
def test_refused_before_queueing(client: TestClient, body: dict[str, Any], code: str) -> None:
    r = client.post("/v1/explanations", json={"model": "digits-cnn", "dataset": "digits",
                                              "method": "concept_graph", **body})
    assert r.status_code == 422, r.text
    err = r.json()
    assert err["code"] == code and err["message"]
