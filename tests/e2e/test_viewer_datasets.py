"""The viewer's datasets page (#datasets) in headless Chromium against a real embedded server
with the built-in digits-cnn and digits dataset: the list shows digits (built in, 1797 8x8
images, 10 classes) and its images; a zip made here is uploaded and listed, then deleted; a
refused upload shows its code and the files it rejected; max_activating draws the ranking
grid; dataset_predictions draws the confusion matrix, and clicking a cell shows its images
(the dataset images endpoint), the same ones the API lists for that cell. Screenshots go to
test-artifacts/viewer-datasets-*.png."""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Browser, Page, expect

from lantern_testing.processes import embedded_api
from lantern_testing.viewer import chromium, viewer_page

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
JOB = 180_000  # ms: a dataset analysis's job, on a loaded machine


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with embedded_api(tmp_path_factory.mktemp("viewer-datasets"),
                      LANTERN_BUILTIN_MODELS='["digits-cnn"]',
                      LANTERN_BUILTIN_DATASETS='["digits"]') as base:
        yield base


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    yield from chromium()


@pytest.fixture
def page(browser: Browser, server: str) -> Iterator[Page]:
    """The datasets page, loaded; fails the test on a console error or a page error."""
    with viewer_page(browser, server + "/#datasets", "#datasets-page") as page:
        expect(page.locator("#explain-page")).to_be_hidden()
        yield page


