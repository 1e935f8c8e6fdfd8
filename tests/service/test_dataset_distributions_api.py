"""activation_distributions over HTTP with the built-in digits-cnn and digits dataset: the
correct against the misclassified digits, label 3 against label 8 (the second analysis of the
layer runs no forward pass; the channels ranked by effect size with q-values); the density
bars as PNG, JSON and .npy; refusals before queueing with stable codes (unknown labels, ids,
classes, layers, sets), and an empty set refused when the job runs (422 in the job's error)."""

from __future__ import annotations

import io
import time
import zipfile
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from lantern.settings import Settings
from service.app import create_app

METHOD = "activation_distributions"


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
        time.sleep(0.1)
    raise AssertionError("job did not finish")


def submit(client: TestClient, params: dict[str, Any], dataset: str = "digits"
           ) -> dict[str, Any]:
    r = client.post("/v1/explanations", json={"model": "digits-cnn", "dataset": dataset,
                                              "method": METHOD, "params": params})
    assert r.status_code in (200, 202), r.text
    return poll(client, job_of(r))


def job_of(response: Any) -> str:
    """The job of an answer: a new job (202) or the finished one's result (200)."""
    body = response.json()
    return str(body.get("id") or body["job"])


def artifact(client: TestClient, job: str, name: str) -> dict[str, Any]:
    r = client.get(f"/v1/jobs/{job}/artifacts/{name}?format=json")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def test_correct_against_incorrect(client: TestClient) -> None:
    st = submit(client, {"layers": "conv3", "sets": [{"by": "correct"}, {"by": "incorrect"}]})
    assert st["state"] == "succeeded", st
    assert st["model_calls"] == 1797
    extras = st["result_summary"]["extras"]
    sizes = {s["name"]: s["size"] for s in extras["sets"]}
    assert sizes["correct"] + sizes["incorrect"] == 1797 and sizes["incorrect"] > 0
    # the same split as dataset_predictions' (from the same cached logits: no forward pass)
    r = client.post("/v1/explanations", json={"model": "digits-cnn", "dataset": "digits",
                                              "method": "dataset_predictions"})
    pst = poll(client, job_of(r))
    assert pst["model_calls"] == 0
    accuracy = pst["result_summary"]["extras"]["accuracy"]
    assert sizes["correct"] == round(accuracy * 1797)
    table = artifact(client, st["id"], "differences")["data"]
    assert table["columns"][:5] == ["rank", "layer", "channel", "auroc", "cohens_d"]
    rows = table["rows"]
    assert len(rows) == 32 and [r[0] for r in rows] == list(range(1, 33))
    effect = [abs(r[3] - 0.5) for r in rows]
    assert effect == sorted(effect, reverse=True)
    assert all(0.0 <= r[8] <= 1.0 and r[8] >= r[7] - 1e-12 for r in rows)  # q >= p
    assert extras["compared"] == ["correct", "incorrect"]
    assert extras["top_channel"]["channel"] == rows[0][2]


