"""The async client's dataset calls against a real embedded server (`lantern serve`): list,
get, upload, register a directory, analyse, delete — the same answers as the sync client's,
and the same errors."""

from __future__ import annotations

import asyncio
import io
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from lantern_client import AsyncLanternClient, LanternAPIError, LanternClient
from lantern_testing.processes import embedded_api


def png(value: int, spot: tuple[int, int] | None = None) -> bytes:
    img = np.full((8, 8, 3), value, np.uint8)
    if spot is not None:
        img[spot[0] : spot[0] + 3, spot[1] : spot[1] + 3] = 255
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def images() -> dict[str, bytes]:
    return {f"{'0' if i % 3 == 0 else '7'}/{i:03d}.png":
            png(10 + 5 * i, (i % 5, (2 * i) % 5) if i % 3 == 0 else None) for i in range(24)}


def zipped(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("aio-datasets")
    roots = root / "roots"
    (roots / "mine").mkdir(parents=True)
    for name, data in images().items():
        (roots / "mine" / name).parent.mkdir(parents=True, exist_ok=True)
        (roots / "mine" / name).write_bytes(data)
    with embedded_api(root, LANTERN_BUILTIN_MODELS='["digits-cnn"]',
                      LANTERN_DATASET_ROOTS=f'["{roots}"]') as base:
        yield {"base": base, "roots": roots}


def test_list_get_upload_register_delete(server: dict[str, Any]) -> None:
    async def go() -> None:
        async with AsyncLanternClient(server["base"]) as lantern:
            listed = await lantern.list_datasets()
            assert "digits" in [d.name for d in listed]
            digits = await lantern.get_dataset("digits")
            assert digits.count == 1797 and digits.builtin
            up = await lantern.upload_dataset(zipped(images()), "aio-up",
                                              description="uploaded by the async client")
            assert up.count == 24 and up.classes == ["0", "7"]
            assert up.class_counts == {"0": 8, "7": 16}
            assert up.description == "uploaded by the async client"
            got = await lantern.get_dataset("aio-up")
            assert got.version == up.version
            reg = await lantern.register_dataset_directory(
                "aio-dir", str(server["roots"] / "mine"))
            assert reg.source == "directory" and reg.version == up.version  # same content
            names = {d.name for d in await lantern.list_datasets()}
            assert {"aio-up", "aio-dir", "digits"} <= names
            await lantern.delete_dataset("aio-dir")
            with pytest.raises(LanternAPIError) as e:
                await lantern.get_dataset("aio-dir")
            assert e.value.status == 404 and e.value.code == "unknown_dataset"
            with pytest.raises(LanternAPIError) as e:
                await lantern.register_dataset_directory("aio-out", "/etc")
            assert e.value.status == 403 and e.value.code == "dataset_path_forbidden"
            with pytest.raises(LanternAPIError) as e:
                await lantern.delete_dataset("digits")
            assert e.value.code == "dataset_protected"
            with pytest.raises(LanternAPIError) as e:
                await lantern.upload_dataset(b"not a zip", "aio-bad")
            assert e.value.code == "invalid_archive"
        # the sync client sees the same
        with LanternClient(server["base"]) as sync:
            assert sync.get_dataset("aio-up") == got
            assert "aio-dir" not in {d.name for d in sync.list_datasets()}

    asyncio.run(go())


def test_analyse_a_dataset(server: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "up.zip"
    path.write_bytes(zipped(images()))
    objective = {"kind": "channel", "layer": "conv3", "channel": 3}
    seen: list[tuple[float, str]] = []

    async def go() -> tuple[Any, Any, Any]:
        async with AsyncLanternClient(server["base"]) as lantern:
            await lantern.upload_dataset(path, "aio-an")  # a path, not bytes
            top = await lantern.analyse_dataset(
                "aio-an", "digits-cnn", "max_activating", objective, {"k": 5},
                progress=lambda v, s: seen.append((v, s)))
            ranking = await lantern.artifact(top.job, "ranking")
            low = await lantern.analyse_dataset("aio-an", "digits-cnn", "min_activating",
                                                objective, {"k": 5})
            preds = await lantern.analyse_dataset("aio-an", "digits-cnn",
                                                  "dataset_predictions")
            with pytest.raises(LanternAPIError) as e:
                await lantern.analyse_dataset("no-such", "digits-cnn", "max_activating",
                                              objective)
            assert e.value.status == 404 and e.value.code == "unknown_dataset"
            return top, ranking, (low, preds)

    top, ranking, (low, preds) = asyncio.run(go())
    assert top.method == "max_activating" and top.model_calls == 24
    assert low.model_calls == 0  # the activations computed by the first analysis
    assert preds.method == "dataset_predictions" and preds.model_calls == 0
    assert 0.0 <= preds.extras["accuracy"] <= 1.0
    assert seen and seen[-1] == (1.0, "succeeded")
    with LanternClient(server["base"]) as sync:
        again = sync.analyse_dataset("aio-an", "digits-cnn", "max_activating", objective,
                                     {"k": 5})
        assert again.job == top.job  # the same request, the same job
        assert sync.artifact(again.job, "ranking") == ranking
