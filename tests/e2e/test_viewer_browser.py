"""The web viewer in headless Chromium (Playwright) against a real uvicorn: upload an image,
run occlusion twice with different params, check the overlay canvas, the opacity slider,
the colour map, the error banner; the layer pick list, humanised durations, two answers
side by side, and the artifact cards (curve plots, image cards, and every renderer against
routed answers). Screenshots go to test-artifacts/viewer*.png."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import numpy as np
import pytest
from PIL import Image

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


@pytest.fixture(scope="module")
def browser(browser_exe: str) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=browser_exe, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any, server: str) -> Iterator[Any]:
    """The viewer, loaded and ready; fails the test on a console error or page error."""
    from playwright.sync_api import expect

    console_errors: list[str] = []
    pg = browser.new_page(viewport={"width": 1440, "height": 960})
    # (4xx answers are expected in places; the browser logs them as failed loads)
    pg.on(
        "console",
        lambda m: (
            console_errors.append(m.text)
            if m.type == "error" and "Failed to load resource" not in m.text
            else None
        ),
    )
    pg.on("pageerror", lambda e: console_errors.append(str(e)))
    pg.goto(server + "/")
    expect(pg.locator("body")).to_have_attribute("data-ready", "1", timeout=30_000)
    yield pg
    pg.close()
    assert not console_errors, console_errors


@pytest.fixture
def chelsea(tmp_path: Path) -> Path:
    image = tmp_path / "chelsea.png"
    image.write_bytes(chelsea_png())
    return image


def load_cat(page: Any, image: Path) -> None:
    """The built-in model and the cat photo, with its predictions shown."""
    from playwright.sync_api import expect

    page.select_option("#model", "efficientnet-lite0")
    page.set_input_files("#image-file", str(image))
    expect(page.locator("#canvas")).to_have_attribute("data-state", "image")
    first = page.locator("#predictions tr[data-index]").first
    expect(first).to_have_attribute("data-index", "285", timeout=30_000)


def run_and_wait(page: Any, previous_job: str | None = None) -> str:
    """Click Explain and wait for the current pane's overlay of a new job; its id."""
    page.click("#run")
    page.wait_for_function(
        "job => { const c = document.getElementById('canvas');"
        " return c && c.dataset.state === 'overlay' && c.dataset.job !== job; }",
        arg=previous_job,
        timeout=120_000,
    )
    job = page.get_attribute("#canvas", "data-job")
    assert job
    return str(job)


# a pane's main map: the overlay canvas of its attribution artifact
MAIN_CANVAS = ".card[data-artifact=attribution] canvas.heat"
HUMAN_DURATION = re.compile(r"^\d+(\.\d)? (ms|s)$|^\d+ min( \d+ s)?$|^\d+ h( \d+ min)?$")


def assert_humanised(text: str) -> None:
    """Timings text such as 'compute 9.4 s · queued 2 ms · 452 model calls'."""
    assert "e+" not in text and "e-" not in text, text
    durations = re.findall(r"(?:compute|queued) ([^·]+?)(?: ·|$)", text)
    assert durations, text
    for d in durations:
        assert HUMAN_DURATION.match(d.strip()), (d, text)


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


