"""The viewer with a series model in headless Chromium against a real embedded server: the
series editor (paste JSON, or pick an example of the built-in GunPoint test set), refusals
of a wrong paste before sending, a real Grad-CAM run on the built-in gunpoint-cnn, the
series plot (a line and a heat band whose hottest step is the attribution's peak) and the
time attribution card. A screenshot goes to test-artifacts/viewer-time-series.png.
Fixtures are test_viewer_browser's."""

from __future__ import annotations

import json
from typing import Any

import e2e.test_viewer_browser as viewer
import numpy as np
import pytest

pytestmark = pytest.mark.e2e

browser_exe = viewer.browser_exe
browser = viewer.browser
page = viewer.page
server = viewer.server
ARTIFACTS = viewer.ARTIFACTS


def test_series_model_explained_in_the_viewer(page: Any) -> None:
    from playwright.sync_api import expect

    page.select_option("#model", "gunpoint-cnn")
    area = page.locator("#series-input")
    expect(area).to_be_visible()
    expect(page.locator("#image-section")).to_be_hidden()
    expect(page.locator("#run")).to_be_disabled()  # no series yet
    page.select_option("#method", "grad_cam")
    # a wrong paste is refused in the editor, and nothing can be sent
    area.fill(json.dumps([0.0] * 149))
    expect(page.locator("#series-status")).to_have_attribute("data-state", "error")
    expect(page.locator("#series-status")).to_contain_text("150")
    expect(page.locator("#run")).to_be_disabled()
    area.fill("[1, 2, \"x\"]")
    expect(page.locator("#series-status")).to_contain_text("Numbers only")
    # an example of the built-in test set
    expect(page.locator("#series-example option")).to_have_count(7, timeout=10_000)
    page.select_option("#series-example", "0")
    expect(page.locator("#series-status")).to_have_attribute("data-state", "ok")
    expect(page.locator(".series-preview .series-line")).to_have_count(1)
    expect(page.locator("#run")).to_be_enabled()
    page.click("#run")
    card = page.locator(".card[data-artifact=plot]").first
    expect(card).to_have_attribute("data-state", "drawn", timeout=60_000)
    expect(card.locator(".series-line")).to_have_count(1)
    cells = card.locator(".series-band rect")
    assert cells.count() == 150
    weights = np.array(
        cells.evaluate_all("rs => rs.map(r => Number(r.dataset.weight))"), np.float64
    )
    assert np.isfinite(weights).all() and weights.max() > 0
    peak = int(np.argmax(np.abs(weights)))
    expect(card.locator(".series-peak")).to_contain_text(f"step {peak} ")
    colours = cells.evaluate_all("rs => rs.map(r => r.getAttribute('fill'))")
    assert colours[peak] != "rgb(255, 255, 255)" and len(set(colours)) > 5
    att = page.locator(".card[data-artifact=attribution]").first
    expect(att).to_have_attribute("data-state", "drawn", timeout=30_000)
    assert att.locator(".series-band rect").count() == 150
    expect(card.locator("a", has_text="png")).to_have_count(1)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "viewer-time-series.png"), full_page=True)
