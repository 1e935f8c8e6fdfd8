"""GET /v1/datasets/{dataset}/images/{index}: one image of a dataset as PNG, or a thumbnail
(longer side ``size``, nearest-neighbour when enlarging the 8x8 digits); any user may read
it; an ETag of version, index and size answers If-None-Match with a 304; a version named in
the query is cached for good; refusals are 4xx with stable codes."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from lantern.settings import ApiKey, Settings
from service.app import create_app
from service.auth import hash_key

ADMIN = {"Authorization": "Bearer adm"}
USER = {"Authorization": "Bearer usr"}


def encoded(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def zipped(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for k, v in files.items():
            zf.writestr(k, v)
    return buf.getvalue()


def decoded(data: bytes) -> Image.Image:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        assert img.format == "PNG"
        return img.copy()


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("data"), builtin_models=["digits-cnn"],
        builtin_datasets=["digits"],
        api_keys=[ApiKey(name="root", role="admin", sha256=hash_key("adm")),
                  ApiKey(name="u", role="user", sha256=hash_key("usr"))],
    )
    with TestClient(create_app(settings)) as c:
        yield c


RGB = np.arange(40 * 20 * 3, dtype=np.uint32).reshape(20, 40, 3).astype(np.uint8)


@pytest.fixture(scope="module")
def mixed(api: TestClient) -> dict[str, object]:
    """An upload of a JPEG (40x20 RGB), a palette GIF and an RGBA PNG."""
    pal = Image.fromarray(np.array([[0, 1], [2, 3]], np.uint8), mode="P")
    pal.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 9, 9] + [0] * 756)
    rgba = np.zeros((3, 5, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = 100
    files = {
        "a/photo.jpg": encoded(Image.fromarray(RGB), "JPEG"),
        "a/pal.gif": encoded(pal, "GIF"),
        "b/alpha.png": encoded(Image.fromarray(rgba, mode="RGBA"), "PNG"),
    }
    r = api.post("/v1/datasets", headers=ADMIN, data={"name": "mixed"},
                 files={"file": ("m.zip", zipped(files), "application/zip")})
    assert r.status_code == 201, r.text
    info: dict[str, object] = r.json()
    return info


#: the store's index order (paths sorted): the indices analyses report
ORDER = {"a/pal.gif": 0, "a/photo.jpg": 1, "b/alpha.png": 2}


def test_a_digit_as_png_for_any_user(api: TestClient) -> None:
    info = api.get("/v1/datasets/digits", headers=USER).json()
    r = api.get("/v1/datasets/digits/images/0", headers=USER)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    img = decoded(r.content)
    assert img.size == (8, 8)
    last = api.get(f"/v1/datasets/digits/images/{info['count'] - 1}", headers=USER)
    assert last.status_code == 200 and decoded(last.content).size == (8, 8)
    assert api.get("/v1/datasets/digits/images/0").status_code == 401


def test_thumbnail_enlarges_nearest_neighbour(api: TestClient) -> None:
    full = np.asarray(decoded(api.get("/v1/datasets/digits/images/5", headers=USER).content))
    r = api.get("/v1/datasets/digits/images/5?size=64", headers=USER)
    assert r.status_code == 200
    thumb = np.asarray(decoded(r.content))
    assert thumb.shape[:2] == (64, 64)
    # every 8x8 block of the thumbnail is one pixel of the digit, unblurred
    assert np.array_equal(thumb[::8, ::8], full)
    assert np.array_equal(thumb, np.repeat(np.repeat(full, 8, axis=0), 8, axis=1))


def test_formats_and_modes_become_png(api: TestClient, mixed: dict[str, object]) -> None:
    version = mixed["version"]
    jpg = api.get(f"/v1/datasets/mixed/images/{ORDER['a/photo.jpg']}",
                  headers=USER)
    img = decoded(jpg.content)
    assert img.size == (40, 20) and img.mode == "RGB"
    assert np.abs(np.asarray(img).astype(int) - RGB.astype(int)).mean() < 12
    small = decoded(api.get(f"/v1/datasets/mixed/images/{ORDER['a/photo.jpg']}"
                            "?size=10", headers=USER).content)
    assert small.size == (10, 5)  # the longer side is `size`, the aspect kept
    pal = decoded(api.get(f"/v1/datasets/mixed/images/{ORDER['a/pal.gif']}"
                          "?size=8", headers=USER).content)
    assert pal.size == (8, 8) and pal.mode == "RGB"
    assert tuple(np.asarray(pal)[0, 0]) == (255, 0, 0)
    assert tuple(np.asarray(pal)[7, 7]) == (9, 9, 9)
    alpha = decoded(api.get(f"/v1/datasets/mixed/images/{ORDER['b/alpha.png']}"
                            f"?version={version}", headers=USER).content)
    assert alpha.mode == "RGBA" and tuple(np.asarray(alpha)[1, 1]) == (200, 0, 0, 100)


def test_etag_and_cache(api: TestClient, mixed: dict[str, object]) -> None:
    version = str(mixed["version"])
    r = api.get("/v1/datasets/mixed/images/1?size=16", headers=USER)
    etag = r.headers["etag"]
    assert version in etag and etag == f'"{version}-1-16"'
    assert "no-cache" in r.headers["cache-control"]  # the name may name another version later
    again = api.get("/v1/datasets/mixed/images/1?size=16", headers={**USER,
                                                                     "If-None-Match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    other = api.get("/v1/datasets/mixed/images/1", headers={**USER, "If-None-Match": etag})
    assert other.status_code == 200 and other.headers["etag"] != etag
    pinned = api.get(f"/v1/datasets/mixed/images/1?size=16&version={version}", headers=USER)
    assert pinned.status_code == 200 and pinned.content == r.content
    assert "immutable" in pinned.headers["cache-control"]
    assert pinned.headers["etag"] == etag


def test_old_version_stays_readable(api: TestClient) -> None:
    one = Image.fromarray(np.full((4, 4, 3), 10, np.uint8))
    two = Image.fromarray(np.full((4, 4, 3), 250, np.uint8))
    first = api.post("/v1/datasets", headers=ADMIN, data={"name": "versions"},
                     files={"file": ("v.zip", zipped({"x/1.png": encoded(one, "PNG")}))}).json()
    api.post("/v1/datasets", headers=ADMIN, data={"name": "versions"},
             files={"file": ("v.zip", zipped({"x/1.png": encoded(two, "PNG")}))})
    now = decoded(api.get("/v1/datasets/versions/images/0", headers=USER).content)
    then = decoded(api.get(f"/v1/datasets/versions/images/0?version={first['version']}",
                           headers=USER).content)
    assert np.asarray(now)[0, 0, 0] == 250 and np.asarray(then)[0, 0, 0] == 10


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/v1/datasets/digits/images/1797", 404, "unknown_image"),
        ("/v1/datasets/digits/images/-1", 404, "unknown_image"),
        ("/v1/datasets/nope/images/0", 404, "unknown_dataset"),
        ("/v1/datasets/digits/images/0?version=0123456789abcdef", 404, "unknown_dataset"),
        ("/v1/datasets/digits/images/0?version=../record", 422, "validation_error"),
        ("/v1/datasets/digits/images/x", 422, "validation_error"),
        ("/v1/datasets/digits/images/0?size=7", 422, "validation_error"),
        ("/v1/datasets/digits/images/0?size=513", 422, "validation_error"),
        ("/v1/datasets/no%20such/images/0", 422, "invalid_input"),
    ],
)
def test_refusals(api: TestClient, path: str, status: int, code: str) -> None:
    r = api.get(path, headers=USER)
    assert r.status_code == status, r.text
    body = r.json()
    assert body["code"] == code and body["message"]
    if code == "unknown_image":
        assert body["details"]["count"] == 1797
        assert "0 to 1796" in body["message"]


def test_image_list_pages_and_ids(api: TestClient, mixed: dict[str, object]) -> None:
    page = api.get("/v1/datasets/digits/images?offset=1795&limit=10", headers=USER).json()
    assert page["count"] == 1797 and page["offset"] == 1795
    assert [i["index"] for i in page["images"]] == [1795, 1796]
    first = api.get("/v1/datasets/digits/images?limit=3", headers=USER).json()["images"]
    assert [i["index"] for i in first] == [0, 1, 2]
    assert all(i["width"] == 8 and i["height"] == 8 and i["label"] for i in first)
    # ids (a confusion cell's) -> indices, in the order asked
    ids = [first[2]["id"], first[0]["id"]]
    got = api.get("/v1/datasets/digits/images", params={"id": ids}, headers=USER).json()
    assert [i["index"] for i in got["images"]] == [2, 0]
    assert [i["id"] for i in got["images"]] == ids
    byid = api.get("/v1/datasets/mixed/images", params={"id": ["b/alpha.png"]},
                   headers=USER).json()["images"]
    assert byid == [{"index": ORDER["b/alpha.png"], "id": "b/alpha.png", "label": "b",
                     "width": 5, "height": 3}]
    missing = api.get("/v1/datasets/digits/images", params={"id": [ids[0], "no/such.png"]},
                      headers=USER)
    assert missing.status_code == 404 and missing.json()["code"] == "unknown_image"
    assert missing.json()["details"]["missing"] == ["no/such.png"]
    too_many = api.get("/v1/datasets/digits/images", params={"id": ["x"] * 1001},
                       headers=USER)
    assert too_many.status_code == 422 and too_many.json()["code"] == "validation_error"
    assert api.get("/v1/datasets/digits/images?limit=0", headers=USER).status_code == 422
    assert api.get("/v1/datasets/nope/images", headers=USER).json()["code"] == \
        "unknown_dataset"


def test_a_vanished_file_of_a_directory_is_a_404(tmp_path_factory: pytest.TempPathFactory) -> None:
    root = tmp_path_factory.mktemp("roots")
    (root / "set" / "x").mkdir(parents=True)
    (root / "set" / "x" / "1.png").write_bytes(
        encoded(Image.fromarray(np.full((4, 4, 3), 7, np.uint8)), "PNG"))
    settings = Settings(data_dir=tmp_path_factory.mktemp("dirdata"), builtin_model=False,
                        dataset_roots=[root])
    with TestClient(create_app(settings)) as c:
        r = c.post("/v1/datasets", json={"name": "dir", "path": str(root / "set")})
        assert r.status_code == 201, r.text
        assert c.get("/v1/datasets/dir/images/0").status_code == 200
        (root / "set" / "x" / "1.png").write_bytes(b"no longer an image")
        gone = c.get("/v1/datasets/dir/images/0?size=16")
        assert gone.status_code == 404 and gone.json()["code"] == "unknown_image"
        (root / "set" / "x" / "1.png").unlink()
        assert c.get("/v1/datasets/dir/images/0").json()["code"] == "unknown_image"