def test_viewer_runs_occlusion_in_a_browser(page: Any, server: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    image = tmp_path / "chelsea.png"
    image.write_bytes(chelsea_png())
    model = tmp_path / "tiny.onnx"
    weights = np.zeros((2, 3, 8, 8), np.float32)
    weights[0, 0, :4, :4] = 1.0
    model.write_bytes(linear_classifier(weights).SerializeToString())
    ARTIFACTS.mkdir(exist_ok=True)

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
        # (the job's result links, or its attribution artifact's where the server lists them)
        assert href and f"/v1/jobs/{run2['job']}/" in href, (name, href)
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
    expect(page.locator("#job-state")).to_have_text(re.compile("queued|running"), timeout=30_000)
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


def test_layer_pick_list_lists_the_models_spatial_layers(page: Any, server: str) -> None:
    from playwright.sync_api import expect

    info = httpx.get(server + "/v1/models/efficientnet-lite0").json()
    spatial = [layer["name"] for layer in info["layers"] if layer["spatial"]]
    assert spatial and len(spatial) < len(info["layers"])  # (flatten is not spatial)

    page.select_option("#model", "efficientnet-lite0")
    for method in ("grad_cam", "grad_cam_plus_plus", "activation_maps"):
        page.select_option("#method", method)
        layer = page.locator("#params select[name=layer]")
        expect(layer).to_have_attribute("data-layers", str(len(spatial)), timeout=30_000)
        values = layer.locator("option").evaluate_all("os => os.map(o => o.value)")
        assert values == ["", *spatial], method
        # "(default)" sends null: the method picks its default layer
        expect(layer).to_have_value("")
        expect(layer.locator("option").first).to_contain_text("(default")
        expect(page.locator("#params input[name=layer]")).to_have_count(0)
        # it has an accessible name (the label around it)
        expect(page.get_by_role("combobox", name="Layer")).to_have_count(1)

    # a chosen layer is what the request sends
    page.select_option("#method", "grad_cam")
    page.select_option("#params select[name=layer]", "blocks.15.project")
    sent = page.evaluate(
        "() => Object.fromEntries(Array.from(document.querySelectorAll('#params select'))"
        ".map(s => [s.name, s.value]))"
    )
    assert sent["layer"] == "blocks.15.project"


def test_durations_are_humanised(page: Any, chelsea: Path) -> None:
    from playwright.sync_api import expect

    fmt = page.evaluate(
        "() => [0.42, 12, 840, 999.7, 9415, 10020, 59990, 100000, 7_500_000]"
        ".map(window.Lantern.fmtDuration)"
    )
    assert fmt == [
        "0.4 ms",
        "12 ms",
        "840 ms",
        "1.0 s",
        "9.4 s",
        "10.0 s",
        "1 min",
        "1 min 40 s",
        "2 h 5 min",
    ]

    load_cat(page, chelsea)
    page.select_option("#method", "saliency")
    run_and_wait(page)
    timings = page.locator("#pane-current .pane-head .timings")
    expect(timings).to_contain_text("compute")
    assert_humanised(timings.inner_text())
    for cell in page.locator("#summary td.timing").all_inner_texts():
        assert HUMAN_DURATION.match(cell), cell


def test_a_count_can_be_left_to_auto(page: Any, chelsea: Path) -> None:
    """LIME's num_samples is a count or "auto": with the auto box ticked the answer's extras
    show the samples it used and the agreement it reached (a fixed count reports neither)."""
    from playwright.sync_api import expect

    load_cat(page, chelsea)
    page.select_option("#method", "lime")
    count = page.locator("#params input[name=num_samples]")
    auto = page.locator("#params input[name='num_samples.auto']")
    expect(count).to_have_value("1000")
    expect(auto).not_to_be_checked()
    auto.check()
    expect(count).to_be_disabled()
    run_and_wait(page)
    extras = page.locator("#extras")  # only an "auto" run reports these
    expect(extras).to_contain_text("agreement")
    expect(extras).to_contain_text("samples_used")
    used = page.evaluate(
        "() => [...document.querySelectorAll('#extras tr')].map(r => r.innerText)"
        ".find(t => t.startsWith('samples_used'))"
    )
    assert used and 64 <= int(re.findall(r"\d+", used)[-1]) <= 4000, used
    # unticked, the count is sent again
    auto.uncheck()
    expect(count).to_be_enabled()


def test_side_by_side_compares_two_answers(page: Any, server: str, chelsea: Path) -> None:
    from playwright.sync_api import expect

    load_cat(page, chelsea)
    panes = page.locator("#panes > .pane")
    expect(page.locator("#pin")).to_be_disabled()
    expect(page.locator("#clear-compare")).to_be_hidden()

    # answer 1: Grad-CAM on a chosen layer
    page.select_option("#method", "grad_cam")
    expect(page.locator("#params select[name=layer]")).not_to_have_attribute(
        "data-layers", "pending", timeout=30_000
    )
    page.select_option("#params select[name=layer]", "blocks.15.project")
    first = run_and_wait(page)
    expect(panes).to_have_count(1)
    page.click("#pin")
    expect(panes).to_have_count(2)
    expect(page.locator("#clear-compare")).to_be_visible()
    pinned = page.locator("#panes > .pane.pinned")
    expect(pinned.locator(".pane-method")).to_have_text("grad_cam")
    expect(pinned.locator(".pane-params")).to_contain_text("layer=blocks.15.project")
    expect(pinned.locator(MAIN_CANVAS)).to_have_attribute("data-state", "overlay")
    expect(pinned.locator("[id]")).to_have_count(0)  # the page's ids stay with the latest
    # the current pane waits for the next answer, showing the input
    expect(page.locator("#pane-current #canvas")).to_have_attribute("data-state", "image")

    # answer 2: another method on the same image, drawn beside the pinned one
    page.select_option("#method", "saliency")
    second = run_and_wait(page, first)
    assert second != first
    expect(panes).to_have_count(2)
    current = page.locator("#pane-current")
    expect(current.locator(".pane-method")).to_have_text("saliency")
    expect(pinned.locator(".pane-method")).to_have_text("grad_cam")
    for pane in (pinned, current):
        expect(pane.locator(MAIN_CANVAS)).to_have_attribute("data-state", "overlay")
        expect(pane.locator(".pane-target")).to_contain_text("Egyptian cat")
        expect(pane.locator(".card .downloads a")).not_to_have_count(0)
        assert_humanised(pane.locator(".pane-head .timings").inner_text())
    assert pinned.locator(MAIN_CANVAS).get_attribute("data-job") == first
    assert current.locator(MAIN_CANVAS).get_attribute("data-job") == second
    # the display controls apply to both panes
    page.locator("#opacity").fill("0.8")
    for pane in (pinned, current):
        expect(pane.locator(MAIN_CANVAS)).to_have_attribute("data-opacity", "0.8")
    # both panes sit side by side
    boxes = [panes.nth(i).bounding_box() for i in range(2)]
    assert boxes[0] and boxes[1]
    assert boxes[0]["x"] + boxes[0]["width"] <= boxes[1]["x"] + 1
    assert abs(boxes[0]["y"] - boxes[1]["y"]) < 5
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "viewer-compare.png"), full_page=True)

    # pin the saliency answer instead, and compare another target with the same method
    page.click("#pin")
    expect(pinned.locator(".pane-method")).to_have_text("saliency")
    page.locator("#predictions tr[data-index='281']").click()
    run_and_wait(page, second)
    expect(current.locator(".pane-target")).to_contain_text("tabby")
    expect(pinned.locator(".pane-target")).to_contain_text("Egyptian cat")

    # clearing the comparison leaves the latest answer alone
    page.click("#clear-compare")
    expect(panes).to_have_count(1)
    expect(page.locator("#clear-compare")).to_be_hidden()
    expect(current.locator(".pane-target")).to_contain_text("tabby")
    expect(page.locator("#canvas")).to_have_attribute("data-state", "overlay")


