"""The viewer's density bars (service/static/renderers/density.js) in headless Chromium
against a real embedded server with the built-in digits-cnn and digits dataset: a real
activation_distributions job (label 3, label 8 and the misclassified digits over conv3) is
drawn by the viewer's renderers — one row per channel in the ranked order, one band per set,
each row's most common cell fully opaque; the set picker takes a set out and puts it back
(the bands and opacities follow); more channels on demand; a click on a ranked channel
marks its row. Screenshot: test-artifacts/viewer-distributions.png."""

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
SETS = [{"by": "label", "value": "3"}, {"by": "label", "value": "8"}, {"by": "incorrect"}]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with embedded_api(tmp_path_factory.mktemp("viewer-distributions"),
                      LANTERN_BUILTIN_MODELS='["digits-cnn"]',
                      LANTERN_BUILTIN_DATASETS='["digits"]') as base:
        yield base


@pytest.fixture(scope="module")
def job(server: str) -> str:
    return finished_job(server, {
        "model": "digits-cnn", "dataset": "digits", "method": "activation_distributions",
        "params": {"layers": "conv3", "bins": 24, "sets": SETS}})


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    yield from chromium()


@pytest.fixture
def page(browser: Browser, server: str) -> Iterator[Page]:
    """The viewer, loaded; fails the test on a console error or a page error."""
    with viewer_page(browser, server + "/", "body") as page:
        yield page



#: per drawn row, the largest fill-opacity of its cells
ROW_TOPS = """c => [...c.querySelectorAll('g.density-row')].map(
  g => Math.max(...[...g.querySelectorAll('g.density-band rect')].map(
    r => Number(r.getAttribute('fill-opacity')))))"""


def test_density_bars_and_the_set_picker(page: Page, server: str, job: str) -> None:
    types = draw(page, job, "distributions-host")
    assert types == ["distributions", "table"]
    card = page.locator("#distributions-host .card[data-type=distributions]")
    chart = card.locator(".density-chart")
    expect(chart).to_have_attribute("data-rows", "16", timeout=30_000)
    expect(chart).to_have_attribute("data-sets", "label 3|label 8|incorrect")
    expect(card.locator("g.density-band")).to_have_count(16 * 3)
    expect(card.locator("g.density-band[data-set='label 8'] rect")).to_have_count(16 * 24)
    assert chart.evaluate(ROW_TOPS) == [1.0] * 16  # each row's largest share: opaque
    expect(card.locator(".density-note")).to_contain_text("ranked by how label 3 and label 8")
    # rows in the ranked order: the first drawn is the table's first channel
    table = card.locator("table.density-differences tbody tr")
    expect(table).to_have_count(20, timeout=30_000)
    first_channel = table.first.get_attribute("data-channel")
    assert card.locator("g.density-row").first.get_attribute("data-channel") == first_channel
    ARTIFACTS.mkdir(exist_ok=True)
    card.screenshot(path=str(ARTIFACTS / "viewer-distributions.png"))
    # the picker: take label 8 out — its bands go, the others stay, opacities re-scaled
    card.locator(".density-sets input[data-set='label 8']").uncheck()
    expect(chart).to_have_attribute("data-sets", "label 3|incorrect")
    expect(card.locator("g.density-band")).to_have_count(16 * 2)
    expect(card.locator("g.density-band[data-set='label 8']")).to_have_count(0)
    assert chart.evaluate(ROW_TOPS) == [1.0] * 16
    # the last set shown cannot be taken out
    card.locator(".density-sets input[data-set='incorrect']").uncheck()
    card.locator(".density-sets input[data-set='label 3']").click()  # (uncheck would fail)
    expect(chart).to_have_attribute("data-sets", "label 3")
    expect(card.locator(".density-sets input[data-set='label 3']")).to_be_checked()
    card.locator(".density-sets input[data-set='label 8']").check()
    expect(chart).to_have_attribute("data-sets", "label 3|label 8")
    # more channels, then all 32: the button goes
    card.locator("button.density-more").click()
    expect(chart).to_have_attribute("data-rows", "32")
    expect(card.locator("button.density-more")).to_be_hidden()
    # a ranked channel, clicked, marks its row
    third = table.nth(2)
    third.click()
    marked = card.locator("g.density-row.marked")
    expect(marked).to_have_count(1)
    assert marked.get_attribute("data-channel") == third.get_attribute("data-channel")
    card.screenshot(path=str(ARTIFACTS / "viewer-distributions-picked.png"))


def test_the_png_link_is_the_servers_density_bars(page: Page, server: str, job: str) -> None:
    draw(page, job, "distributions-host")
    card = page.locator("#distributions-host .card[data-type=distributions]")
    link = card.locator(".downloads a", has_text="PNG")
    expect(link).to_have_count(1, timeout=30_000)
    href = link.get_attribute("href") or ""
    r = httpx.get(server + href if href.startswith("/") else href, timeout=30)
    assert r.status_code == 200 and r.content[:4] == b"\x89PNG"
    rows: Any = page.evaluate("async (job) => (await window.Lantern.apiJson("
                              "`/v1/jobs/${job}/artifacts/distributions?format=json`)).data.order",
                              job)
    assert len(rows) == 32
