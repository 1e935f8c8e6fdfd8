"""What the viewer's browser tests of dataset analyses share: headless Chromium, a page that
fails its test on a console or page error, a finished job, and drawing a result with the
viewer's own renderers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from playwright.sync_api import Browser, Page, expect, sync_playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def chromium() -> Iterator[Browser]:
    """A module fixture's body: Chromium, closed after the module."""
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@contextmanager
def viewer_page(browser: Browser, url: str, ready: str = "body") -> Iterator[Page]:
    """The viewer at ``url``, once ``ready`` has data-ready="1"; asserts at exit that no
    console error (a 4xx is logged as a failed load: not one) nor page error happened."""
    errors: list[str] = []
    pg = browser.new_page(viewport={"width": 1440, "height": 1000})
    pg.on("console", lambda m: errors.append(m.text)
          if m.type == "error" and "Failed to load resource" not in m.text else None)
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.goto(url)
    expect(pg.locator(ready)).to_have_attribute("data-ready", "1", timeout=60_000)
    yield pg
    pg.close()
    assert not errors, errors


def finished_job(server: str, body: dict[str, Any], timeout: float = 400) -> str:
    """Submit ``body`` to POST /v1/explanations and wait for it to succeed; its id."""
    r = httpx.post(f"{server}/v1/explanations", json=body, timeout=60)
    assert r.status_code == 202, r.text
    job_id = str(r.json()["id"])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = httpx.get(f"{server}/v1/jobs/{job_id}", timeout=30).json()
        if st["state"] in ("succeeded", "failed", "cancelled"):
            assert st["state"] == "succeeded", st
            return job_id
        time.sleep(0.2)
    raise AssertionError("the job did not finish")


#: JS: draw job ``job``'s result with the viewer's renderers into a new section ``host``;
#: the artifacts' types.
DRAW = """async ([job, hostId]) => {
  const L = window.Lantern;
  const result = await L.apiJson(`/v1/jobs/${job}/result`);
  const ctx = { result, image: null, display: { opacity: 0.5, colormap: "jet" },
                claim: () => false, first: () => true };
  const host = document.createElement("section");
  host.id = hostId;
  document.body.prepend(host);
  host.replaceChildren(...result.artifacts.map(
    (a) => (L.RENDERERS[a.type] || L.renderGeneric)(a, ctx).node));
  return result.artifacts.map((a) => a.type);
}"""


def draw(page: Page, job: str, host: str) -> list[str]:
    out: list[str] = page.evaluate(DRAW, [job, host])
    return out