def test_deletion_curve_is_plotted(page: Any, server: str, chelsea: Path) -> None:
    """Needs the artifacts wire format: the deletion metric comes back as a curve artifact."""
    from playwright.sync_api import expect

    load_cat(page, chelsea)
    page.select_option("#method", "grad_cam")
    page.check("#metrics input[value=deletion]")
    job = run_and_wait(page)
    card = page.locator("#pane-current .card[data-type=curve][data-artifact=deletion]")
    expect(card).to_have_count(1, timeout=30_000)
    svg = card.locator("svg.curve")
    expect(svg).to_be_visible(timeout=30_000)
    expect(card.locator(".card-title")).to_contain_text("AUC")
    expect(svg.locator("title")).to_contain_text("AUC")
    assert int(svg.get_attribute("data-points") or 0) > 10
    assert len(svg.locator("path.line").get_attribute("d") or "") > 100
    expect(svg.locator("text.tick")).not_to_have_count(0)  # axes with ticks
    # its downloads come from the artifact's links
    body = httpx.get(f"{server}/v1/jobs/{job}/result?format=json").json()
    deletion = next(a for a in body["artifacts"] if a["name"] == "deletion")
    assert deletion["type"] == "curve"
    hrefs = card.locator(".downloads a").evaluate_all("as => as.map(a => a.getAttribute('href'))")
    assert deletion["links"]["json"] in hrefs
    assert all(f"/v1/jobs/{job}/artifacts/deletion" in h for h in hrefs), hrefs
    data = httpx.get(server + deletion["links"]["json"]).json()["data"]
    expect(card.locator(".card-title")).to_contain_text(
        page.evaluate("x => window.Lantern.fmtNumber(x)", data["auc"])
    )


def test_activation_maps_show_an_image_card(page: Any, server: str, chelsea: Path) -> None:
    """Needs the artifacts wire format: the channel grid comes back as an image artifact."""
    from playwright.sync_api import expect

    load_cat(page, chelsea)
    page.select_option("#method", "activation_maps")
    page.click("#run")
    card = page.locator("#pane-current .card[data-type=image]").first
    expect(card).to_be_visible(timeout=120_000)
    img = card.locator("img.artifact-img")
    page.wait_for_function(
        "img => img.complete && img.naturalWidth > 0", arg=img.element_handle(), timeout=30_000
    )
    expect(page.locator("#job-state")).to_have_text("succeeded")
    # the overlay's heatmap loads on its own: the canvas names the job once it is drawn
    expect(page.locator("#canvas")).to_have_attribute("data-state", "overlay", timeout=60_000)
    job = page.get_attribute("#canvas", "data-job")
    src = img.get_attribute("src") or ""
    name = card.get_attribute("data-artifact")
    assert f"/v1/jobs/{job}/artifacts/{name}" in src, src
    r = httpx.get(server + src)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png", (name, r.text)
    body = httpx.get(f"{server}/v1/jobs/{job}/result?format=json").json()
    assert any(a["name"] == name and a["type"] == "image" for a in body["artifacts"])
    expect(card.locator(".downloads a")).not_to_have_count(0)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "viewer-activation-maps.png"), full_page=True)


