"""`lantern datasets add|list|show|rm` and the client's dataset calls against a real
`lantern serve` (embedded) with the built-in digits-cnn and digits."""

from __future__ import annotations

import io
import json
import os
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lantern_client import LanternAPIError, LanternClient
from lantern_testing.processes import LANTERN, embedded_api

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with embedded_api(tmp_path_factory.mktemp("ds"), LANTERN_BUILTIN_MODELS='["digits-cnn"]'
                      ) as base:
        yield base


def lantern(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LANTERN_URL", "LANTERN_API_KEY")}
    env["LANTERN_URL"] = url
    return subprocess.run([*LANTERN, *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=180)


def a_zip(path: Path) -> Path:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(3):
            img = io.BytesIO()
            Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(img, format="PNG")
            zf.writestr(f"{i % 2}/{i}.png", img.getvalue())
        zf.writestr("1/readme.txt", "not an image")
    path.write_bytes(buf.getvalue())
    return path


def test_cli_add_list_show_rm(server: str, tmp_path: Path) -> None:
    z = a_zip(tmp_path / "d.zip")
    r = lantern("datasets", "add", str(z), "--name", "mine", url=server)
    assert r.returncode == 0, r.stderr
    assert "3 images, 2 classes" in r.stdout and "left out 1/readme.txt" in r.stdout
    r = lantern("datasets", "list", url=server)
    assert r.returncode == 0 and "digits" in r.stdout and "mine" in r.stdout
    assert "8x8" in r.stdout
    r = lantern("datasets", "show", "mine", url=server)
    assert json.loads(r.stdout)["class_counts"] == {"0": 2, "1": 1}
    r = lantern("datasets", "add", str(z), "--name", "strict", "--strict", url=server)
    assert r.returncode == 1 and "invalid_images (422)" in r.stderr
    assert lantern("datasets", "rm", "mine", url=server).returncode == 0
    r = lantern("datasets", "show", "mine", url=server)
    assert r.returncode == 1 and "unknown_dataset" in r.stderr


def test_client_analyse_dataset(server: str, tmp_path: Path) -> None:
    with LanternClient(server) as client:
        assert client.get_dataset("digits").count == 1797
        info = client.upload_dataset(a_zip(tmp_path / "c.zip"), "three")
        assert [d.name for d in client.list_datasets()] == ["digits", "three"]
        res = client.analyse_dataset("three", "digits-cnn", "max_activating",
                                     {"kind": "class", "target": 1}, {"k": 2})
        assert res.model_calls == 3 and res.extras["dataset_version"] == info.version
        preds = client.analyse_dataset("three", "digits-cnn", "dataset_predictions")
        assert preds.model_calls == 0 and preds.extras["scored"] == 3
        client.delete_dataset("three")
        with pytest.raises(LanternAPIError) as e:
            client.get_dataset("three")
        assert e.value.code == "unknown_dataset"
