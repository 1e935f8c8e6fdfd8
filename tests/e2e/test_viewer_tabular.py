"""The viewer with a tabular model in headless Chromium against a real embedded server: the
row editor (a field per feature, prefilled from the training statistics), a real LIME job on
the built-in breast-cancer GBM, and the feature weights drawn as a signed bar chart sorted
by |weight|, with its downloads. A screenshot goes to test-artifacts/viewer-tabular.png.
Fixtures are test_viewer_browser's."""

from __future__ import annotations

from typing import Any

import e2e.test_viewer_browser as viewer
import pytest

pytestmark = pytest.mark.e2e

browser_exe = viewer.browser_exe
browser = viewer.browser
page = viewer.page
server = viewer.server
ARTIFACTS = viewer.ARTIFACTS


def test_tabular_model_explained_in_the_viewer(page: Any) -> None:
    from playwright.sync_api import expect

    page.select_option("#model", "breast-cancer-gbm")
    editor = page.locator(".tabular-editor")
    expect(editor).to_be_visible()
    expect(page.locator("#image-section")).to_be_hidden()
    fields = editor.locator("input[data-feature]")
    assert fields.count() == 30
    radius = editor.locator("input[data-feature='mean radius']")
    assert 10 < float(radius.input_value()) < 20  # the training mean (about 14.1)
    radius.fill("22.5")
    page.select_option("#method", "lime")
    expect(page.locator("#run")).to_be_enabled()
    page.click("#run")
    card = page.locator(".card[data-artifact=features]").first
    expect(card).to_have_attribute("data-state", "drawn", timeout=60_000)
    bars = card.locator("rect.feature-bar")
    assert bars.count() == 30
    weights = [float(bars.nth(i).get_attribute("data-weight") or "nan") for i in range(30)]
    assert [abs(w) for w in weights] == sorted((abs(w) for w in weights), reverse=True)
    fills = {bars.nth(i).get_attribute("fill") for i in range(30)}
    assert fills <= {"#1f77b4", "#d62728"} and len(fills) == 2  # signed
    # LIME weighs the row's quartile bin: the edited radius is in the top one
    assert card.locator("text", has_text="mean radius > ").count() == 1
    for fmt in ("png", "svg", "json"):
        expect(card.locator("a", has_text=fmt)).to_have_count(1)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "viewer-tabular.png"), full_page=True)
