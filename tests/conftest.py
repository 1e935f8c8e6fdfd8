from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lantern_testing.processes import redis_server


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private redis-server for the whole session (never the shared one on 6379)."""
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture(scope="session")
def zoo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the built-in model is built once for the session."""
    from engine.models.zoo import ensure_builtin

    d = tmp_path_factory.mktemp("zoo")
    ensure_builtin(d)
    return d