def png(value: int, size: int = 12) -> bytes:
    img = np.zeros((size, size, 3), np.uint8)
    img[: size // 2] = value
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def zipped(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for k, v in files.items():
            zf.writestr(k, v)
    return buf.getvalue()


def all_loaded(page: Page, selector: str, width: int | None = None) -> int:
    """Waits until every matching <img> shows a picture (of ``width`` pixels); how many."""
    page.wait_for_function(
        "([s, w]) => { const xs = [...document.querySelectorAll(s)];"
        " return xs.length > 0 && xs.every(i => i.complete && i.naturalWidth > 0"
        " && (w === null || i.naturalWidth === w)); }",
        arg=[selector, width], timeout=60_000)
    return int(page.locator(selector).count())


def run_analysis(page: Page, method: str) -> None:
    page.select_option("#ds-dataset", "digits")
    page.select_option("#ds-model", "digits-cnn")
    page.select_option("#ds-method", method)
    page.click("#ds-run")
    expect(page.locator("#ds-job")).to_be_visible()
    expect(page.locator("#ds-result")).to_have_attribute("data-method", method, timeout=JOB)
    expect(page.locator("#ds-job-state")).to_have_text("succeeded")
    expect(page.locator("#ds-job-percent")).to_have_text("100%")


def test_list_upload_refusals_and_delete(page: Page, server: str, tmp_path: Path) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    digits = page.locator("#ds-list tr[data-dataset=digits]")
    expect(digits.locator(".ds-count")).to_have_text("1797")
    expect(digits.locator(".badge")).to_have_text("built-in")
    expect(digits.locator(".ds-classes")).to_contain_text("10: 0, 1, 2")
    expect(digits).to_contain_text("8×8")
    expect(digits.locator("button.ds-delete")).to_have_count(0)  # built in: not deletable
    # its details, with its first images from the images endpoint (8x8 shown at 48 px)
    digits.click()
    detail = page.locator("#ds-detail")
    expect(detail).to_have_attribute("data-dataset", "digits")
    info = httpx.get(f"{server}/v1/datasets/digits").json()
    expect(detail).to_contain_text(info["version"])
    assert all_loaded(page, "#ds-detail img.ds-thumb", 48) == 16
    page.click("#ds-detail button.ds-more")  # the next page of them
    expect(page.locator("#ds-detail .ds-strip")).to_have_attribute("data-shown", "32")
    assert all_loaded(page, "#ds-detail img.ds-thumb", 48) == 32
    first = httpx.get(f"{server}/v1/datasets/digits/images?offset=16&limit=1").json()
    expect(page.locator("#ds-detail img.ds-thumb").nth(16)).to_have_attribute(
        "title", f"#16 · {first['images'][0]['id']} · label {first['images'][0]['label']}")

    # an upload: two classes in folders and a file that is no image (left out, and said)
    good = tmp_path / "tiny.zip"
    good.write_bytes(zipped({"cats/1.png": png(200), "cats/2.png": png(150),
                             "dogs/3.png": png(90), "dogs/notes.txt": b"not an image"}))
    page.set_input_files("#ds-file", str(good))
    page.fill("#ds-name", "tiny")
    page.click("#ds-upload")
    result = page.locator("#ds-upload-result")
    expect(result).to_have_class("ds-upload-result ok")
    expect(result).to_contain_text("tiny: 3 images, 2 classes")
    expect(result.locator(".ds-rejected li[data-path='dogs/notes.txt']")).to_contain_text(
        "not_an_image")
    tiny = page.locator("#ds-list tr[data-dataset=tiny]")
    expect(tiny.locator(".ds-count")).to_have_text("3")
    expect(tiny.locator(".ds-classes")).to_have_text("2: cats, dogs")
    expect(tiny).to_contain_text("12×12")
    expect(tiny.locator(".badge")).to_have_count(0)
    expect(page.locator("#ds-detail")).to_have_attribute("data-dataset", "tiny")
    assert all_loaded(page, "#ds-detail img.ds-thumb", 48) == 3
    expect(page.locator("#ds-detail button.ds-more")).to_be_hidden()  # all 3 shown
    expect(page.locator("#ds-dataset option[value=tiny]")).to_have_count(1)
    assert [d["name"] for d in httpx.get(f"{server}/v1/datasets").json()["datasets"]] == \
        ["digits", "tiny"]
    page.screenshot(path=str(ARTIFACTS / "viewer-datasets-list.png"), full_page=True)

    # refused whole (strict): the code, the sentence and the rejected file; nothing listed
    page.set_input_files("#ds-file", str(good))
    page.fill("#ds-name", "strict-one")
    page.check("#ds-strict")
    page.click("#ds-upload")
    expect(result).to_have_class("ds-upload-result refused")
    expect(result.locator(".ds-upload-code")).to_have_text("invalid_images")
    expect(result).to_contain_text("not usable images")
    expect(result.locator(".ds-rejected li[data-path='dogs/notes.txt']")).to_have_count(1)
    page.uncheck("#ds-strict")
    # not a zip at all
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"this is not a zip archive")
    page.set_input_files("#ds-file", str(bad))
    page.fill("#ds-name", "broken")
    page.click("#ds-upload")
    expect(result.locator(".ds-upload-code")).to_have_text("invalid_archive")
    # a built-in's name cannot be taken
    page.set_input_files("#ds-file", str(good))
    page.fill("#ds-name", "digits")
    page.click("#ds-upload")
    expect(result.locator(".ds-upload-code")).to_have_text("dataset_protected")
    page.screenshot(path=str(ARTIFACTS / "viewer-datasets-refused.png"), full_page=True)
    expect(page.locator("#ds-list tbody tr")).to_have_count(2)

    # delete (two clicks): the row goes, and the dataset with it
    tiny.locator("button.ds-delete").click()
    expect(tiny).to_contain_text("Delete tiny?")
    tiny.locator("button.ds-delete-yes").click()
    expect(page.locator("#ds-list tr[data-dataset=tiny]")).to_have_count(0)
    expect(page.locator("#ds-detail")).to_be_hidden()
    assert httpx.get(f"{server}/v1/datasets/tiny").json()["code"] == "unknown_dataset"


def test_the_analyses_listed_are_the_servers(page: Page, server: str) -> None:
    methods = httpx.get(f"{server}/v1/methods").json()["methods"]
    wanted = [m["name"] for m in methods if m["kind"] == "dataset"]
    assert {"max_activating", "min_activating", "dataset_predictions"} <= set(wanted)
    options = page.locator("#ds-method option").evaluate_all("os => os.map(o => o.value)")
    assert options == wanted
    # the params form is the method's schema
    page.select_option("#ds-method", "max_activating")
    expect(page.locator("#ds-params input[name=k]")).to_have_value("16")
    expect(page.locator("#ds-params select[name=reduce] option")).to_have_count(2)
    kinds = page.locator("#ds-objective-kind option").evaluate_all("os => os.map(o => o.value)")
    assert kinds == ["channel", "neuron", "class"]
    page.select_option("#ds-method", "dataset_predictions")
    expect(page.locator("#ds-params input[name=max_ids]")).to_have_value("1000")
    expect(page.locator("#ds-layer-field")).to_be_hidden()


def test_max_activating_draws_the_ranking_grid(page: Page, server: str) -> None:
    page.select_option("#ds-model", "digits-cnn")
    page.select_option("#ds-method", "max_activating")
    page.select_option("#ds-objective-kind", "channel")
    expect(page.locator("#ds-layer option[value=conv3]")).to_have_count(1, timeout=30_000)
    page.select_option("#ds-layer", "conv3")
    # a refusal first: channel 99 of conv3 (its code in the banner, no job)
    page.fill("#ds-channel", "99")
    page.click("#ds-run")
    expect(page.locator("#error")).to_be_visible()
    expect(page.locator("#error-code")).to_have_text("invalid_objective")
    page.click("#error-close")
    page.fill("#ds-channel", "3")
    page.fill("#ds-params input[name=k]", "12")
    run_analysis(page, "max_activating")
    cards = page.locator("#ds-cards")
    expect(cards.locator(".card[data-artifact=ranking] .ranking-tile")).to_have_count(12)
    expect(cards.locator(".card[data-artifact=grid] img")).to_have_count(1)
    all_loaded(page, "#ds-cards .card[data-artifact=grid] img")
    expect(page.locator("#ds-result-head")).to_contain_text("max_activating")
    expect(page.locator("#ds-result-head")).to_contain_text("k 12")
    # the tiles are the API's ranking, in its order
    job = page.get_attribute("#ds-result", "data-job")
    ranking = httpx.get(f"{server}/v1/jobs/{job}/artifacts/ranking?format=json").json()
    rows = ranking.get("data", ranking)["rows"]
    labels = cards.locator(".ranking-tile").evaluate_all(
        "ts => ts.map(t => t.getAttribute('aria-label'))")
    assert labels == [f"rank {r[0]}: {r[2]}" for r in rows]
    page.screenshot(path=str(ARTIFACTS / "viewer-datasets-ranking.png"), full_page=True)


def test_dataset_predictions_draws_the_confusion_matrix(page: Page, server: str) -> None:
    page.select_option("#ds-method", "dataset_predictions")
    run_analysis(page, "dataset_predictions")
    job = page.get_attribute("#ds-result", "data-job")
    matrix = page.locator("#ds-cards .card[data-artifact=confusion]")
    expect(matrix.locator("td.cm-cell")).to_have_count(100)
    expect(matrix.locator("td.cm-cell.diag")).to_have_count(10)
    conf = httpx.get(f"{server}/v1/jobs/{job}/artifacts/confusion?format=json").json()
    rows = conf.get("data", conf)["rows"]
    shown = matrix.locator("td.cm-cell").evaluate_all(
        "cs => cs.map(c => [Number(c.dataset.true), Number(c.dataset.pred),"
        " Number(c.dataset.count), c.textContent, getComputedStyle(c).backgroundColor])")
    for t, p, n, text, _ in shown:
        assert n == rows[t][p] and text == (str(n) if n else "")
    # heat: a diagonal cell (most of its row) is coloured, an empty cell is white
    colour = {(t, p): bg for t, p, _, _, bg in shown}
    empty = [(t, p) for t, p, n, _, _ in shown if n == 0]
    assert empty and colour[empty[0]] == "rgb(255, 255, 255)"
    assert all(colour[(i, i)] != "rgb(255, 255, 255)" for i in range(10))
    confused = [(t, p) for t, p, n, _, _ in shown if n and t != p]
    assert confused and all(colour[c] != "rgb(255, 255, 255)" for c in confused)
    expect(matrix.locator(".card-title")).to_contain_text("accuracy")

    # a cell of misclassified images: its thumbnails, the ones the API's cell lists
    cells_body = httpx.get(f"{server}/v1/jobs/{job}/artifacts/cells?format=json").json()
    cells = cells_body.get("data", cells_body)["rows"]
    wrong = max((c for c in cells if c[0] != c[1]), key=lambda c: c[4])
    t, p, count, ids = wrong[0], wrong[1], wrong[4], wrong[5]
    matrix.locator(f"td.cm-cell[data-true='{t}'][data-pred='{p}']").click()
    panel = matrix.locator(".cell-images")
    expect(panel).to_have_attribute("data-loaded", str(min(count, 48)), timeout=30_000)
    expect(panel).to_contain_text(f"true {wrong[2]} → predicted {wrong[3]}: {count} image")
    assert all_loaded(page, "#ds-cards .card[data-artifact=confusion] .cell-thumb img",
                      64) == min(count, 48)
    captions = panel.locator("figcaption").all_text_contents()
    assert captions == ids[:48]
    # each thumbnail is that image: the endpoint's picture of the listed index
    index = int(panel.locator("img").first.get_attribute("data-index") or -1)
    listed = httpx.get(f"{server}/v1/datasets/digits/images", params={"id": ids[0]}).json()
    assert listed["images"][0]["index"] == index
    page.screenshot(path=str(ARTIFACTS / "viewer-datasets-confusion.png"), full_page=True)

    # a diagonal cell: its (many) images, the first 48 shown
    diag = matrix.locator("td.cm-cell[data-true='1'][data-pred='1']")
    diag.click()
    expect(panel).to_have_attribute("data-loaded", "48", timeout=30_000)
    expect(panel).to_contain_text("(the first 48 shown)")
    # the list of confusions, largest first, each showing its images too
    listed_cells = page.locator("#ds-cards .card[data-artifact=cells] li.confusion")
    expect(listed_cells.first).to_have_attribute("data-count", str(count))
    listed_cells.first.click()
    other = page.locator("#ds-cards .card[data-artifact=cells] .cell-images")
    expect(other).to_have_attribute("data-loaded", str(min(count, 48)), timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "viewer-datasets-cells.png"), full_page=True)


