"""The viewer's inside-the-network views in headless Chromium against a real embedded
server (a tiny pointwise CNN registered over HTTP, real jobs): NMF groups as a coloured map
over the image with its colour key and the groups' visualisations, the semantic dictionary
as a grid of thumbnails over the image, and DeepDream's before/after slider. Screenshots go
to test-artifacts/viewer-*.png. Fixtures are test_viewer_browser's."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import e2e.test_viewer_browser as viewer
import httpx
import numpy as np
import pytest

from lantern_testing.images import png_bytes
from lantern_testing.inside import pointwise_cnn, scene
from lantern_testing.models import manifest
from lantern_testing.processes import embedded_api

pytestmark = pytest.mark.e2e

# test_viewer_browser's fixtures, reused by name (its `page` takes this module's `server`)
browser_exe = viewer.browser_exe
browser = viewer.browser
page = viewer.page
ARTIFACTS = viewer.ARTIFACTS

SIZE = 8


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An embedded server without the built-in model, with the pointwise CNN as "pw"."""
    with embedded_api(tmp_path_factory.mktemp("viewer-inside"),
                      LANTERN_BUILTIN_MODEL="false") as base:
        kernel, head, _ = scene(size=SIZE, channels=6)
        r = httpx.post(f"{base}/v1/models", files={
            "file": ("pw.onnx", pointwise_cnn(kernel, head, SIZE).SerializeToString())},
            data={"manifest": json.dumps(manifest("pw", SIZE, ["a", "b", "c"]))}, timeout=60)
        assert r.status_code == 201, r.text
        yield base


@pytest.fixture
def picture(tmp_path: Path) -> Path:
    """Two colour halves, 64 × 64 (the model sees it at 8 × 8)."""
    img = np.zeros((64, 64, 3), np.uint8)
    img[:32] = (220, 50, 20)
    img[32:] = (20, 70, 230)
    path = tmp_path / "halves.png"
    path.write_bytes(png_bytes(img))
    return path


def start(page: Any, picture: Path, method: str, params: dict[str, str]) -> None:
    from playwright.sync_api import expect

    page.select_option("#model", "pw")
    page.set_input_files("#image-file", str(picture))
    expect(page.locator("#canvas")).to_have_attribute("data-state", "image")
    page.select_option("#method", method)
    layer = page.locator("#params select[name=layer]")
    if layer.count():
        expect(layer.locator("option[value=act]")).to_have_count(1, timeout=30_000)
        layer.select_option("act")
    for name, value in params.items():
        page.fill(f"#params input[name={name}]", value)
    page.click("#run")


def loaded_images(page: Any, selector: str) -> int:
    """How many of the matching <img> have loaded a picture."""
    page.wait_for_function(
        "s => [...document.querySelectorAll(s)].every(i => i.complete && i.naturalWidth > 0)",
        arg=selector, timeout=60_000)
    return int(page.locator(selector).count())


def test_nmf_groups_map_key_and_thumbnails(page: Any, picture: Path) -> None:
    from playwright.sync_api import expect

    start(page, picture, "nmf_groups", {"groups": "3", "size": "8", "steps": "4"})
    card = page.locator("#pane-current .card[data-type=groups]")
    expect(card).to_have_count(1, timeout=120_000)
    expect(card.locator("img.groups-map")).to_have_attribute("data-over-image", "1")
    assert "format=overlay" in (card.locator("img.groups-map").get_attribute("src") or "")
    assert loaded_images(page, "#pane-current .card[data-type=groups] img.groups-map") == 1
    rows = card.locator("table.groups-key tbody tr")
    expect(rows).to_have_count(3)
    swatches = card.locator(".swatch").evaluate_all("s => s.map(x => x.dataset.colour)")
    assert len(set(swatches)) == 3 and all(s.startswith("#") for s in swatches)
    # the colours drawn are the key's
    drawn = card.locator(".swatch").evaluate_all(
        "s => s.map(x => getComputedStyle(x).backgroundColor)")
    assert all(d.startswith("rgb(") for d in drawn)
    assert loaded_images(page, "#pane-current .card[data-type=groups] img.group-thumb") == 3
    shares = [float(t.split()[0]) for t in rows.locator("td:nth-child(4)").all_inner_texts()]
    assert sum(shares) == pytest.approx(100.0, abs=0.2)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "viewer-nmf-groups.png"), full_page=True)


def test_semantic_dictionary_grid_over_the_image(page: Any, picture: Path) -> None:
    from playwright.sync_api import expect

    start(page, picture, "semantic_dictionary", {"top_n": "2", "size": "8", "steps": "4"})
    card = page.locator("#pane-current .card[data-type=dictionary]")
    expect(card).to_have_count(1, timeout=120_000)
    grid = card.locator(".dict-grid")
    expect(grid).to_have_attribute("data-cells", str(SIZE * SIZE), timeout=30_000)
    assert "format=overlay" in (grid.evaluate("g => g.style.backgroundImage") or "")
    assert loaded_images(page, "#pane-current .dict-cell img") == SIZE * SIZE
    # the two halves of the picture have different top channels
    top = grid.locator(".dict-cell").evaluate_all("cs => cs.map(c => c.dataset.channel)")
    assert top[0] != top[-1], top
    cell = grid.locator(".dict-cell[data-y='7'][data-x='7']")
    cell.click()
    detail = card.locator(".dict-detail")
    expect(detail).to_have_attribute("data-position", "7,7")
    expect(detail.locator(".dict-unit")).to_have_count(2)
    assert detail.locator(".dict-unit").first.get_attribute("data-channel") == top[-1]
    page.screenshot(path=str(ARTIFACTS / "viewer-semantic-dictionary.png"), full_page=True)


def test_deepdream_before_and_after(page: Any, picture: Path) -> None:
    from playwright.sync_api import expect

    page.select_option("#model", "pw")
    page.set_input_files("#image-file", str(picture))
    page.select_option("#method", "deepdream")
    page.select_option("#objective-kind", "layer_norm")
    page.select_option("#objective-layer", "act")
    page.fill("#params input[name=octaves]", "1")
    page.fill("#params input[name=steps]", "3")
    page.click("#run")
    card = page.locator("#pane-current .card[data-type=comparison]")
    expect(card).to_have_count(1, timeout=120_000)
    assert "/artifacts/original?" in (card.locator("img.cmp-before").get_attribute("src") or "")
    assert "/artifacts/dream?" in (card.locator("img.cmp-after").get_attribute("src") or "")
    assert loaded_images(page, "#pane-current .card[data-type=comparison] img") == 2
    stack = card.locator(".cmp-stack")
    expect(stack).to_have_attribute("data-reveal", "50")
    card.locator("input.cmp-slider").fill("80")
    expect(stack).to_have_attribute("data-reveal", "80")
    clip = card.locator("img.cmp-after").evaluate("i => i.style.clipPath")
    assert clip.replace(" ", "") == "inset(0px20%0px0px)" or "20%" in clip, clip
    expect(card.locator(".cmp-values")).to_contain_text("original")
    page.screenshot(path=str(ARTIFACTS / "viewer-deepdream.png"), full_page=True)