def test_label_3_against_label_8_and_the_renderings(client: TestClient) -> None:
    body = {"layers": ["conv3"], "statistic": "max", "bins": 16,
            "sets": [{"by": "label", "value": "3"}, {"by": "label", "value": 8},
                     {"by": "prediction", "value": "8", "name": "called 8"}]}
    st = submit(client, body)
    assert st["state"] == "succeeded", st
    assert st["model_calls"] == 0  # conv3 is in the cache since the first analysis
    dist = artifact(client, st["id"], "distributions")
    data = dist["data"]
    assert data["sets"] == ["label 3", "label 8", "called 8"]
    counts = np.asarray(data["counts"])
    assert counts.shape == (32, 3, 16)
    assert counts[:, 0].sum(axis=1).tolist() == [183] * 32  # 183 threes in load_digits
    assert counts[:, 1].sum(axis=1).tolist() == [174] * 32  # 174 eights
    assert np.all(np.diff(np.asarray(data["edges"]), axis=1) > 0)
    table = artifact(client, st["id"], "differences")["data"]["rows"]
    assert abs(table[0][3] - 0.5) > 0.4  # some channel tells threes from eights
    assert table[0][8] < 1e-6  # and its BH q-value says so
    assert data["order"][0] == data["channels"].index(table[0][2])
    png = client.get(f"/v1/jobs/{st['id']}/artifacts/distributions?format=png")
    assert png.status_code == 200 and png.content[:4] == b"\x89PNG"
    img = Image.open(io.BytesIO(png.content))
    assert img.width > 500 and img.height > 32 * 3 * 10
    view = client.get(f"/v1/jobs/{st['id']}/result?format=png")
    assert view.status_code == 200 and view.content == png.content
    npy = client.get(f"/v1/jobs/{st['id']}/artifacts/distributions?format=npy")
    np.testing.assert_array_equal(np.load(io.BytesIO(npy.content)), counts)
    by_label = submit(client, {"layers": "conv3", "sets": "by_label",
                               "compare": ["label 3", "label 8"]})
    assert by_label["state"] == "succeeded", by_label
    assert [s["size"] for s in by_label["result_summary"]["extras"]["sets"]] == [
        178, 182, 177, 183, 181, 182, 181, 179, 174, 180]


@pytest.mark.parametrize(
    ("params", "code", "words"),
    [
        ({"sets": [{"by": "label", "value": "cat"}]}, "unknown_label", "no label 'cat'"),
        ({"sets": [{"by": "prediction", "value": "cat"}]}, "unknown_label", "no class 'cat'"),
        ({"sets": [{"ids": ["3/0003.png", "3/9999.png"]}]}, "invalid_params", "not images"),
        ({"layers": ["nope"]}, "unknown_layer", "no layer 'nope'"),
        ({"sets": [{"by": "label"}]}, "invalid_params", "value"),
        ({"sets": [{"by": "all", "ids": ["3/0003.png"]}]}, "invalid_params", "not both"),
        ({"sets": [{"by": "all"}, {"by": "correct"}], "compare": [0, 3]}, "invalid_params",
         "no set 3"),
        ({"sets": [{"by": "all"}, {"by": "all"}]}, "invalid_params", "its own `name`"),
        ({"bins": 1000}, "invalid_params", "bins"),
        ({"sets": "by_label", "compare": ["3", "label 8"]}, "invalid_params",
         "no set is called '3'"),
        ({"compare": [True, False]}, "invalid_params", "compare"),
    ],
)
def test_refused_before_queueing(client: TestClient, params: dict[str, Any], code: str,
                                 words: str) -> None:
    r = client.post("/v1/explanations", json={"model": "digits-cnn", "dataset": "digits",
                                              "method": METHOD, "params": params})
    assert r.status_code == 422, r.text
    assert r.json()["code"] == code
    assert words in r.text


def _zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for k, v in files.items():
            zf.writestr(k, v)
    return buf.getvalue()


def test_an_empty_set_fails_the_job_with_a_4xx(client: TestClient) -> None:
    """Ten zeros the model gets right: nothing is incorrect — known only once the model has
    run, so the job fails with 422 invalid_params and a sentence."""
    r = client.post("/v1/explanations", json={"model": "digits-cnn", "dataset": "digits",
                                              "method": "dataset_predictions"})
    cells = artifact(client, poll(client, job_of(r))["id"], "cells")["data"]["rows"]
    right = next(c for c in cells if c[0] == 0 and c[1] == 0)[5][:10]
    from engine.datasets.zoo.digits import files

    wanted = set(right)
    picked = {k: v for k, v in files() if k in wanted}
    up = client.post("/v1/datasets", files={"file": ("z.zip", _zip(picked), "application/zip")},
                     data={"name": "zeros"})
    assert up.status_code == 201, up.text
    st = submit(client, {"layers": "conv3", "sets": [{"by": "correct"}, {"by": "incorrect"}]},
                dataset="zeros")
    assert st["state"] == "failed", st
    assert st["error"]["code"] == "invalid_params"
    assert "'incorrect' holds no image" in st["error"]["message"]
    res = client.get(f"/v1/jobs/{st['id']}/result")
    assert 400 <= res.status_code < 500
