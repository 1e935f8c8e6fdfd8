"""The viewer's embedding scatter (service/static/renderers/scatter.js) in headless Chromium
against a real embedded server with the built-in digits-cnn and digits dataset: a real
embedding job (t-SNE of conv3, two digits placed on the map) is drawn by the viewer's
renderer — one dot per image in its label's colour with a key of the ten digits, the
placed inputs as diamonds; hovering a dot shows that image's thumbnail (GET
/v1/datasets/digits/images/{index}?size=64) with its label and the prediction; hovering a
placed input shows its nearest dataset images; the colour select recolours by
correctness. Screenshot: test-artifacts/viewer-embedding.png."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from lantern_testing.processes import embedded_api
from lantern_testing.viewer import chromium, draw, finished_job, viewer_page

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with embedded_api(tmp_path_factory.mktemp("viewer-embedding"),
                      LANTERN_BUILTIN_MODELS='["digits-cnn"]',
                      LANTERN_BUILTIN_DATASETS='["digits"]') as base:
        yield base


@pytest.fixture(scope="module")
def job(server: str) -> str:
    place = [base64.b64encode(httpx.get(f"{server}/v1/datasets/digits/images/{i}",
                                        timeout=30).content).decode() for i in (3, 700)]
    return finished_job(server, {
        "model": "digits-cnn", "dataset": "digits", "method": "embedding",
        "objective": {"kind": "layer_norm", "layer": "conv3"},
        "params": {"iterations": 150, "place": place}})


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    yield from chromium()


@pytest.fixture
def page(browser: Browser, server: str) -> Iterator[Page]:
    """The viewer, loaded; fails the test on a console error or a page error."""
    with viewer_page(browser, server + "/", "body") as page:
        yield page




def loaded(page: Page, selector: str) -> int:
    page.wait_for_function(
        "s => { const im = [...document.querySelectorAll(s)];"
        " return im.length > 0 && im.every(i => i.complete && i.naturalWidth > 0); }",
        arg=selector, timeout=60_000)
    return int(page.locator(selector).count())


def centre(locator: Any) -> tuple[float, float]:
    box = locator.bounding_box()
    assert box is not None
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


def hover_centre(page: Page, locator: Any) -> None:
    page.mouse.move(*centre(locator))


def test_scatter_drawn_and_hover_shows_the_thumbnail(page: Page, server: str, job: str) -> None:
    data = httpx.get(f"{server}/v1/jobs/{job}/artifacts/embedding?format=json",
                     timeout=30).json()["data"]
    points = {p["index"]: p for p in data["points"]}
    assert draw(page, job, "embedding-host") == ["embedding"]
    card = page.locator("#embedding-host .card[data-type=embedding]")
    svg = card.locator("svg.scatter")
    expect(svg).to_have_attribute("data-points", "1797", timeout=30_000)
    expect(svg).to_have_attribute("data-placed", "2")
    expect(card.locator("circle.pt")).to_have_count(1797)
    expect(card.locator("g.placed")).to_have_count(2)
    # coloured by label: the key lists the ten digits in the palette's colours
    keys = card.locator(".scatter-key li[data-colour]")
    expect(keys).to_have_count(10)
    assert keys.evaluate_all("ls => ls.map(l => l.dataset.colour)") == PALETTE
    labels = card.locator("circle.pt").evaluate_all(
        "cs => cs.map(c => [Number(c.dataset.index), c.getAttribute('fill')])")
    assert all(fill == PALETTE[int(points[i]["label"])] for i, fill in labels)

    # hovering a dot drawn on top (among the last drawn, away from the diamonds) shows
    # its image's thumbnail and label
    diamonds = [centre(card.locator("g.placed polygon").nth(k)) for k in range(2)]
    last = next(c for c in (card.locator("circle.pt").nth(1796 - k) for k in range(50))
                if min(abs(centre(c)[0] - x) + abs(centre(c)[1] - y) for x, y in diamonds) > 20)
    hover_centre(page, last)
    hover = card.locator(".scatter-hover")
    expect(hover).to_have_attribute("data-index", last.get_attribute("data-index") or "",
                                    timeout=10_000)
    index = int(hover.get_attribute("data-index") or -1)
    thumb = hover.locator("img.scatter-thumb")
    src = thumb.get_attribute("src") or ""
    assert f"/v1/datasets/digits/images/{index}?" in src and "size=64" in src
    assert loaded(page, "#embedding-host .scatter-hover img.scatter-thumb") == 1
    assert thumb.evaluate("i => i.naturalWidth") == 64
    p = points[index]
    expect(hover).to_contain_text(f"label {p['label']}")
    expect(hover).to_contain_text(f"predicted {p['prediction']}")
    expect(hover).to_contain_text(p["id"])

    # a placed input: its nearest dataset images, with thumbnails
    hover_centre(page, card.locator("g.placed polygon").first)
    expect(hover).to_have_attribute("data-place", "0", timeout=10_000)
    assert loaded(page, "#embedding-host .scatter-hover img.scatter-thumb") == 5
    expect(hover).to_contain_text("nearest dataset images")
    ARTIFACTS.mkdir(exist_ok=True)
    card.screenshot(path=str(ARTIFACTS / "viewer-embedding.png"))

    # colour by correctness: the key and the dots follow
    card.locator("select.scatter-colour").select_option("correct")
    expect(svg).to_have_attribute("data-colour-by", "correct")
    expect(card.locator(".scatter-key li[data-colour]")).to_have_count(2)
    fills = set(card.locator("circle.pt").evaluate_all("cs => cs.map(c => c.getAttribute('fill'))"))
    assert fills == {"#2ca02c", "#d62728"}  # the model is wrong on a few digits