def png_bytes(width: int, height: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (height // 10 + 1, width // 10 + 1, 3), dtype=np.uint8)
    img = Image.fromarray(pixels, "RGB").resize((width, height), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_every_artifact_type_is_drawn_by_its_renderer(page: Any, chelsea: Path) -> None:
    """The artifacts wire format, answered by the page's own routes (no backend needed):
    one card per artifact, drawn by the renderer of its type; unknown types get a generic
    card with their links, and a renderer registered from outside draws its type."""
    from playwright.sync_api import expect

    job = "f" * 32
    base = f"/v1/jobs/{job}/artifacts"

    def links(name: str, *formats: str) -> dict[str, str]:
        return {f: f"{base}/{name}?format={f}" for f in formats}

    x = [i / 20 for i in range(21)]
    artifacts: list[dict[str, Any]] = [
        {
            "name": "deletion",
            "type": "curve",
            "shape": [21],
            "axes": ["step"],
            "meta": {},
            "links": links("deletion", "json", "svg", "png"),
        },
        {
            "name": "attribution",
            "type": "attribution",
            "shape": [224, 224],
            "axes": ["y", "x"],
            "feature_names": None,
            "meta": {"min": 0.0, "max": 1.0},
            "links": links("attribution", "json", "png", "overlay", "npy"),
        },
        {
            "name": "grid",
            "type": "image",
            "shape": [240, 320, 3],
            "axes": ["y", "x", "rgb"],
            "meta": {"caption": "16 channels of head.act"},
            "links": links("grid", "png", "npy"),
        },
        {
            "name": "segments",
            "type": "segments",
            "shape": [224, 224],
            "axes": ["y", "x"],
            "meta": {"n_segments": 8},
            "links": links("segments", "json", "png", "npy"),
        },
        {
            "name": "channels",
            "type": "table",
            "shape": [3, 3],
            "axes": None,
            "meta": {},
            "links": links("channels", "json"),
        },
        {
            "name": "cloud",
            "type": "point_cloud",
            "shape": [10, 3],
            "axes": None,
            "meta": {"units": "mm"},
            "links": links("cloud", "npy"),
        },
        {
            "name": "mystery",
            "type": "hologram",
            "shape": [4],
            "axes": None,
            "meta": {},
            "links": links("mystery", "npy"),
        },
    ]
    data = {
        "deletion": {
            "x": x,
            "y": [1 - v**0.5 for v in x],
            "x_label": "fraction of pixels removed",
            "y_label": "probability",
            "auc": 0.3333,
        },
        "segments": {
            "weights": [0.5, -0.25, 0.125, 0.0, -0.75, 0.3, 0.01, -0.02],
            "positive": [0, 5],
            "negative": [4],
        },
        "channels": {
            "columns": ["channel", "mean", "max"],
            "rows": [[7, 0.52, 3.1], [12, 0.48, 2.75], [3, 0.4, 12345.6]],
        },
    }
    kinds = {a["name"]: a for a in artifacts}
    result = {
        "job": job,
        "model": "efficientnet-lite0",
        "version": "v",
        "method": "grad_cam",
        "params": {"layer": "head.act"},
        "attribution": {"shape": [224, 224], "values": None},
        "target": {"index": 285, "label": "Egyptian cat", "score": 0.76},
        "objective": {"kind": "channel", "layer": "head.act", "channel": 7},
        "timings": {"queued_ms": 3.2, "compute_ms": 100_000.0},
        "model_calls": 3,
        "extras": {},
        "metrics": {"deletion": {"auc": 0.3333}},
        "cost": {},
        "images": {},
        "artifacts": artifacts,
        "views": {"png": "attribution", "overlay": "attribution"},
    }
    requested: list[str] = []

    def explanations(route: Any) -> None:
        route.fulfill(status=200, content_type="application/json", body=json.dumps(result))

    def artifact(route: Any) -> None:
        url = urlparse(route.request.url)
        name = url.path.rsplit("/", 1)[1]
        fmt = parse_qs(url.query).get("format", ["json"])[0]
        requested.append(f"{name}:{fmt}")
        if fmt == "json":
            a = kinds[name]
            body = {k: a[k] for k in ("name", "type", "shape", "axes", "meta")}
            body["data"] = data.get(name, {})
            route.fulfill(status=200, content_type="application/json", body=json.dumps(body))
        else:
            route.fulfill(status=200, content_type="image/png", body=png_bytes(451, 300, len(name)))

    page.route(re.compile(r"/v1/explanations(\?.*)?$"), explanations)
    page.route(f"**{base}/**", artifact)
    page.evaluate(
        """() => window.Lantern.registerRenderer('point_cloud', (a, ctx) => {
             const node = document.createElement('figure');
             node.className = 'card';
             node.dataset.type = a.type;
             node.dataset.artifact = a.name;
             node.textContent = 'points: ' + a.shape[0];
             return {node};
           })"""
    )
    load_cat(page, chelsea)
    page.select_option("#method", "grad_cam")
    page.click("#run")
    pane = page.locator("#pane-current")
    cards = pane.locator(".cards > [data-artifact]")
    expect(cards).to_have_count(len(artifacts), timeout=30_000)
    # the attribution map leads, the rest keep their order
    order = cards.evaluate_all("cs => cs.map(c => c.dataset.artifact)")
    assert order == ["attribution", "deletion", "grid", "segments", "channels", "cloud", "mystery"]

    # attribution: the overlay canvas, from the artifact's overlay link
    expect(page.locator("#canvas")).to_have_attribute("data-state", "overlay", timeout=30_000)
    expect(page.locator("#canvas")).to_have_attribute("data-job", job)
    assert any(r == "attribution:overlay" for r in requested), requested
    assert f"{base}/attribution?format=overlay" in (page.get_attribute("#dl-overlay", "href") or "")
    assert "colormap=jet" in (page.get_attribute("#dl-png", "href") or "")

    # curve: an SVG plot with axes, the line and the AUC in its title
    curve = pane.locator(".card[data-type=curve]")
    expect(curve.locator(".card-title")).to_have_text("deletion · AUC 0.3333")
    svg = curve.locator("svg.curve")
    expect(svg).to_have_attribute("data-points", "21")
    expect(svg.locator("text.axis-label")).to_have_text(
        ["fraction of pixels removed", "probability"]
    )
    expect(svg.locator("path.line")).to_have_count(1)
    assert (svg.locator("path.line").get_attribute("d") or "").count("L") == 20
    expect(curve.locator(".downloads a")).to_have_text(["PNG", "SVG", "JSON"])

    # image: an <img> from its png link, with the caption
    image = pane.locator(".card[data-type=image]")
    expect(image.locator("img")).to_have_attribute("src", f"{base}/grid?format=png")
    expect(image.locator("img")).to_have_attribute("alt", "16 channels of head.act")
    page.wait_for_function(
        "img => img.complete && img.naturalWidth === 451",
        arg=image.locator("img").element_handle(),
        timeout=30_000,
    )

    # segments: the picture and the largest weights as bars
    segments = pane.locator(".card[data-type=segments]")
    expect(segments.locator("img")).to_have_attribute("src", f"{base}/segments?format=png")
    expect(segments.locator("table.bars tr")).to_have_count(6)
    expect(segments.locator("table.bars tr").first).to_contain_text("#4")  # |-0.75| leads
    expect(segments.locator(".wbar.neg")).not_to_have_count(0)
    expect(segments).to_contain_text("2 shown for the class, 1 against")

    # table: an HTML table
    table = pane.locator(".card[data-type=table] table")
    expect(table.locator("th")).to_have_text(["channel", "mean", "max"])
    expect(table.locator("tbody tr")).to_have_count(3)
    expect(table.locator("tbody tr").last).to_contain_text("12346")

    # a registered renderer draws its type; an unknown type gets the generic card
    expect(pane.locator(".card[data-type=point_cloud]")).to_have_text("points: 10")
    mystery = pane.locator(".card[data-type=hologram]")
    expect(mystery).to_contain_text("hologram")
    expect(mystery.locator(".downloads a")).to_have_attribute("href", f"{base}/mystery?format=npy")

    # the caption names the objective and humanises the timings
    expect(pane.locator(".pane-target")).to_have_text("→ channel 7 of head.act")
    expect(pane.locator(".pane-head .timings")).to_contain_text("compute 1 min 40 s")
    expect(pane.locator(".pane-scores")).to_have_text("deletion AUC 0.3333")
    expect(page.locator("#summary")).to_contain_text("channel 7 of head.act")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "viewer-artifacts.png"), full_page=True)


# ---------------------------------------------------------------- objectives ("Explain")


def methods_of(server: str, modality: str = "image") -> dict[str, dict[str, Any]]:
    """The methods for one modality by name (a name has a spec per modality)."""
    return {
        m["name"]: m
        for m in httpx.get(server + "/v1/methods").json()["methods"]
        if modality in m["modalities"]
    }


KNOWN_KINDS = ["class", "channel", "neuron", "layer_norm", "direction"]


def use_sample(page: Any) -> None:
    """The built-in model and the bundled sample (Chelsea), with its predictions shown."""
    from playwright.sync_api import expect

    page.select_option("#model", "efficientnet-lite0")
    page.click("#sample")
    expect(page.locator("#image-info")).to_contain_text("chelsea.jpg", timeout=30_000)
    expect(page.locator("#canvas")).to_have_attribute("data-state", "image")
    first = page.locator("#predictions tr[data-index]").first
    expect(first).to_have_attribute("data-index", "285", timeout=30_000)


def choose_objective(page: Any, kind: str, layer: str | None = None) -> None:
    from playwright.sync_api import expect

    page.select_option("#objective-kind", kind)
    if layer is not None:
        select = page.locator("#objective-layer")
        expect(select).not_to_have_attribute("data-layers", "pending", timeout=30_000)
        select.select_option(layer)


def test_objective_picker_lists_only_the_kinds_the_method_takes(page: Any, server: str) -> None:
    from playwright.sync_api import expect

    methods = methods_of(server)
    info = httpx.get(server + "/v1/models/efficientnet-lite0").json()
    layers = info["layers"]
    spatial = [layer["name"] for layer in layers if layer["spatial"] and len(layer["shape"]) == 4]
    page.select_option("#model", "efficientnet-lite0")
    kind = page.locator("#objective-kind")

    # grad_cam explains a class only: the picker has that one kind, and the class target
    assert methods["grad_cam"]["objectives"] == ["class"]
    page.select_option("#method", "grad_cam")
    values = kind.locator("option").evaluate_all("os => os.map(o => o.value)")
    assert values == ["class"]
    expect(kind).to_be_disabled()
    expect(page.locator("#class-target")).to_be_visible()
    expect(page.locator("#objective-fields")).to_be_hidden()

    # saliency takes every kind the server lists for it, in the viewer's order
    page.select_option("#method", "saliency")
    expected = [k for k in KNOWN_KINDS if k in methods["saliency"]["objectives"]]
    assert expected == KNOWN_KINDS
    values = kind.locator("option").evaluate_all("os => os.map(o => o.value)")
    assert values == expected
    expect(kind).to_be_enabled()

    # channel: every layer of the model, each with its shape; the channel range is shown
    choose_objective(page, "channel")
    expect(page.locator("#class-target")).to_be_hidden()
    expect(page.locator("#objective-fields")).to_be_visible()
    layer = page.locator("#objective-layer")
    expect(layer).to_have_attribute("data-layers", str(len(layers)), timeout=30_000)
    expect(layer).to_have_value(info["capabilities"]["default_layer"])  # head.act
    head = layer.locator("option[value='head.act']")
    expect(head).to_have_text("head.act · Clip · 1280×7×7")
    expect(page.locator("#objective-layer-info")).to_contain_text("1280 channels (0–1279)")
    expect(page.locator("#objective-channel")).to_be_visible()
    expect(page.locator("#objective-channel")).to_have_attribute("max", "1279")
    expect(page.locator("#objective-y")).to_be_hidden()
    expect(page.locator("#objective-vector")).to_be_hidden()
    layer.select_option("blocks.15.project")
    expect(page.locator("#objective-layer-info")).to_contain_text("320 channels (0–319)")
    expect(page.locator("#objective-channel")).to_have_attribute("max", "319")
    # quality scores score a class: not offered for another objective
    expect(page.locator("#metrics input[value=deletion]")).to_be_disabled()
    expect(page.locator("#metrics-info")).to_be_visible()

    # neuron: spatial layers only, with optional y and x within the layer's positions
    choose_objective(page, "neuron")
    expect(layer).to_have_attribute("data-layers", str(len(spatial)))
    names = layer.locator("option").evaluate_all("os => os.map(o => o.value)")
    assert names == spatial and "flatten" not in names
    expect(page.locator("#objective-y")).to_be_visible()
    expect(page.locator("#objective-x")).to_be_visible()
    layer.select_option("head.act")
    expect(page.locator("#objective-y")).to_have_attribute("max", "6")
    expect(page.locator("#objective-layer-info")).to_contain_text("7×7 positions")

    # layer_norm: a layer alone; direction: a layer and a vector of its channels' size
    choose_objective(page, "layer_norm")
    expect(page.locator("#objective-channel")).to_be_hidden()
    expect(page.locator("#objective-vector")).to_be_hidden()
    choose_objective(page, "direction", "head.act")
    expect(page.locator("#objective-vector")).to_be_visible()
    expect(page.locator("#objective-vector")).to_have_attribute(
        "placeholder", "1280 numbers, comma-separated"
    )

    # back to a class-only method: the picker falls back to the class target
    page.select_option("#method", "grad_cam")
    expect(kind).to_have_value("class")
    expect(page.locator("#class-target")).to_be_visible()
    expect(page.locator("#objective-fields")).to_be_hidden()
    expect(page.locator("#metrics input[value=deletion]")).to_be_enabled()


# Records what the page posts to /v1/explanations: the multipart fields (files as their
# name, size and type) or the JSON body. (Playwright does not expose a multipart body
# holding a file, so the page's fetch is wrapped instead.)
RECORD_POSTS = """() => {
  const real = window.fetch;
  window.__posts = [];
  window.fetch = function (input, init) {
    if (init && init.method === 'POST' && String(input).includes('/v1/explanations')) {
      const b = init.body;
      let fields = null;
      if (b instanceof FormData) {
        fields = {};
        for (const [k, v] of b.entries()) {
          fields[k] = typeof v === 'string' ? v : {file: v.name, size: v.size, type: v.type};
        }
      }
      window.__posts.push({url: String(input), fields, json: typeof b === 'string' ? b : null});
    }
    return real.apply(this, arguments);
  };
}"""


def last_post(page: Any) -> dict[str, Any]:
    posts: list[dict[str, Any]] = page.evaluate("() => window.__posts")
    assert posts, "nothing was posted to /v1/explanations"
    return posts[-1]


def test_saliency_explains_a_channel_objective(page: Any, server: str) -> None:
    from playwright.sync_api import expect

    use_sample(page)
    page.select_option("#method", "saliency")
    choose_objective(page, "channel", "head.act")
    page.fill("#objective-channel", "3")
    page.evaluate(RECORD_POSTS)
    with page.expect_request(lambda r: r.method == "POST" and "/v1/explanations" in r.url) as sent:
        job = run_and_wait(page)
    assert sent.value.headers["content-type"].startswith("multipart/form-data")
    fields = last_post(page)["fields"]
    assert json.loads(fields["objective"]) == {"kind": "channel", "layer": "head.act", "channel": 3}
    assert "target" not in fields  # one or the other: the API refuses both
    assert fields["method"] == "saliency"
    assert fields["file"]["file"] == "chelsea.jpg" and fields["file"]["type"] == "image/jpeg"

    # the caption and the summary name the objective; the attribution card is drawn
    pane = page.locator("#pane-current")
    expect(pane.locator(".pane-target")).to_have_text("→ channel 3 of head.act")
    expect(page.locator("#summary")).to_contain_text("channel 3 of head.act")
    card = pane.locator(".card[data-type=attribution][data-artifact=attribution]")
    expect(card).to_have_count(1)
    expect(card.locator("canvas.heat")).to_have_attribute("data-state", "overlay")
    drawn: dict[str, Any] = page.evaluate(READ_CANVAS)
    assert drawn["job"] == job and drawn["distinct"] > 50
    body = httpx.get(f"{server}/v1/jobs/{job}/result?format=json").json()
    assert body["target"] is None
    assert body["objective"] == {"kind": "channel", "layer": "head.act", "channel": 3}
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "viewer-objective.png"), full_page=True)

    # a neuron at a chosen position is another request, drawn the same way
    choose_objective(page, "neuron", "head.act")
    page.fill("#objective-channel", "3")
    page.fill("#objective-y", "2")
    page.fill("#objective-x", "5")
    run_and_wait(page, job)
    fields = last_post(page)["fields"]
    assert json.loads(fields["objective"]) == {
        "kind": "neuron",
        "layer": "head.act",
        "channel": 3,
        "y": 2,
        "x": 5,
    }
    expect(pane.locator(".pane-target")).to_have_text("→ neuron 3 at (2, 5) of head.act")
    neuron = page.get_attribute("#canvas", "data-job")

    # a class with another score than the method's: sent as a class objective
    choose_objective(page, "class")
    page.locator("#predictions tr[data-index='281']").click()
    page.select_option("#objective-score", "probability")
    run_and_wait(page, neuron)
    fields = last_post(page)["fields"]
    assert json.loads(fields["objective"]) == {
        "kind": "class",
        "target": 281,
        "score": "probability",
    }
    expect(pane.locator(".pane-target")).to_have_text("→ tabby, tabby cat (#281) · probability")


