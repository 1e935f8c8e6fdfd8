"""LIME, RISE, KernelSHAP and drill-down occlusion through the API."""

from __future__ import annotations

import io

import numpy as np
from fastapi.testclient import TestClient
from PIL import Image

from lantern_testing.images import b64, png_bytes

GRID = {"algorithm": "grid", "cell": 4}  # 4 superpixels on the tiny 8 x 8 model


def image() -> str:
    px = np.zeros((16, 24, 3), np.uint8)
    px[..., 0] = 40
    return b64(png_bytes(px))


def explain(client: TestClient, method: str, params: dict[str, object]) -> dict[str, object]:
    r = client.post(
        "/v1/explanations?wait=30",
        json={
            "model": "tiny",
            "method": method,
            "image": image(),
            "target": "left",
            "params": params,
        },
    )
    assert r.status_code == 200, r.text
    body: dict[str, object] = r.json()
    return body


def test_lime_reports_fidelity_and_outlines_segments(client: TestClient) -> None:
    body = explain(
        client, "lime", {"num_samples": 64, "segmentation": GRID, "top_k": 1, "hide": "zero"}
    )
    extras = body["extras"]
    assert isinstance(extras, dict)
    assert len(extras["segments"]) == 4 and 0.0 <= extras["r2"] <= 1.0 + 1e-9
    # the tiny model reads only the top-left quadrant: segment 0
    assert extras["top_positive"] == [0]
    ov = client.get(f"/v1/jobs/{body['job']}/result?format=overlay")
    img = Image.open(io.BytesIO(ov.content)).convert("RGB")
    assert img.size == (24, 16)  # the caller's image size
    pixels = np.asarray(img)
    green = (pixels[..., 1] > 150) & (pixels[..., 0] < 100)
    assert green.any()  # the outline of the top positive segment


def test_kernel_shap_values_sum_to_the_score_difference(client: TestClient) -> None:
    body = explain(client, "kernel_shap", {"num_samples": 64, "segmentation": GRID, "hide": "zero"})
    extras = body["extras"]
    assert isinstance(extras, dict)
    assert extras["f_x"] - extras["f_baseline"] == 16 * 40  # the red top-left quadrant
    assert abs(extras["sum_check"]) < 1e-3
    assert abs(sum(extras["segments"]) - (extras["f_x"] - extras["f_baseline"])) < 1e-3


def test_rise_and_drilldown(client: TestClient) -> None:
    rise = explain(client, "rise", {"num_masks": 1000, "grid_size": 2})
    values = np.array(rise["attribution"]["values"])  # type: ignore[index]
    assert values[:4, :4].mean() > values[4:, 4:].mean()
    drill = explain(
        client,
        "occlusion",
        {"mode": "drilldown", "window": 2, "coarse_stride": 4, "fine_stride": 2, "fraction": 0.25},
    )
    assert drill["extras"]["forward_passes_saved"] > 0  # type: ignore[index]
