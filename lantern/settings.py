"""Settings from environment variables prefixed ``LANTERN_``, injected where needed."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LANTERN_", extra="ignore")

    redis_url: str | None = Field(
        default=None, description="Redis for broker, jobs and results; unset = embedded mode."
    )
    data_dir: Path = Field(default=Path("./data"), description="Model store and zoo builds.")
    result_ttl_s: int = Field(default=24 * 3600, ge=60, description="TTL of inputs and results.")
    max_upload_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)
    max_pixels: int = Field(default=40_000_000, ge=64)
    max_model_bytes: int = Field(default=512 * 1024 * 1024, ge=1024)
    ort_threads: int = Field(default=0, ge=0, description="ONNX Runtime intra-op threads; 0 = all.")
    max_batch: int = Field(default=16, ge=1, le=1024)
    session_cache_size: int = Field(default=4, ge=1)
    embedded_workers: int = Field(default=1, ge=1, le=64)
    builtin_model: bool = Field(default=True, description="Build and register EfficientNet-Lite0.")
    queue: str = Field(default="lantern")

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def zoo_dir(self) -> Path:
        return self.data_dir / "zoo"
