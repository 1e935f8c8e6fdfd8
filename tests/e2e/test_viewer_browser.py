"""The web viewer in headless Chromium (Playwright) against a real uvicorn: upload an image,
run occlusion twice with different params, check the overlay canvas, the opacity slider,
the colour map, the error banner; save a screenshot to test-artifacts/viewer.png."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from lantern_testing.images import chelsea_png
from lantern_testing.models import linear_classifier, manifest
from lantern_testing.processes import embedded_api

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

def chromium_path() -> str | None:
    for candidate in ("/usr/bin/chromium", shutil.which("chromium") or ""):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.fixture(scope="module")
def browser_exe() -> str:
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    exe = chromium_path()
    if exe is None and shutil.which("apt-get") and os.geteuid() == 0:
        subprocess.run(
            ["apt-get", "install", "-y", "chromium"],
            capture_output=True,
            timeout=600,
            check=False,
        )
        exe = chromium_path()
    if exe is None:
        pytest.skip("chromium is not installed and could not be installed (apt-get)")
    return exe


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with embedded_api(tmp_path_factory.mktemp("viewer")) as base:
        yield base


# Reads the canvas: size, number of distinct colours, and a grid of sampled pixels.
READ_CANVAS = """() => {
  const c = document.getElementById('canvas');
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  const colours = new Set();
  for (let i = 0; i < d.length; i += 4 * 7) colours.add((d[i] << 16) | (d[i+1] << 8) | d[i+2]);
  const samples = [];
  for (let y = 5; y < c.height; y += 23) {
    for (let x = 5; x < c.width; x += 23) {
      const i = 4 * (y * c.width + x);
      samples.push(d[i], d[i+1], d[i+2]);
    }
  }
  return {width: c.width, height: c.height, distinct: colours.size, samples,
          job: c.dataset.job || null, state: c.dataset.state};
}"""


def mean_abs_diff(a: list[int], b: list[int]) -> float:
    assert len(a) == len(b) and a
    return sum(abs(x - y) for x, y in zip(a, b, strict=True)) / len(a)


def test_viewer_runs_occlusion_in_a_browser(browser_exe: str, server: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    image = tmp_path / "chelsea.png"
    image.write_bytes(chelsea_png())
    model = tmp_path / "tiny.onnx"
    weights = np.zeros((2, 3, 8, 8), np.float32)
    weights[0, 0, :4, :4] = 1.0
    model.write_bytes(linear_classifier(weights).SerializeToString())
    ARTIFACTS.mkdir(exist_ok=True)
    console_errors: list[str] = []

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=browser_exe, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 960})
            # (4xx answers are expected below; the browser logs them as failed loads)
            page.on(
                "console",
                lambda m: (
                    console_errors.append(m.text)
                    if m.type == "error" and "Failed to load resource" not in m.text
                    else None
                ),
            )
            page.on("pageerror", lambda e: console_errors.append(str(e)))
            page.goto(server + "/")
            expect(page.locator("body")).to_have_attribute("data-ready", "1", timeout=30_000)

            page.select_option("#model", "efficientnet-lite0")
            page.select_option("#method", "occlusion")
            # the params form is generated from the method's JSON schema
            expect(page.locator("#params input[name=window]")).to_have_value("16")
            expect(page.locator("#params select[name=score] option")).to_have_count(2)
            baseline = page.locator("#params select[name=baseline]")
            expect(baseline.locator("option")).to_have_count(4)  # zero, mean, blur, colour…

            page.set_input_files("#image-file", str(image))
            expect(page.locator("#canvas")).to_have_attribute("data-state", "image")
            expect(page.locator("#image-info")).to_contain_text("451×300")
            first = page.locator("#predictions tr[data-index]").first
            expect(first).to_have_attribute("data-index", "285", timeout=30_000)
            expect(first).to_contain_text("Egyptian cat")

            # an error from the API is shown: a window larger than the model's input
            page.fill("#params input[name=window]", "500")
            page.click("#run")
            expect(page.locator("#error")).to_be_visible(timeout=30_000)
            expect(page.locator("#error-code")).to_have_text("invalid_params")
            page.click("#error-close")
            expect(page.locator("#error")).to_be_hidden()

            # run 1: window 56, stride 56
            page.fill("#params input[name=window]", "56")
            page.fill("#params input[name=stride]", "56")
            page.click("#run")
            canvas = page.locator("#canvas")
            expect(canvas).to_have_attribute("data-state", "overlay", timeout=120_000)
            expect(page.locator("#job-state")).to_have_text("succeeded")
            run1: dict[str, Any] = page.evaluate(READ_CANVAS)
            assert (run1["width"], run1["height"]) == (451, 300)
            assert run1["distinct"] > 50, run1["distinct"]  # not a blank canvas
            assert len(set(run1["samples"])) > 10
            expect(page.locator("#summary")).to_contain_text("Egyptian cat")
            expect(page.locator("#summary")).to_contain_text("18")  # 2 + 16 model calls
            expect(page.locator("#extras")).to_contain_text("windows")

            # run 2: other params (window 112, stride 56, blur baseline), target by click
            page.locator("#predictions tr[data-index='281']").click()
            expect(page.locator("#target-kind")).to_have_value("index")
            page.fill("#params input[name=window]", "112")
            baseline.select_option("blur")
            page.click("#run")
            page.wait_for_function(
                "job => { const c = document.getElementById('canvas');"
                " return c.dataset.state === 'overlay' && c.dataset.job !== job; }",
                arg=run1["job"],
                timeout=120_000,
            )
            run2: dict[str, Any] = page.evaluate(READ_CANVAS)
            assert run2["job"] != run1["job"]
            assert run2["distinct"] > 50
            assert mean_abs_diff(run1["samples"], run2["samples"]) > 1.0
            expect(page.locator("#summary")).to_contain_text("tabby")

            # the opacity slider redraws the canvas
            page.locator("#opacity").fill("0.95")
            expect(page.locator("#opacity-value")).to_have_text("95%")
            expect(canvas).to_have_attribute("data-opacity", "0.95")
            opaque: dict[str, Any] = page.evaluate(READ_CANVAS)
            assert mean_abs_diff(run2["samples"], opaque["samples"]) > 5.0
            page.locator("#opacity").fill("0")
            bare: dict[str, Any] = page.evaluate(READ_CANVAS)
            assert mean_abs_diff(opaque["samples"], bare["samples"]) > 5.0

            # the colour map fetches another heatmap
            page.locator("#opacity").fill("0.6")
            page.select_option("#colormap", "viridis")
            expect(canvas).to_have_attribute("data-colormap", "viridis", timeout=30_000)
            viridis: dict[str, Any] = page.evaluate(READ_CANVAS)
            page.select_option("#colormap", "jet")
            expect(canvas).to_have_attribute("data-colormap", "jet", timeout=30_000)
            jet: dict[str, Any] = page.evaluate(READ_CANVAS)
            assert mean_abs_diff(viridis["samples"], jet["samples"]) > 5.0

            # download links point at the result in every format
            hrefs = {
                name: page.get_attribute(f"#dl-{name}", "href")
                for name in ("png", "overlay", "json", "npy")
            }
            for name, href in hrefs.items():
                assert href and f"/v1/jobs/{run2['job']}/result" in href, (name, href)
                r = httpx.get(server + href)
                assert r.status_code == 200, (name, r.text)
            assert "alpha=0.6" in str(hrefs["overlay"])

            # run 3: Grad-CAM on the cat, with deletion and insertion scores asked for
            page.select_option("#method", "grad_cam")
            page.select_option("#target-kind", "top1")
            page.check("#metrics input[value=deletion]")
            page.check("#metrics input[value=insertion]")
            page.click("#run")
            page.wait_for_function(
                "job => { const c = document.getElementById('canvas');"
                " return c.dataset.state === 'overlay' && c.dataset.job !== job; }",
                arg=run2["job"],
                timeout=120_000,
            )
            run3: dict[str, Any] = page.evaluate(READ_CANVAS)
            assert run3["distinct"] > 50
            expect(page.locator("#summary")).to_contain_text("grad_cam")
            expect(page.locator("#extras")).to_contain_text("metrics.deletion.auc")
            expect(page.locator("#extras")).to_contain_text("metrics.insertion.auc")

            page.screenshot(path=str(ARTIFACTS / "viewer.png"), full_page=True)

            page.uncheck("#metrics input[value=deletion]")
            page.uncheck("#metrics input[value=insertion]")
            page.select_option("#method", "occlusion")

            # a long job is cancelled from the page
            page.select_option("#target-kind", "top1")
            page.fill("#params input[name=window]", "8")
            page.fill("#params input[name=stride]", "4")
            page.fill("#params input[name=batch_size]", "1")
            page.click("#run")
            expect(page.locator("#job-state")).to_have_text(
                re.compile("queued|running"), timeout=30_000
            )
            expect(canvas).to_have_attribute("data-state", "image")
            page.click("#cancel")
            expect(page.locator("#job-state")).to_have_text("cancelled", timeout=30_000)
            expect(page.locator("#run")).to_be_enabled()

            # a model is uploaded with its manifest, selected and used for predictions
            page.click("#upload-model summary")
            page.set_input_files("#model-file", str(model))
            page.fill("#model-manifest", json.dumps(manifest("tiny-ui", 8, ["left", "other"])))
            page.click("#model-upload")
            expect(page.locator("#model")).to_have_value("tiny-ui", timeout=30_000)
            expect(page.locator("#model-info")).to_contain_text("8×8 NCHW · 2 labels")
            expect(page.locator("#predictions tr[data-index]")).to_have_count(2, timeout=30_000)
            # a bad manifest is refused with the API's error
            page.click("#upload-model summary")
            page.fill("#model-manifest", json.dumps(manifest("tiny-ui2", 16, ["a", "b"])))
            page.click("#model-upload")
            expect(page.locator("#error-code")).to_have_text("invalid_manifest", timeout=30_000)
        finally:
            browser.close()
    assert not console_errors, console_errors