def test_the_explain_page_is_one_click_away(page: Page) -> None:
    page.click("#nav-explain")
    expect(page.locator("#explain-page")).to_be_visible()
    expect(page.locator("#datasets-page")).to_be_hidden()
    expect(page.locator("#nav-explain")).to_have_attribute("aria-current", "page")
    page.click("#nav-datasets")
    expect(page.locator("#datasets-page")).to_be_visible()
    expect(page.locator("#ds-list tr[data-dataset=digits]")).to_have_count(1)
    # a dataset analysis picked on the Explain page: not run there, linked to this page
    page.click("#nav-explain")
    page.select_option("#model", "digits-cnn")
    page.select_option("#method", "min_activating")
    expect(page.locator("#method-inputs")).to_contain_text("Takes a dataset")
    expect(page.locator("#run")).to_be_disabled()
    page.click("#to-datasets")
    expect(page.locator("#datasets-page")).to_be_visible()
    expect(page.locator("#ds-method")).to_have_value("min_activating")
    expect(page.locator("#ds-model")).to_have_value("digits-cnn")


def test_the_other_analyses_are_drawn_by_their_renderers(page: Page, server: str) -> None:
    """The page names none of them: each result's artifacts go to the renderer registered
    for their type (density bars, the embedding's scatter, the concept graph)."""
    page.select_option("#ds-model", "digits-cnn")
    page.select_option("#ds-method", "activation_distributions")
    page.fill("#ds-params input[name=layers]", "conv3")
    page.fill("#ds-params input[name=bins]", "16")
    run_analysis(page, "activation_distributions")
    card = page.locator("#ds-cards .card[data-type=distributions]")
    expect(card.locator(".density-row").first).to_be_visible(timeout=30_000)
    expect(card.locator(".density-sets input[type=checkbox]")).to_have_count(10)

    page.select_option("#ds-method", "embedding")
    page.select_option("#ds-objective-kind", "layer_norm")
    expect(page.locator("#ds-layer option[value=conv3]")).to_have_count(1, timeout=30_000)
    page.select_option("#ds-layer", "conv3")
    page.fill("#ds-params input[name=iterations]", "150")
    run_analysis(page, "embedding")
    card = page.locator("#ds-cards .card[data-type=embedding]")
    expect(card.locator("circle.pt")).to_have_count(1797, timeout=30_000)
    # hovering a dot shows its dataset image (the images endpoint)
    dot = card.locator("circle.pt").nth(1796)  # drawn last: on top
    dot.hover(force=True)  # (scrolled into view, the pointer at its centre)
    hover = card.locator(".scatter-hover")
    expect(hover).to_have_attribute("data-index", dot.get_attribute("data-index") or "",
                                    timeout=30_000)
    expect(hover.locator("img.scatter-thumb").first).to_be_visible(timeout=30_000)
    all_loaded(page, "#ds-cards .scatter-hover img.scatter-thumb")
    page.screenshot(path=str(ARTIFACTS / "viewer-datasets-embedding.png"), full_page=True)

    page.select_option("#ds-method", "concept_graph")
    page.fill("#ds-target", "3")
    run_analysis(page, "concept_graph")
    card = page.locator("#ds-cards .card[data-type=graph]")
    expect(card.locator(".graph-view")).to_have_count(1, timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "viewer-datasets-graph.png"), full_page=True)


