"""The inside-the-network methods through the API: bad requests refused with stable codes
before anything is queued (unknown layer, channel out of range, a neuron on a layer with no
spatial extent, a size larger than the model, too many units for the cost limit), and jobs
of nmf_groups and semantic_dictionary with their artifacts — the second dictionary of a
layer costing one forward pass in the job's cost."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from lantern.settings import Settings
from lantern_testing.images import b64, png_bytes
from lantern_testing.inside import pointwise_cnn, scene
from lantern_testing.models import manifest
from service.app import create_app

SIZE = 8


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("inside-api"), builtin_model=False,
                        max_job_cost=2_000)
    kernel, head, _ = scene(size=SIZE, channels=6)
    with TestClient(create_app(settings)) as c:
        r = c.post("/v1/models", files={"file": ("m.onnx", pointwise_cnn(kernel, head, SIZE)
                                                 .SerializeToString())},
                   data={"manifest": json.dumps(manifest("pw", SIZE, ["a", "b", "c"]))})
        assert r.status_code == 201, r.text
        yield c


@pytest.fixture(scope="module")
def image() -> str:
    _, _, img = scene(size=SIZE, channels=6)
    return b64(png_bytes(np.clip(img, 0, 255).astype(np.uint8)))


def post(client: TestClient, method: str, image: str | None, wait: int = 0,
         **body: Any) -> Any:
    req: dict[str, Any] = {"model": "pw", "method": method, **body}
    if image is not None:
        req["image"] = image
    return client.post(f"/v1/explanations{'?wait=' + str(wait) if wait else ''}", json=req)


@pytest.mark.parametrize(("method", "body", "code"), [
    ("nmf_groups", {"params": {"layer": "nope"}}, "unknown_layer"),
    ("nmf_groups", {"params": {"layer": "flat"}}, "invalid_params"),
    ("nmf_groups", {"params": {"layer": "act", "groups": 7}}, "invalid_params"),
    ("nmf_groups", {"params": {"layer": "act", "groups": 13}}, "invalid_params"),
    ("nmf_groups", {"params": {"layer": "act", "size": SIZE + 1}}, "invalid_params"),
    ("nmf_groups", {"params": {"layer": "act", "size": SIZE, "steps": 400}}, "job_too_costly"),
    ("nmf_groups", {"params": {"layer": "act"},
                    "objective": {"kind": "channel", "layer": "act", "channel": 0}},
     "invalid_objective"),
    ("semantic_dictionary", {"params": {"layer": "nope"}}, "unknown_layer"),
    ("semantic_dictionary", {"params": {"layer": "flat"}}, "invalid_params"),
    ("semantic_dictionary", {"params": {"layer": "act", "size": SIZE + 1}}, "invalid_params"),
    ("semantic_dictionary", {"params": {"layer": "act", "top_n": 7}}, "invalid_params"),
    ("semantic_dictionary", {"params": {"layer": "act", "top_n": 17}}, "invalid_params"),
    ("semantic_dictionary", {"params": {"layer": "act", "size": SIZE, "top_n": 3, "steps": 512}},
     "job_too_costly"),
    ("activation_maps", {"objective": {"kind": "channel", "layer": "act", "channel": 6}},
     "invalid_objective"),
    ("activation_maps", {"objective": {"kind": "channel", "layer": "nope", "channel": 0}},
     "unknown_layer"),
    ("activation_maps", {"objective": {"kind": "layer_norm", "layer": "act"},
                         "params": {"channels": [9]}}, "invalid_params"),
    ("activation_maps", {"objective": {"kind": "neuron", "layer": "act", "channel": 0}},
     "invalid_objective"),
    ("feature_visualisation", {"objective": {"kind": "neuron", "layer": "flat", "channel": 0},
                               "params": {"size": 8}}, "invalid_objective"),
    ("feature_visualisation", {"objective": {"kind": "channel", "layer": "act", "channel": 6},
                               "params": {"size": 8}}, "invalid_objective"),
    ("feature_visualisation", {"objective": {"kind": "channel", "layer": "act", "channel": 0},
                               "params": {"size": 8, "steps": 1000, "channels": [1, 2]}},
     "job_too_costly"),
    ("deepdream", {"objective": {"kind": "layer_norm", "layer": "nope"}}, "unknown_layer"),
    ("deepdream", {"objective": {"kind": "neuron", "layer": "flat", "channel": 0}},
     "invalid_objective"),
])
def test_bad_requests_are_refused_with_codes(
    client: TestClient, image: str, method: str, body: dict[str, Any], code: str
) -> None:
    inputs = None if method == "feature_visualisation" else image
    r = post(client, method, inputs, **body)
    assert r.status_code == 422, r.text
    assert r.json()["code"] == code, r.text


def test_nmf_groups_job(client: TestClient, image: str) -> None:
    r = post(client, "nmf_groups", image, wait=60, target=1,
             params={"layer": "act", "groups": 3, "size": SIZE, "steps": 5})
    assert r.status_code == 200, r.text
    res = r.json()
    names = [a["name"] for a in res["artifacts"]]
    assert names == ["groups", "key", "group_0", "group_1", "group_2"]
    groups = res["artifacts"][0]
    assert groups["type"] == "groups" and groups["shape"] == [3, SIZE, SIZE]
    assert groups["meta"]["thumbnails"] == ["group_0", "group_1", "group_2"]
    assert sum(groups["meta"]["attribution"]) == pytest.approx(
        res["extras"]["attribution_total"], rel=1e-5)
    for fmt in ("png", "overlay"):
        png = client.get(groups["links"][fmt])
        assert png.status_code == 200 and png.content[:4] == b"\x89PNG", fmt
    assert client.get(f"/v1/jobs/{res['job']}/result?format=png").content == client.get(
        groups["links"]["png"]).content
    maps = client.get(groups["links"]["json"]).json()["data"]["maps"]
    assert np.asarray(maps).shape == (3, SIZE, SIZE)


def test_a_second_dictionary_costs_one_forward_pass(client: TestClient, image: str) -> None:
    params = {"layer": "act", "top_n": 2, "size": SIZE, "steps": 7}
    first = post(client, "semantic_dictionary", image, wait=60, target=0, params=params)
    assert first.status_code == 200, first.text
    res = first.json()
    units = res["extras"]["units"]
    assert res["cost"]["forward_passes"] == 1 + units * 7
    d = next(a for a in res["artifacts"] if a["name"] == "dictionary")
    assert d["type"] == "dictionary" and d["shape"] == [SIZE, SIZE, 2]
    assert "overlay" in d["links"] and res["views"]["png"] == "sheet"
    data = client.get(d["links"]["json"]).json()["data"]
    assert np.asarray(data["channels"]).shape == (SIZE, SIZE, 2)
    assert set(data["thumbnails"].values()) <= {a["name"] for a in res["artifacts"]}
    assert client.get(d["links"]["overlay"]).content[:4] == b"\x89PNG"
    # another image of the same layer (a new job, not the cached result): one pass
    other = b64(png_bytes(np.full((SIZE, SIZE, 3), 200, np.uint8)))
    second = post(client, "semantic_dictionary", other, wait=60, target=0, params=params)
    assert second.status_code == 200, second.text
    body = second.json()
    assert body["job"] != res["job"]
    assert body["cost"] == {"forward_passes": 1 + 7 * body["extras"]["thumbnails_optimised"],
                            "backward_passes": 7 * body["extras"]["thumbnails_optimised"]}
    again = post(client, "semantic_dictionary", image, wait=60, target=0,
                 params={**params, "top_n": 1})
    assert again.status_code == 200, again.text
    assert again.json()["cost"] == {"forward_passes": 1, "backward_passes": 0}