def test_a_refused_objective_shows_the_error_banner(page: Any, server: str) -> None:
    from playwright.sync_api import expect

    use_sample(page)
    page.select_option("#method", "saliency")
    error = page.locator("#error")

    # a channel out of the layer's range: the API's invalid_objective
    choose_objective(page, "channel", "head.act")
    page.fill("#objective-channel", "5000")
    page.click("#run")
    expect(error).to_be_visible(timeout=30_000)
    expect(page.locator("#error-code")).to_have_text("invalid_objective")
    expect(page.locator("#error-message")).to_contain_text("0..1279")
    expect(page.locator("#run")).to_be_enabled()
    page.screenshot(path=str(ARTIFACTS / "viewer-objective-error.png"), full_page=True)
    page.click("#error-close")

    # a direction of the wrong length
    choose_objective(page, "direction", "head.act")
    page.fill("#objective-vector", "1, 0.5, -2")
    page.click("#run")
    expect(page.locator("#error-code")).to_have_text("invalid_objective", timeout=30_000)
    expect(page.locator("#error-message")).to_contain_text("3 components")
    page.click("#error-close")
    # ... or not numbers at all: refused before anything is sent
    page.fill("#objective-vector", "1, two, 3")
    page.click("#run")
    expect(page.locator("#error-code")).to_have_text("invalid_objective")
    expect(page.locator("#error-message")).to_contain_text("not a number: two")
    page.click("#error-close")

    # a layer the model does not have (the pick list only offers real ones: add one)
    choose_objective(page, "channel")
    page.evaluate(
        "() => { const s = document.getElementById('objective-layer');"
        " s.append(new Option('no.such.layer', 'no.such.layer')); s.value = 'no.such.layer'; }"
    )
    page.fill("#objective-channel", "1")
    page.click("#run")
    expect(page.locator("#error-code")).to_have_text("unknown_layer", timeout=30_000)
    # (nothing was drawn: the pane still shows the input)
    expect(page.locator("#canvas")).to_have_attribute("data-state", "image")


