"""The contract on the wire: objectives in requests, typed artifacts in results, each
rendered by its type at /v1/jobs/{id}/artifacts/{name}, and the refusals."""

from __future__ import annotations

import io

import numpy as np
from fastapi.testclient import TestClient
from PIL import Image

from engine.errors import status_of
from lantern_testing.images import b64, chelsea_png, png_bytes

BUILTIN = "efficientnet-lite0"


def explain(client: TestClient, **body: object) -> dict:  # type: ignore[type-arg]
    r = client.post("/v1/explanations?wait=30", json={"image": b64(chelsea_png()), **body})
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def test_a_result_lists_its_artifacts_with_links(client: TestClient) -> None:
    res = explain(client, model=BUILTIN, method="grad_cam", target=285, outputs=[])
    assert res["objective"]["kind"] == "class" and res["objective"]["index"] == 285
    assert res["target"]["index"] == 285 and res["attribution"]["values"] is None
    by_name = {a["name"]: a for a in res["artifacts"]}
    assert by_name["attribution"]["type"] == "attribution"
    assert by_name["attribution"]["shape"] == [224, 224]
    assert by_name["attribution"]["axes"] == ["y", "x"]
    assert by_name["cam"]["shape"] == [7, 7]
    assert set(by_name["attribution"]["links"]) == {"json", "npy", "png", "overlay"}
    job = res["job"]
    body = client.get(by_name["cam"]["links"]["json"]).json()
    assert body["type"] == "attribution" and np.asarray(body["data"]["values"]).shape == (7, 7)
    npy = np.load(io.BytesIO(client.get(f"/v1/jobs/{job}/artifacts/cam?format=npy").content))
    np.testing.assert_allclose(npy, body["data"]["values"], rtol=1e-6)
    png = client.get(f"/v1/jobs/{job}/artifacts/attribution?format=overlay&alpha=0.3")
    assert png.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(png.content)).size == (451, 300)  # chelsea's own size
    r = client.get(f"/v1/jobs/{job}/artifacts/nope")
    assert r.status_code == 404 and r.json()["code"] == "unknown_artifact"
    r = client.get(f"/v1/jobs/{job}/artifacts/cam?format=svg")
    assert r.status_code == 422 and r.json()["code"] == "invalid_format"


def test_activation_maps_picture_is_its_grid_by_view(client: TestClient) -> None:
    res = explain(client, model=BUILTIN, method="activation_maps", params={"top_k": 4})
    types = {a["name"]: a["type"] for a in res["artifacts"]}
    assert types == {"attribution": "attribution", "grid": "image", "channel_stats": "table"}
    assert res["views"]["png"] == "grid"
    png = client.get(f"/v1/jobs/{res['job']}/result?format=png").content
    grid = client.get(f"/v1/jobs/{res['job']}/artifacts/grid?format=png").content
    assert png == grid
    stats = client.get(f"/v1/jobs/{res['job']}/artifacts/channel_stats").json()["data"]
    assert stats["columns"][0] == "channel" and len(stats["rows"]) == 1280


def test_metrics_become_curve_artifacts(client: TestClient) -> None:
    res = explain(
        client, model="tiny", method="saliency", target=0,
        image=b64(png_bytes(np.full((8, 8, 3), 100, np.uint8))), metrics=["deletion"],
    )
    curve = next(a for a in res["artifacts"] if a["name"] == "deletion")
    assert curve["type"] == "curve" and "svg" in curve["links"]
    body = client.get(curve["links"]["json"]).json()["data"]
    assert len(body["x"]) == len(body["y"]) == 9
    assert body["auc"] == res["metrics"]["deletion"]["auc"]
    svg = client.get(curve["links"]["svg"])
    assert svg.headers["content-type"].startswith("image/svg+xml") and b"<polyline" in svg.content


def test_an_inner_objective_through_the_api(client: TestClient) -> None:
    layers = client.get(f"/v1/models/{BUILTIN}").json()["layers"]
    layer = next(ly["name"] for ly in layers if ly["spatial"])
    res = explain(
        client, model=BUILTIN, method="saliency",
        objective={"kind": "channel", "layer": layer, "channel": 3}, outputs=["values"],
    )
    assert res["objective"] == {"kind": "channel", "layer": layer, "channel": 3}
    assert res["target"] is None
    assert np.abs(np.asarray(res["attribution"]["values"])).sum() > 0


def test_objective_refusals(client: TestClient) -> None:
    def refused(body: dict, code: str) -> None:  # type: ignore[type-arg]
        r = client.post("/v1/explanations", json={"image": b64(chelsea_png()), **body})
        assert r.status_code == 422 and r.json()["code"] == code, r.text

    base = {"model": BUILTIN, "method": "saliency"}
    refused({**base, "objective": {"kind": "channel", "layer": "nope", "channel": 0}},
            "unknown_layer")
    refused({**base, "objective": {"kind": "channel", "layer": "head.act", "channel": 99999}},
            "invalid_objective")
    refused({**base, "target": 1, "objective": {"kind": "class", "target": 2}}, "invalid_input")
    refused({**base, "method": "grad_cam",
             "objective": {"kind": "layer_norm", "layer": "head.act"}}, "invalid_objective")
    refused({**base, "objective": {"kind": "neuron", "layer": "head.act", "channel": 0,
                                   "y": 99}}, "invalid_objective")
    refused({**base, "target": True}, "invalid_input")  # a boolean is no class index


def test_a_failed_job_keeps_its_status() -> None:
    assert status_of("unknown_model") == 404
    assert status_of("backend_unavailable") == 503
    assert status_of("invalid_params") == 422
    assert status_of("internal_error") == 500


def test_a_running_job_publishes_previews(client: TestClient) -> None:
    from engine.artifacts import ImageArtifact
    from engine.methods.base import ScaledProgress, publish_preview
    from jobs.runner import JobProgress
    from jobs.store import JobRecord

    rt = client.app.state.lantern.rt  # type: ignore[attr-defined]
    rec, _ = rt.jobs.create_job(JobRecord(
        id="preview-job", model=BUILTIN, version="v", method="saliency", params={},
        objective={"kind": "class", "target": 0}, input=None, owner="anonymous"))
    rt.jobs.update_job(rec.id, state="running")
    r = client.get(f"/v1/jobs/{rec.id}/artifacts/step64")
    assert r.status_code == 409 and r.json()["code"] == "job_not_ready"  # nothing yet
    pixels = np.zeros((4, 6, 3), np.uint8)
    pixels[..., 1] = 200
    # through a scaled progress, as a method receives it from the runner
    publish_preview(ScaledProgress(JobProgress(rt, rec.id), 0.0, 0.6),
                    [ImageArtifact("step64", pixels, "step 64")])
    st = client.get(f"/v1/jobs/{rec.id}").json()
    assert [p["name"] for p in st["preview"]] == ["step64"]
    png = client.get(st["preview"][0]["links"]["png"])
    assert png.status_code == 200
    assert np.asarray(Image.open(io.BytesIO(png.content)))[0, 0, 1] == 200
    publish_preview(lambda f: None, [])  # a plain progress takes no previews: nothing happens