def test_a_running_analysis_is_cancelled(page: Page, server: str) -> None:
    # a long one: t-SNE's most iterations over the digits' logits, a seed of its own
    page.select_option("#ds-model", "digits-cnn")
    page.select_option("#ds-method", "embedding")
    page.select_option("#ds-objective-kind", "class")
    page.fill("#ds-params input[name=iterations]", "5000")
    page.fill("#ds-params input[name=seed]", "424242")
    page.click("#ds-run")
    # the page's idle state must not pass for the job's: wait for the answer's job id
    expect(page.locator("#ds-job")).to_have_attribute("data-job", re.compile(".+"))
    expect(page.locator("#ds-job-state")).to_have_text(re.compile("queued|running"))
    expect(page.locator("#ds-cancel")).to_be_enabled()
    job = page.get_attribute("#ds-job", "data-job")
    assert job
    page.click("#ds-cancel")
    expect(page.locator("#ds-job-state")).to_have_text("cancelled")
    expect(page.locator("#ds-cancel")).to_be_disabled()
    expect(page.locator("#ds-run")).to_be_enabled()
    expect(page.locator("#error")).to_be_hidden()
    assert httpx.get(f"{server}/v1/jobs/{job}").json()["state"] == "cancelled"
    expect(page.locator("#ds-cards .card")).to_have_count(0)


def test_a_failed_analysis_shows_its_code(page: Page, server: str) -> None:
    # labels the model does not have: nothing to score its predictions against
    r = httpx.post(f"{server}/v1/datasets", data={"name": "pets"}, files={"file": (
        "p.zip", zipped({"cat/1.png": png(10), "dog/2.png": png(250)}), "application/zip")})
    assert r.status_code == 201, r.text
    page.reload()
    expect(page.locator("#datasets-page")).to_have_attribute("data-ready", "1", timeout=60_000)
    page.select_option("#ds-dataset", "pets")
    page.select_option("#ds-model", "digits-cnn")
    page.select_option("#ds-method", "dataset_predictions")
    page.click("#ds-run")
    expect(page.locator("#error-code")).to_have_text("invalid_input", timeout=JOB)
    expect(page.locator("#error-message")).to_contain_text("no labels that name the model's")
    expect(page.locator("#ds-job-state")).to_have_text("failed")
    expect(page.locator("#ds-run")).to_be_enabled()
    expect(page.locator("#ds-cards .card")).to_have_count(0)
    assert httpx.delete(f"{server}/v1/datasets/pets").status_code == 204
