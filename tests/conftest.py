from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from lantern_testing.processes import redis_server


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private redis-server for the whole session (never the shared one on 6379)."""
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture(scope="session", autouse=True)
def zoo_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Where the built-in models are built once for the session: every app, worker and CLI
    the tests start shares it (LANTERN_ZOO), so each model is built once, not per test."""
    from engine.models.store import ModelStore
    from engine.models.zoo.registry import builtin_models

    d = tmp_path_factory.mktemp("zoo")
    # every built-in model built (trained, where it is) once, before any app starts
    store = ModelStore(tmp_path_factory.mktemp("zoo-store"))
    for model in builtin_models():
        model.register(store, d)
    before = os.environ.get("LANTERN_ZOO")
    os.environ["LANTERN_ZOO"] = str(d)
    yield d
    if before is None:
        os.environ.pop("LANTERN_ZOO", None)
    else:
        os.environ["LANTERN_ZOO"] = before