# ---------------------------------------------------------------- no input, previews

FAKE_METHOD = "fake_visualisation"


def test_a_method_without_input_runs_and_draws_its_previews(page: Any, server: str) -> None:
    """A method with `inputs: "none"` and a job that publishes previews, answered by the
    page's own routes (the method list is the server's plus a faked one; the job's status,
    previews and result are faked too): the Run button needs no image, none is sent, the
    previews are drawn in the pane while the job runs and the result's artifacts replace them,
    with no overlay canvas."""
    from playwright.sync_api import expect

    job = "e" * 32
    base = f"/v1/jobs/{job}/artifacts"
    fake = {
        "name": FAKE_METHOD,
        "modality": "image",
        "modalities": ["image"],
        "inputs": "none",
        "objectives": ["class", "channel", "neuron", "layer_norm", "direction"],
        "kind": "visualisation",
        "execution": "job",
        "description": "Feature visualisation, faked by the test.",
        "params_schema": {
            "type": "object",
            "properties": {
                "steps": {"type": "integer", "default": 512, "minimum": 1, "title": "Steps"},
                "size": {"type": "integer", "default": 128, "minimum": 8, "title": "Size"},
            },
        },
    }

    def methods(route: Any) -> None:
        real = route.fetch().json()
        real["methods"].append(fake)
        route.fulfill(status=200, content_type="application/json", body=json.dumps(real))

    page.route(re.compile(r"/v1/methods$"), methods)
    page.reload()
    expect(page.locator("body")).to_have_attribute("data-ready", "1", timeout=30_000)

    def links(name: str, *formats: str) -> dict[str, str]:
        return {f: f"{base}/{name}?format={f}" for f in formats}

    unit = {
        "name": "unit_3",
        "type": "image",
        "shape": [64, 64, 3],
        "axes": ["y", "x", "rgb"],
        "meta": {},
        "links": links("unit_3", "json", "npy", "png"),
    }
    phase = {"n": 0}
    polls: list[int] = []
    posted: list[Any] = []

    def status() -> dict[str, Any]:
        n = phase["n"]
        preview = [] if n == 0 else [{**unit, "meta": {"caption": f"step {64 * n}"}}]
        return {
            "id": job,
            "state": "succeeded" if n >= 3 else "running",
            "progress": min(1.0, n / 3 + 0.05),
            "model": "efficientnet-lite0",
            "version": "v",
            "method": FAKE_METHOD,
            "created_at": 1.0,
            "timings": {},
            "error": None,
            "result_summary": None,
            "preview": preview if n < 3 else [],
            "links": {"self": f"/v1/jobs/{job}"},
        }

    result = {
        "job": job,
        "model": "efficientnet-lite0",
        "version": "v",
        "method": FAKE_METHOD,
        "params": {"steps": 192, "size": 64},
        "attribution": None,
        "target": None,
        "objective": {"kind": "channel", "layer": "head.act", "channel": 3},
        "timings": {"queued_ms": 1.0, "compute_ms": 12_500.0},
        "model_calls": 192,
        "extras": {"steps": 192},
        "metrics": {},
        "cost": {},
        "images": {},
        "artifacts": [
            {**unit, "meta": {"caption": "step 192"}},
            {
                "name": "grid",
                "type": "image",
                "shape": [68, 68, 3],
                "axes": ["y", "x", "rgb"],
                "meta": {"caption": "head.act: ['unit_3']"},
                "links": links("grid", "json", "npy", "png"),
            },
            {
                "name": "curve_3",
                "type": "curve",
                "shape": [192],
                "axes": ["step"],
                "meta": {},
                "links": links("curve_3", "json", "npy", "svg", "png"),
            },
        ],
        "views": {"png": "grid", "overlay": "unit_3"},
    }
    steps = list(range(1, 193))
    curve = {"x": steps, "y": [1 - 1 / s for s in steps], "x_label": "step", "y_label": "objective"}

    def explanations(route: Any) -> None:
        req = route.request
        posted.append({"ctype": req.headers.get("content-type", ""), "body": req.post_data})
        route.fulfill(status=202, content_type="application/json", body=json.dumps(status()))

    def job_status(route: Any) -> None:
        polls.append(phase["n"])
        route.fulfill(status=200, content_type="application/json", body=json.dumps(status()))

    def job_result(route: Any) -> None:
        route.fulfill(status=200, content_type="application/json", body=json.dumps(result))

    def artifact(route: Any) -> None:
        url = urlparse(route.request.url)
        name = url.path.rsplit("/", 1)[1]
        query = parse_qs(url.query)
        fmt = query.get("format", ["json"])[0]
        seed = int(query.get("preview", ["0"])[0]) + len(name)
        if fmt == "json":
            body = {"name": name, "type": "curve", "shape": [192], "axes": ["step"], "meta": {}}
            body["data"] = curve if name.startswith("curve") else {}
            route.fulfill(status=200, content_type="application/json", body=json.dumps(body))
        else:
            route.fulfill(status=200, content_type="image/png", body=png_bytes(64, 64, seed))

    page.route(re.compile(r"/v1/explanations(\?.*)?$"), explanations)
    page.route(re.compile(rf"/v1/jobs/{job}$"), job_status)
    page.route(re.compile(rf"/v1/jobs/{job}/result\?"), job_result)
    page.route(f"**{base}/**", artifact)

    # no image: an item method cannot run, the no-input one can
    page.select_option("#model", "efficientnet-lite0")
    page.select_option("#method", "saliency")
    expect(page.locator("#image-info")).to_have_text("No image yet.")
    expect(page.locator("#run")).to_be_disabled()
    page.select_option("#method", FAKE_METHOD)
    expect(page.locator("#method option:checked")).to_contain_text("no input")
    expect(page.locator("#method-inputs")).to_contain_text("no image is sent")
    expect(page.locator("#run")).to_be_enabled()
    expect(page.locator("#placeholder")).to_contain_text("takes no input")
    # no prediction to name: "top1" is not offered; no input to score
    expect(page.locator("#target-kind option[value=top1]")).to_be_disabled()
    expect(page.locator("#target-kind")).to_have_value("index")
    expect(page.locator("#metrics input[value=deletion]")).to_be_disabled()
    kinds = page.locator("#objective-kind option").evaluate_all("os => os.map(o => o.value)")
    assert kinds == KNOWN_KINDS
    choose_objective(page, "channel", "head.act")
    page.fill("#objective-channel", "3")
    page.fill("#params input[name=steps]", "192")
    page.fill("#params input[name=size]", "64")

    page.click("#run")
    expect(page.locator("#job-state")).to_have_text("running", timeout=30_000)
    assert len(posted) == 1
    assert posted[0]["ctype"].startswith("application/json")
    sent = json.loads(posted[0]["body"])
    assert "image" not in sent and "input" not in sent and "file" not in sent
    assert sent["objective"] == {"kind": "channel", "layer": "head.act", "channel": 3}
    assert "target" not in sent and "metrics" not in sent
    assert sent["params"] == {"steps": 192, "size": 64}
    assert (sent["model"], sent["method"]) == ("efficientnet-lite0", FAKE_METHOD)
    pane = page.locator("#pane-current")
    expect(pane).not_to_have_attribute("data-preview", re.compile("."))

    # the first preview: drawn in the current pane by the image renderer
    phase["n"] = 1
    expect(pane).to_have_attribute("data-preview", re.compile(r"^\d+$"), timeout=30_000)
    card = pane.locator(".card[data-type=image][data-artifact=unit_3]")
    expect(card).to_have_count(1)
    img = card.locator("img.artifact-img")
    src1 = img.get_attribute("src") or ""
    assert src1.startswith(f"{base}/unit_3?format=png") and "preview=" in src1, src1
    expect(pane.locator(".pane-head .badge")).to_have_text("Preview")
    expect(pane.locator(".pane-target")).to_have_text("→ channel 3 of head.act")
    expect(pane.locator(".pane-preview-note")).to_contain_text("step 64")
    expect(page.locator("#pin")).to_be_disabled()  # (a preview is not an answer yet)

    # the next preview replaces it, at URLs of its own (no stale picture)
    phase["n"] = 2
    expect(pane.locator(".pane-preview-note")).to_contain_text("step 128", timeout=30_000)
    src2 = card.locator("img.artifact-img").get_attribute("src") or ""
    assert src2 != src1 and "preview=" in src2, (src1, src2)
    page.wait_for_function(
        "img => img.complete && img.naturalWidth === 64",
        arg=card.locator("img.artifact-img").element_handle(),
        timeout=30_000,
    )
    expect(pane.locator("canvas")).to_have_count(0)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "viewer-preview.png"), full_page=True)

    # success: the result's artifacts replace the previews; nothing is overlaid
    phase["n"] = 3
    expect(page.locator("#job-state")).to_have_text("succeeded", timeout=30_000)
    cards = pane.locator(".cards > [data-artifact]")
    expect(cards).to_have_count(3, timeout=30_000)
    order = cards.evaluate_all("cs => cs.map(c => c.dataset.artifact)")
    assert order == ["unit_3", "grid", "curve_3"]
    expect(pane).not_to_have_attribute("data-preview", re.compile("."))
    expect(pane.locator(".card[data-artifact=unit_3] img")).to_have_attribute(
        "src", f"{base}/unit_3?format=png"
    )
    expect(pane.locator(".card[data-artifact=curve_3] svg.curve")).to_have_attribute(
        "data-points", "192"
    )
    expect(pane.locator("canvas")).to_have_count(0)
    expect(page.locator("#canvas")).to_have_count(0)
    expect(pane.locator(".pane-head .badge")).to_have_count(0)
    expect(pane.locator(".pane-method")).to_have_text(FAKE_METHOD)
    expect(pane.locator(".pane-target")).to_have_text("→ channel 3 of head.act")
    expect(pane.locator(".pane-head .timings")).to_contain_text("compute 12.5 s")
    expect(page.locator("#pin")).to_be_enabled()
    assert set(polls) >= {1, 2, 3}, polls  # (each phase was polled and drawn)
    page.screenshot(path=str(ARTIFACTS / "viewer-no-input.png"), full_page=True)


