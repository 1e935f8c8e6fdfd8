"""The client's typed helpers for nmf_groups and semantic_dictionary (numpy arrays and PIL
images), sync and async, against a real embedded server with the pointwise CNN."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import numpy as np
import pytest
from PIL import Image

from lantern_client import AsyncLanternClient, LanternClient, NmfGroups, SemanticDictionary
from lantern_testing.images import png_bytes
from lantern_testing.inside import pointwise_cnn, scene
from lantern_testing.models import manifest
from lantern_testing.processes import embedded_api

SIZE = 8


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    kernel, head, _ = scene(size=SIZE, channels=6)
    with embedded_api(tmp_path_factory.mktemp("client-inside"),
                      LANTERN_BUILTIN_MODEL="false") as base:
        with LanternClient(base) as c:
            c.upload_model(pointwise_cnn(kernel, head, SIZE).SerializeToString(),
                           manifest("pw", SIZE, ["a", "b", "c"]))
        yield base


@pytest.fixture(scope="module")
def image() -> bytes:
    _, _, img = scene(size=SIZE, channels=6)
    return png_bytes(np.clip(img, 0, 255).astype(np.uint8))


def test_groups_as_numpy_and_images(server: str, image: bytes) -> None:
    with LanternClient(server) as c:
        res = c.explain(image, "pw", "nmf_groups", target=1, wait=60,
                        params={"layer": "act", "groups": 3, "size": SIZE, "steps": 3})
        g = c.groups(res.job)
    assert isinstance(g, NmfGroups) and g.layer == "act"
    assert g.maps.shape == (3, SIZE, SIZE) and g.maps.dtype == np.float32 and (g.maps >= 0).all()
    assert len(g.colours) == 3 and g.attribution.shape == (3,)
    assert g.attribution.sum() == pytest.approx(res.extras["attribution_total"], rel=1e-5)
    assert isinstance(g.map_image, Image.Image) and g.map_image.mode == "RGB"
    assert [t.size for t in g.thumbnails] == [(SIZE, SIZE)] * 3


def test_dictionary_as_numpy_and_images(server: str, image: bytes) -> None:
    async def go() -> SemanticDictionary:
        async with AsyncLanternClient(server) as ac:
            res = await ac.explain(image, "pw", "semantic_dictionary", target=0, wait=60,
                                   params={"layer": "act", "top_n": 2, "size": SIZE,
                                           "steps": 3})
            return await ac.dictionary(res.job)

    d = asyncio.run(go())
    assert d.layer == "act" and d.channels.shape == (SIZE, SIZE, 2)
    assert d.channels.dtype == np.int32 and d.values.shape == (SIZE, SIZE, 2)
    assert (d.values[..., 0] >= d.values[..., 1]).all()
    assert set(np.unique(d.channels)) == set(d.thumbnails)
    assert all(t.size == (SIZE, SIZE) for t in d.thumbnails.values())
    assert d.sheet.size[0] > SIZE * 32
