"""Quality scores asked for with an explanation: computed beside the map, counted in the
job's cost, and part of the request's identity."""

from __future__ import annotations

import numpy as np
from fastapi.testclient import TestClient

from lantern_testing.images import b64, png_bytes


def body(**overrides: object) -> dict[str, object]:
    px = np.zeros((8, 8, 3), np.uint8)
    px[:4, :4, 0] = 200  # the tiny model's evidence: red in the top-left quadrant
    return {"model": "tiny", "method": "occlusion", "image": b64(png_bytes(px)),
            "target": "left", "params": {"window": 4, "stride": 4}, **overrides}


def test_metrics_beside_the_map(client: TestClient) -> None:
    r = client.post("/v1/explanations?wait=30", json=body(metrics=["deletion", "insertion"]))
    assert r.status_code == 200, r.text
    res = r.json()
    assert set(res["metrics"]) == {"deletion", "insertion"}
    for name in ("deletion", "insertion"):
        m = res["metrics"][name]
        assert 0.0 <= m["auc"] <= 1.0
        assert m["forward_passes"] == 9  # 8 rows of 8 pixels, plus the start
    # occlusion: 1 target pass + 1 reference + 4 windows; each curve 9 passes
    assert res["model_calls"] == 6 + 18
    assert res["cost"] == {"forward_passes": 24, "backward_passes": 0}
    # removing the evidence first kills the score at once: deletion well under insertion
    assert res["metrics"]["deletion"]["auc"] < res["metrics"]["insertion"]["auc"]
    plain = client.post("/v1/explanations?wait=30", json=body()).json()
    assert plain["job"] != res["job"] and plain["metrics"] == {}


def test_sanity_for_a_gradient_method(client: TestClient) -> None:
    r = client.post("/v1/explanations?wait=30", json=body(
        method="saliency", params={}, metrics={"names": ["sanity"], "sanity": {"top_k": 1}}))
    assert r.status_code == 200, r.text
    s = r.json()["metrics"]["sanity"]
    assert s["layers"] and s["forward_passes"] >= 1
    assert s["spearman"] is None or -1.0 <= s["spearman"] <= 1.0


def test_bad_metrics_are_422(client: TestClient) -> None:
    r = client.post("/v1/explanations", json=body(metrics=["faithfulness"]))
    assert r.status_code == 422 and r.json()["code"] == "invalid_params"
    r = client.post("/v1/explanations", json=body(metrics={"names": ["deletion"],
                                                          "deletion": {"substrate": "x"}}))
    assert r.status_code == 422 and r.json()["code"] == "invalid_params"