def test_feature_visualisation_runs_for_real(page: Any, server: str) -> None:
    """The real no-input method, where the server has it: a channel of head.act, optimised
    from nothing for 128 steps (one preview, at step 64), then its image, grid and curve."""
    from playwright.sync_api import expect

    methods = methods_of(server)
    if "feature_visualisation" not in methods:
        pytest.skip("feature_visualisation is not registered on this server")
    fv = methods["feature_visualisation"]
    assert fv["inputs"] == "none" and "channel" in fv["objectives"]

    page.select_option("#model", "efficientnet-lite0")
    page.select_option("#method", "feature_visualisation")
    expect(page.locator("#run")).to_be_enabled()  # no image chosen
    choose_objective(page, "channel", "head.act")
    page.fill("#objective-channel", "3")
    page.fill("#params input[name=steps]", "128")
    page.fill("#params input[name=size]", "64")
    with page.expect_request(lambda r: r.method == "POST" and "/v1/explanations" in r.url) as sent:
        page.click("#run")
    body = json.loads(sent.value.post_data or "{}")
    assert "image" not in body and "input" not in body
    assert body["objective"] == {"kind": "channel", "layer": "head.act", "channel": 3}

    pane = page.locator("#pane-current")
    # the preview published at step 64, drawn while the job runs
    expect(pane).to_have_attribute("data-preview", re.compile(r"^\d+$"), timeout=180_000)
    expect(pane.locator(".pane-preview-note")).to_contain_text("step 64")
    preview_img = pane.locator(".card[data-type=image] img.artifact-img").first
    page.wait_for_function(
        "img => img.complete && img.naturalWidth === 64",
        arg=preview_img.element_handle(),
        timeout=30_000,
    )
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "viewer-fv-preview.png"), full_page=True)

    expect(page.locator("#job-state")).to_have_text("succeeded", timeout=300_000)
    expect(pane).not_to_have_attribute("data-preview", re.compile("."), timeout=30_000)
    expect(pane.locator(".card[data-type=curve]")).to_have_count(1, timeout=30_000)
    expect(pane.locator(".card[data-artifact=grid] img")).to_have_count(1)
    expect(pane.locator("canvas")).to_have_count(0)
    expect(pane.locator(".pane-target")).to_have_text("→ channel 3 of head.act")
    unit = pane.locator(".card[data-type=image] img.artifact-img").first
    page.wait_for_function(
        "img => img.complete && img.naturalWidth === 64", arg=unit.element_handle(), timeout=30_000
    )
    assert "preview=" not in (unit.get_attribute("src") or "")
    job = page.locator("#summary code[title]").get_attribute("title")
    result = httpx.get(f"{server}/v1/jobs/{job}/result?format=json").json()
    assert result["objective"] == {"kind": "channel", "layer": "head.act", "channel": 3}
    assert {a["type"] for a in result["artifacts"]} >= {"image", "curve"}
    page.screenshot(path=str(ARTIFACTS / "viewer-feature-visualisation.png"), full_page=True)
