"""Settings reach what a process builds from them (Runtime -> RuntimeOptions -> caches)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lantern.settings import Settings
from workers.runtime import Runtime


def test_gradient_cache_quota_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LANTERN_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("LANTERN_BUILTIN_MODEL", "false")
    monkeypatch.setenv("LANTERN_GRADIENT_CACHE_MAX_MB", "3")
    settings = Settings()
    assert settings.gradient_cache_max_mb == 3
    rt = Runtime(settings)
    assert rt.sessions.options.gradient_cache_max_mb == 3
    assert rt.sessions.gradients.max_bytes == 3 * 1024 * 1024
    assert rt.sessions.gradients.cache_dir == tmp_path / "gradients"


def test_gradient_cache_quota_default_and_unlimited(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LANTERN_GRADIENT_CACHE_MAX_MB", raising=False)
    assert Settings().gradient_cache_max_mb == 2048
    monkeypatch.setenv("LANTERN_GRADIENT_CACHE_MAX_MB", "0")
    rt = Runtime(Settings(data_dir=tmp_path, builtin_model=False))
    assert rt.sessions.gradients.max_bytes is None  # 0 = unlimited
    monkeypatch.setenv("LANTERN_GRADIENT_CACHE_MAX_MB", "-1")
    with pytest.raises(ValueError):
        Settings()
