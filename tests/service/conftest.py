from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from lantern.settings import Settings
from lantern_testing.api import register_tiny
from service.app import create_app


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The app in embedded mode, with the real built-in model and a tiny one."""
    data: Path = tmp_path_factory.mktemp("data")
    settings = Settings(data_dir=data, max_upload_bytes=2_000_000, max_pixels=5_000_000)
    with TestClient(create_app(settings)) as c:
        register_tiny(c)
        yield c
