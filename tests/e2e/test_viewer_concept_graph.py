"""The viewer's concept graph (service/static/renderers/graph.js) in headless Chromium
against a real embedded server with the built-in digits-cnn and digits dataset: a real
concept_graph job (digit 3) drawn by the viewer's renderers — one SVG node per unit with
its patch, one curve per influence; the wheel zooms about the pointer (the point under it
stays put), a drag pans with it, a double click resets the view; hovering a unit shows its
numbers and highlights its edges, hovering an influence shows its weight. Screenshots:
test-artifacts/viewer-concept-graph*.png."""

from __future__ import annotations

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


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with embedded_api(tmp_path_factory.mktemp("viewer-concept-graph"),
                      LANTERN_BUILTIN_MODELS='["digits-cnn"]',
                      LANTERN_BUILTIN_DATASETS='["digits"]') as base:
        yield base


@pytest.fixture(scope="module")
def job(server: str) -> str:
    return finished_job(server, {
        "model": "digits-cnn", "dataset": "digits", "method": "concept_graph", "target": 3})


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    yield from chromium()


@pytest.fixture
def page(browser: Browser, server: str) -> Iterator[Page]:
    """The viewer, loaded; fails the test on a console error or a page error."""
    with viewer_page(browser, server + "/", "body") as page:
        yield page



#: the viewport-local point under client point (x, y): the inverse of its screen matrix
LOCAL = """([x, y]) => {
  const g = document.querySelector('#graph-host svg.graph-view g.graph-viewport');
  const p = new DOMPoint(x, y).matrixTransform(g.getScreenCTM().inverse());
  return [p.x, p.y];
}"""


def transform(page: Page) -> tuple[float, float, float]:
    raw = page.locator("#graph-host svg.graph-view").get_attribute("data-transform") or ""
    tx, ty, k = (float(v) for v in raw.split(","))
    return tx, ty, k


def test_graph_drawn_zoomed_panned_and_hovered(page: Page, server: str, job: str) -> None:
    data: Any = httpx.get(f"{server}/v1/jobs/{job}/artifacts/graph?format=json",
                          timeout=30).json()["data"]
    assert draw(page, job, "graph-host") == ["graph", "table"]
    card = page.locator("#graph-host .card[data-type=graph]")
    svg = card.locator("svg.graph-view")
    expect(svg).to_have_attribute("data-nodes", str(len(data["nodes"])), timeout=30_000)
    expect(svg).to_have_attribute("data-edges", str(len(data["edges"])))
    expect(card.locator("g.graph-node")).to_have_count(len(data["nodes"]))
    expect(card.locator("path.graph-edge")).to_have_count(len(data["edges"]))
    expect(card.locator("g.graph-node image")).to_have_count(len(data["nodes"]))
    assert transform(page) == (0.0, 0.0, 1.0)
    ARTIFACTS.mkdir(exist_ok=True)
    card.screenshot(path=str(ARTIFACTS / "viewer-concept-graph.png"))

    # wheel: zoom in about the pointer — the viewport point under it does not move
    box = svg.bounding_box()
    assert box is not None
    x, y = box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.4
    page.mouse.move(x, y)
    before = page.evaluate(LOCAL, [x, y])
    page.mouse.wheel(0, -400)
    page.wait_for_function(
        "() => document.querySelector('#graph-host svg.graph-view').dataset.transform"
        " !== '0,0,1'")
    tx, ty, k = transform(page)
    assert k > 1.5
    after = page.evaluate(LOCAL, [x, y])
    assert after == pytest.approx(before, abs=0.5)
    # drag: the view follows the pointer (the point grabbed stays under it)
    grabbed = page.evaluate(LOCAL, [x, y])
    page.mouse.down()
    page.mouse.move(x - 120, y + 60, steps=6)
    page.mouse.up()
    tx2, ty2, k2 = transform(page)
    assert k2 == k and tx2 < tx and ty2 > ty
    assert page.evaluate(LOCAL, [x - 120, y + 60]) == pytest.approx(grabbed, abs=0.5)
    card.screenshot(path=str(ARTIFACTS / "viewer-concept-graph-zoomed.png"))
    # double click: back to the whole graph
    svg.dblclick(position={"x": 5, "y": 5})
    assert transform(page) == (0.0, 0.0, 1.0)

    # hover a unit of the last layer: its numbers, its incoming edges highlighted
    top = next(n for n in data["nodes"] if n["layer"] == "conv3")
    node = card.locator(f"g.graph-node[data-id='{top['id']}']")
    node.hover()
    detail = card.locator(".graph-detail")
    expect(detail).to_have_attribute("data-node", top["id"])
    expect(detail).to_contain_text(f"conv3 · channel {top['channel']}")
    expect(detail).to_contain_text(f"{top['count']} images")
    incoming = [e for e in data["edges"] if e["target"] == top["id"]]
    assert incoming
    expect(card.locator("path.graph-edge.hot")).to_have_count(len(incoming))
    # hover an influence at its curve's middle (the middle of a symmetric cubic)
    e = incoming[0]
    pos = data["layout"]["positions"]
    a, b = pos[e["source"]], pos[e["target"]]
    mid_local = ((a["x"] + a["size"] + b["x"]) / 2, (a["y"] + b["y"] + a["size"]) / 2)
    client = page.evaluate("""([x, y]) => {
      const g = document.querySelector('#graph-host svg.graph-view g.graph-viewport');
      const p = new DOMPoint(x, y).matrixTransform(g.getScreenCTM());
      return [p.x, p.y];
    }""", list(mid_local))
    page.mouse.move(client[0], client[1])
    expect(detail).to_have_attribute("data-edge", timeout=10_000)
    shown = detail.get_attribute("data-edge") or ""
    assert shown in {f"{x['source']}>{x['target']}" for x in data["edges"]}
    expect(detail).to_contain_text("weight")
    card.screenshot(path=str(ARTIFACTS / "viewer-concept-graph-hover.png"))
    # the card's downloads are the server's renderings
    for label in ("SVG", "PNG"):
        link = card.locator(".downloads a", has_text=label)
        expect(link).to_have_count(1)
        href = link.get_attribute("href") or ""
        r = httpx.get(server + href, timeout=30)
        assert r.status_code == 200 and len(r.content) > 100
