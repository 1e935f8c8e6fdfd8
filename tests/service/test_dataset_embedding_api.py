"""The embedding analysis over HTTP: the built-in digits-cnn over the built-in digits
dataset (1,797 images). The t-SNE of conv3's pooled activations separates the classes (a
cross-validated 5-NN classifier in 2-D >= 90 %); a placing request with a few (noised)
digits images reuses the stored map — no fit, no forward pass over the dataset, one pass
per placed image — and lands each among its own class; UMAP works too; bad requests are
refused before queueing with stable codes."""

from __future__ import annotations

import base64
import io
import time
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sklearn.model_selection import cross_val_score
from sklearn.neighbors import KNeighborsClassifier

from lantern.settings import Settings
from service.app import create_app

CONV3 = {"kind": "layer_norm", "layer": "conv3"}
PICKS = [0, 11, 402, 903, 1500]  # dataset indices whose noised copies are placed


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Any:
    settings = Settings(data_dir=tmp_path_factory.mktemp("data"), builtin_models=["digits-cnn"])
    with TestClient(create_app(settings)) as c:
        yield c


def poll(client: TestClient, job: str, timeout: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st: dict[str, Any] = client.get(f"/v1/jobs/{job}").json()
        if st["state"] in ("succeeded", "failed", "cancelled"):
            return st
        time.sleep(0.2)
    raise AssertionError("job did not finish")


def run(client: TestClient, params: dict[str, Any], objective: dict[str, Any] | None = None
        ) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the finished job's status, the embedding artifact's JSON data)."""
    r = client.post("/v1/explanations", json={
        "model": "digits-cnn", "dataset": "digits", "method": "embedding",
        "objective": objective or CONV3, "params": params})
    assert r.status_code == 202, r.text
    st = poll(client, r.json()["id"])
    assert st["state"] == "succeeded", st
    body = client.get(f"/v1/jobs/{st['id']}/artifacts/embedding?format=json")
    assert body.status_code == 200, body.text
    return st, body.json()["data"]


def knn_accuracy(data: dict[str, Any]) -> float:
    xy = np.asarray([[p["x"], p["y"]] for p in data["points"]])
    labels = np.asarray([p["label"] for p in data["points"]])
    return float(cross_val_score(KNeighborsClassifier(n_neighbors=5), xy, labels, cv=5).mean())


def noised(client: TestClient, index: int, seed: int) -> str:
    """Dataset image ``index`` with a little noise (a new input, not a dataset image), as
    base64 PNG."""
    r = client.get(f"/v1/datasets/digits/images/{index}")
    assert r.status_code == 200
    px = np.asarray(Image.open(io.BytesIO(r.content)).convert("L"), np.int16)
    rng = np.random.default_rng(seed)
    px = np.clip(px + rng.integers(-12, 13, px.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(px, "L").save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def lands_among_its_class(data: dict[str, Any], placed: dict[str, Any], label: str) -> None:
    xy = np.asarray([[p["x"], p["y"]] for p in data["points"]])
    labels = np.asarray([p["label"] for p in data["points"]])
    d2 = ((xy - [placed["x"], placed["y"]]) ** 2).sum(axis=1)
    nearest = labels[np.argsort(d2)[:10]]
    assert (nearest == label).mean() >= 0.8, (label, nearest)
    assert placed["prediction"] == label
    assert [n["label"] for n in placed["neighbours"]].count(label) >= 4


def test_tsne_of_conv3_separates_the_digits_and_places_new_ones(client: TestClient) -> None:
    st, data = run(client, {})
    assert st["model_calls"] == 1797  # the activations, computed once
    extras = st["result_summary"]["extras"]
    assert extras["map"] == "fitted" and extras["layer"] == "conv3"
    assert extras["algorithm"] == "tsne" and extras["features"] == 32
    assert len(data["points"]) == 1797 and data["placed"] == []
    first = data["points"][0]
    assert set(first) == {"x", "y", "index", "id", "label", "prediction", "correct"}
    assert knn_accuracy(data) >= 0.90
    png = client.get(f"/v1/jobs/{st['id']}/artifacts/embedding?format=png")
    assert png.status_code == 200 and png.content[:4] == b"\x89PNG"
    assert client.get(f"/v1/jobs/{st['id']}/result?format=png").content[:4] == b"\x89PNG"

    labels = {p["index"]: p["label"] for p in data["points"]}
    place = [noised(client, i, seed) for seed, i in enumerate(PICKS)]
    st2, placed = run(client, {"place": place, "colour_by": "correct"})
    extras2 = st2["result_summary"]["extras"]
    # the stored map: nothing fitted, no forward pass over the dataset
    assert extras2["map"] == "reused" and extras2["forward_passes"] == 0
    assert st2["model_calls"] == len(PICKS)
    assert [[p["x"], p["y"]] for p in placed["points"]] == [
        [p["x"], p["y"]] for p in data["points"]]
    assert len(placed["placed"]) == len(PICKS)
    for i, p in zip(PICKS, placed["placed"], strict=True):
        lands_among_its_class(data, p, labels[i])
    png2 = client.get(f"/v1/jobs/{st2['id']}/artifacts/embedding?format=png")
    assert png2.status_code == 200 and png2.content != png.content


def test_umap_of_conv3(client: TestClient) -> None:
    picks = PICKS[:2]
    st, data = run(client, {"algorithm": "umap", "place": [noised(client, i, 7) for i in picks]})
    assert st["model_calls"] == len(picks)  # the activations were cached by the t-SNE
    extras = st["result_summary"]["extras"]
    assert extras["algorithm"] == "umap" and extras["map"] == "fitted"
    assert extras["n_neighbors"] == 15
    assert knn_accuracy(data) >= 0.90
    labels = {p["index"]: p["label"] for p in data["points"]}
    for i, p in zip(picks, data["placed"], strict=True):
        lands_among_its_class(data, p, labels[i])


def test_the_output_by_default(client: TestClient) -> None:
    """Without an objective, the logits are embedded (no new forward pass either)."""
    r = client.post("/v1/explanations", json={
        "model": "digits-cnn", "dataset": "digits", "method": "embedding",
        "params": {"iterations": 50}})
    assert r.status_code == 202, r.text
    st = poll(client, r.json()["id"])
    assert st["state"] == "succeeded", st
    assert st["model_calls"] == 0
    assert st["result_summary"]["extras"]["layer"] == "output"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"params": {"algorithm": "pca"}}, "invalid_params"),
        ({"params": {"perplexity": 0.5}}, "invalid_params"),
        ({"params": {"place": ["iVBOR"] * 17}}, "invalid_params"),
        ({"params": {"place": ["@@not base64@@"]}}, "invalid_params"),
        ({"params": {"place": [base64.b64encode(b"no picture here").decode()]}},
         "invalid_image"),
        ({"objective": {"kind": "channel", "layer": "conv3", "channel": 0}},
         "invalid_objective"),
        ({"objective": {"kind": "layer_norm", "layer": "nope"}}, "unknown_layer"),
        ({"dataset": None}, "invalid_input"),
    ],
)
def test_refused_before_queueing(client: TestClient, body: dict[str, Any], code: str) -> None:
    full = {"model": "digits-cnn", "method": "embedding", "dataset": "digits",
            "objective": CONV3, **body}
    r = client.post("/v1/explanations", json=full)
    assert r.status_code == 422, r.text
    assert r.json()["code"] == code
