"""The viewer with a text model in headless Chromium against a real embedded server: the
text editor (a textarea), a real occlusion job on the built-in sentiment model, the words
highlighted in the text (blue raises the score, red lowers it), the ranking and the
downloads. A screenshot goes to test-artifacts/viewer-text.png. Fixtures are
test_viewer_browser's."""

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

TEXT = "The film was wonderful, but the ending was dreadful."


def test_text_model_explained_in_the_viewer(page: Any) -> None:
    from playwright.sync_api import expect

    page.select_option("#model", "sentiment-tfidf")
    area = page.locator("#text-input")
    expect(area).to_be_visible()
    expect(page.locator("#image-section")).to_be_hidden()
    expect(page.locator("#run")).to_be_disabled()  # no text yet
    area.fill(TEXT)
    page.select_option("#method", "occlusion")
    expect(page.locator("#run")).to_be_enabled()
    page.click("#run")
    card = page.locator(".card[data-artifact=attribution]").first
    expect(card).to_have_attribute("data-state", "drawn", timeout=60_000)
    # the text itself, punctuation included, each word a highlighted span
    expect(card.locator(".text-attribution")).to_have_text(TEXT)
    words = card.locator(".text-word")
    assert words.count() == 9  # The film was wonderful but the ending was dreadful
    weights = {
        words.nth(i).inner_text(): float(words.nth(i).get_attribute("data-weight") or "nan")
        for i in range(words.count())
    }
    good, bad = weights["wonderful"], weights["dreadful"]
    top = max(abs(v) for v in weights.values())
    # the built-in model's top1 is one of the two classes: the planted words pull apart
    assert good * bad < 0 and max(abs(good), abs(bad)) == top
    colour_good = words.nth(3).evaluate("e => getComputedStyle(e).backgroundColor")
    colour_bad = words.nth(8).evaluate("e => getComputedStyle(e).backgroundColor")
    assert colour_good != colour_bad and "255, 255, 255" not in colour_good
    ranked = card.locator(".text-ranking tbody tr").first
    expect(ranked).to_have_attribute("data-word", "wonderful" if abs(good) == top else "dreadful")
    expect(card.locator("a", has_text="html")).to_have_count(1)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "viewer-text.png"), full_page=True)
