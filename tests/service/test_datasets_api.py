"""/v1/datasets: upload, list, show, delete; refusals as 4xx with stable codes, and nothing
registered after one; admin only; a directory under a configured root."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from lantern.settings import ApiKey, Settings
from service.app import create_app
from service.auth import hash_key


def png(value: int = 0, w: int = 4, h: int = 4) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((h, w, 3), value, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def zipped(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for k, v in files.items():
            info = zipfile.ZipInfo(k)  # any name, even "../x" (writestr(str) would clean it)
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, v)
    return buf.getvalue()


@pytest.fixture
def api(tmp_path: Path) -> TestClient:
    root = tmp_path / "shared"
    (root / "set" / "x").mkdir(parents=True)
    (root / "set" / "x" / "1.png").write_bytes(png(3))
    settings = Settings(
        data_dir=tmp_path / "data", builtin_model=False, dataset_roots=[root],
        max_dataset_entries=50,
        api_keys=[ApiKey(name="root", role="admin", sha256=hash_key("adm")),
                  ApiKey(name="u", role="user", sha256=hash_key("usr"))],
    )
    with TestClient(create_app(settings)) as c:
        c.headers["Authorization"] = "Bearer adm"
        yield c


def upload(c: TestClient, name: str, data: bytes, **fields: str) -> object:
    return c.post("/v1/datasets", files={"file": ("d.zip", data, "application/zip")},
                  data={"name": name, **fields})


def test_upload_list_show_delete(api: TestClient) -> None:
    files = {"a/1.png": png(1), "a/2.png": png(2), "b/3.png": png(3, 6, 2), "b/x.txt": b"no"}
    r = upload(api, "small", zipped(files))
    assert r.status_code == 201, r.text
    info = r.json()
    assert info["count"] == 3 and info["classes"] == ["a", "b"]
    assert info["rejected"] == [{"path": "b/x.txt", "code": "not_an_image",
                                 "reason": info["rejected"][0]["reason"]}]
    assert [d["name"] for d in api.get("/v1/datasets").json()["datasets"]] == ["small"]
    assert api.get("/v1/datasets/small").json()["version"] == info["version"]
    user = {"Authorization": "Bearer usr"}
    assert api.get("/v1/datasets/small", headers=user).status_code == 200
    assert upload(api, "u", zipped(files)).status_code == 201
    r = api.post("/v1/datasets", headers=user, files={"file": ("d.zip", zipped(files))},
                 data={"name": "nope"})
    assert r.status_code == 403
    assert api.delete("/v1/datasets/small", headers=user).status_code == 403
    assert api.delete("/v1/datasets/small").status_code == 204
    r = api.get("/v1/datasets/small")
    assert r.status_code == 404 and r.json()["code"] == "unknown_dataset"


def _bomb() -> bytes:
    return zipped({"a/1.png": png(), "a/z.png": b"\0" * (4 * 1024 * 1024)})


def _traversal() -> bytes:
    return zipped({"a/1.png": png(), "../../etc/x.png": png()})


def _symlink() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("a/1.png", png())
        info = zipfile.ZipInfo("a/l.png")
        info.external_attr = 0o120777 << 16
        zf.writestr(info, "/etc/passwd")
    return buf.getvalue()


@pytest.mark.parametrize(
    ("data", "fields", "status", "code"),
    [
        (_bomb(), {}, 413, "archive_bomb"),
        (zipped({f"a/{i}.png": png() for i in range(60)}), {}, 413, "archive_bomb"),
        (_traversal(), {}, 422, "unsafe_path"),
        (_symlink(), {}, 422, "unsafe_path"),
        (zipped({"a/1.png": png(), "a/t.txt": b"x"}), {"strict": "true"}, 422, "invalid_images"),
        (zipped({"t.txt": b"x"}), {}, 422, "invalid_images"),
        (b"not a zip", {}, 422, "invalid_archive"),
        (zipped({"a/1.png": png()}), {"index": "missing.csv"}, 422, "invalid_archive"),
        (zipped({"a/1.png": png()}), {"strict": "maybe"}, 422, "invalid_input"),
    ],
)
def test_refused_with_codes_and_nothing_registered(
    api: TestClient, data: bytes, fields: dict[str, str], status: int, code: str
) -> None:
    r = upload(api, "bad", data, **fields)
    assert r.status_code == status, r.text
    body = r.json()
    assert body["code"] == code and body["message"].endswith(".")
    assert api.get("/v1/datasets").json()["datasets"] == []
    assert api.get("/v1/datasets/bad").status_code == 404


def test_bad_names_and_bodies(api: TestClient) -> None:
    assert upload(api, "../x", zipped({"a/1.png": png()})).json()["code"] == "invalid_input"
    r = api.post("/v1/datasets", json={"name": "x"})
    assert r.status_code == 422 and r.json()["code"] == "invalid_input"
    assert api.get("/v1/datasets/..%2Fetc").status_code in (404, 422)


def test_directory_registration(api: TestClient, tmp_path: Path) -> None:
    r = api.post("/v1/datasets", json={"name": "dir", "path": str(tmp_path / "shared" / "set")})
    assert r.status_code == 201, r.text
    assert r.json()["source"] == "directory" and r.json()["classes"] == ["x"]
    r = api.post("/v1/datasets", json={"name": "dir2", "path": str(tmp_path)})
    assert r.status_code == 403 and r.json()["code"] == "dataset_path_forbidden"


def test_upload_limit_is_the_dataset_limit(tmp_path: Path) -> None:
    """Zips above the API's image limit are taken up to max_dataset_upload_bytes; above
    it, 413 payload_too_large."""
    settings = Settings(data_dir=tmp_path, builtin_model=False, max_upload_bytes=1024 * 8,
                        max_dataset_upload_bytes=200 * 1024)
    rng = np.random.default_rng(0)
    files = {f"a/{i}.png": png_noise(rng) for i in range(4)}
    data = zipped(files)
    assert 30 * 1024 < len(data) < 200 * 1024
    big = zipped({f"a/{i}.png": png_noise(rng) for i in range(30)})
    assert len(big) > 200 * 1024
    with TestClient(create_app(settings)) as c:
        assert upload(c, "ok", data).status_code == 201
        r = upload(c, "big", big)
        assert r.status_code == 413 and r.json()["code"] == "payload_too_large"


def png_noise(rng: np.random.Generator) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()
