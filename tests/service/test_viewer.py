"""The web viewer's page and assets, served by the app (create_app + mount_viewer)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from lantern.settings import Settings
from service.app import create_app
from service.routers.viewer import STATIC_DIR, mount_viewer


@pytest.fixture(scope="module")
def viewer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    data: Path = tmp_path_factory.mktemp("data")
    app = create_app(Settings(data_dir=data, builtin_model=False))
    if not any(getattr(r, "path", None) == "/static" for r in app.routes):
        mount_viewer(app)
    with TestClient(app) as c:
        yield c


def test_index_is_the_viewer_page(viewer: TestClient) -> None:
    r = viewer.get("/")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    html = r.text
    assert "<title>Lantern" in html
    assert '<script src="/static/app.js"></script>' in html
    assert 'href="/static/app.css"' in html
    for element in ('id="model"', 'id="method"', 'id="params"', 'id="canvas"', 'id="opacity"'):
        assert element in html
    # the answers' panes (side by side once one is pinned) and the comparison's buttons
    for element in ('id="panes"', 'id="pane-current"', 'id="pin"', 'id="clear-compare"'):
        assert element in html
    # the "Explain" picker: a class target, or another objective on a layer of the model
    for element in (
        'id="objective-kind"',
        'id="class-target"',
        'id="objective-layer"',
        'id="objective-channel"',
        'id="objective-y"',
        'id="objective-x"',
        'id="objective-vector"',
    ):
        assert element in html
    # works offline: nothing is loaded from another host
    assert "http://" not in html.replace("http://localhost", "")
    assert "https://" not in html


@pytest.mark.parametrize(
    ("path", "ctype", "needle"),
    [
        ("/static/app.js", "javascript", b"/v1/explanations"),
        ("/static/app.css", "text/css", b".colorbar"),
    ],
)
def test_static_assets_are_served(viewer: TestClient, path: str, ctype: str, needle: bytes) -> None:
    r = viewer.get(path)
    assert r.status_code == 200
    assert ctype in r.headers["content-type"]
    assert needle in r.content
    assert r.content == (STATIC_DIR / path.removeprefix("/static/")).read_bytes()


def test_sample_image_is_served(viewer: TestClient) -> None:
    r = viewer.get("/static/samples/chelsea.jpg")
    assert r.status_code == 200
    assert r.headers["content-type"] == "image/jpeg"
    img = Image.open(io.BytesIO(r.content))
    assert img.format == "JPEG" and img.size == (451, 300) and img.mode == "RGB"


def test_missing_asset_is_404_and_api_still_answers(viewer: TestClient) -> None:
    assert viewer.get("/static/nope.js").status_code == 404
    assert viewer.get("/v1/methods").status_code == 200
    assert viewer.get("/healthz").json() == {"status": "ok"}
    # the page is not part of the API's OpenAPI schema
    assert "/" not in viewer.get("/openapi.json").json()["paths"]


def test_script_has_a_renderer_per_artifact_type(viewer: TestClient) -> None:
    js = viewer.get("/static/app.js").text
    assert "const RENDERERS = {" in js
    block = js[js.index("const RENDERERS = {") :]
    block = block[: block.index("};")]
    for artifact_type in ("attribution", "image", "segments", "curve", "table"):
        assert f"{artifact_type}: render" in block, artifact_type
    assert "registerRenderer" in js
    # the layer param is a pick list filled from GET /v1/models/{model}
    assert "/v1/models/${encodeURIComponent(m.name)}`" in js


def test_script_sends_objectives_and_draws_previews(viewer: TestClient) -> None:
    js = viewer.get("/static/app.js").text
    # an objective goes as the multipart field `objective` (JSON), or in a JSON body
    assert 'form.append("objective", JSON.stringify(ask.objective))' in js
    assert '"content-type": "application/json"' in js
    # the kinds a method takes, and whether it takes an input, come from GET /v1/methods
    assert "method.objectives" in js and "method.inputs" in js
    for kind in ("class", "channel", "neuron", "layer_norm", "direction"):
        assert f"{kind}: " in js[js.index("const OBJECTIVE_KINDS = {") :], kind
    # a running job's previews are drawn through the same renderers
    assert "st.preview" in js and "renderCards(pane, pane.preview, false)" in js


@pytest.mark.parametrize("path", ["/static/app.js", "/static/app.css"])
def test_assets_load_nothing_from_another_host(viewer: TestClient, path: str) -> None:
    text = viewer.get(path).text.replace("http://www.w3.org/2000/svg", "")  # SVG namespace
    assert "http://" not in text and "https://" not in text
    assert "@import" not in text and "url(//" not in text


def test_every_renderer_file_is_loaded_after_the_app_script(
    viewer: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from service.routers import viewer as viewer_module

    renderers = tmp_path / "renderers"
    renderers.mkdir()
    (renderers / "b_histogram.js").write_text("// b")
    (renderers / "a_bars.js").write_text("// a")
    (renderers / "notes.txt").write_text("not a script")
    monkeypatch.setattr(viewer_module, "RENDERERS_DIR", renderers)
    html = viewer.get("/").text
    app_at = html.index('<script src="/static/app.js"></script>')
    a_at = html.index('<script src="/static/renderers/a_bars.js"></script>')
    b_at = html.index('<script src="/static/renderers/b_histogram.js"></script>')
    assert app_at < a_at < b_at
    assert "notes.txt" not in html
