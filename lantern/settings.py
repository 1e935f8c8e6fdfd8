"""Settings from environment variables prefixed ``LANTERN_``, injected where needed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class ApiKey(BaseModel):
    """An API key as configured: only the SHA-256 of the key is stored, never the key."""

    name: str = Field(min_length=1, max_length=64)
    role: Literal["admin", "user"]
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


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
    max_decode_bytes: int = Field(
        default=512 * 1024 * 1024,
        ge=1024 * 1024,
        description="Memory one image decode may take (decoded frame, its conversion to RGB), "
        "estimated from the header before decoding; more is refused with 413 image_too_large.",
    )
    max_concurrent_decodes: int = Field(
        default=2, ge=1, le=256, description="Image decodes running at once per process."
    )
    max_model_tensor_bytes: int = Field(
        default=256 * 1024 * 1024,
        ge=1024 * 1024,
        description="Largest tensor an uploaded model's graph may create (constants folded "
        "at load, tensors of known size at the manifest's input size); more is refused with "
        "422 invalid_model naming the node.",
    )
    ort_threads: int = Field(default=0, ge=0, description="ONNX Runtime intra-op threads; 0 = all.")
    max_batch: int = Field(default=16, ge=1, le=1024)
    forward_batch: int = Field(
        default=0,
        ge=0,
        le=1024,
        description="Images per forward call of perturbation methods (at most max_batch); "
        "0 = measure the fastest batch once per loaded model.",
    )
    vjp_batch: int = Field(
        default=0,
        ge=0,
        le=1024,
        description="Images per VJP call of integrated gradients and SmoothGrad (at most "
        "max_batch); 0 = measure the fastest batch once per loaded model.",
    )
    session_cache_size: int = Field(default=4, ge=1)
    gradient_cache_max_mb: int = Field(
        default=2048,
        ge=0,
        description="Quota of the on-disk gradient-model cache (data_dir/gradients) in MiB, "
        "least recently used models deleted first; 0 = unlimited.",
    )
    embedded_workers: int = Field(default=1, ge=1, le=64)
    builtin_model: bool = Field(
        default=True, description="Build and register the built-in models (see builtin_models)."
    )
    builtin_models: list[str] | None = Field(
        default=None,
        description="Which built-in models to register, by name (JSON list); unset = all.",
    )
    zoo: Path | None = Field(
        default=None,
        description="Where built-in models are built once and kept (default data_dir/zoo); "
        "several data dirs may share one.",
    )
    queue: str = Field(default="lantern")
    max_job_cost: int = Field(
        default=200_000, ge=1, description="Most forward passes one request may ask for."
    )
    job_time_limit_s: float = Field(default=900.0, gt=0, description="Soft limit of a job.")
    sync_time_limit_s: float = Field(default=60.0, gt=0, description="Soft limit, sync methods.")
    sync_batch_window_ms: float = Field(
        default=2.0,
        ge=0.0,
        le=1000.0,
        description="Sync answers (?wait) of one model, method and params arriving within "
        "this window while the sync lane is busy share one batch, up to the model's measured "
        "best batch; a request arriving at an idle lane never waits. 0 = off.",
    )
    log_format: str = Field(default="json", pattern="^(json|text)$")
    split_min_samples: int = Field(
        default=512, ge=1, description="Perturbation jobs with this many samples are split."
    )
    split_chunk_samples: int = Field(default=128, ge=1, description="Samples per chunk task.")
    visibility_timeout_s: int = Field(
        default=3600,
        ge=1,
        description="Celery's redelivery of a task whose worker vanished: the last resort "
        "(leases re-queue such work within lease_s).",
    )
    lease_s: float = Field(
        default=30.0,
        gt=0.5,
        le=3600,
        description="A running job's (or chunk's) lease, renewed by its worker's heartbeat; "
        "expired, the work is re-queued elsewhere.",
    )
    reconcile_interval_s: float = Field(
        default=5.0,
        gt=0.05,
        le=600,
        description="How often the API repairs jobs whose state and queue disagree.",
    )
    max_queued_cost_per_key: int = Field(
        default=2_000_000,
        ge=1,
        description="Forward passes one key may have queued and running at once.",
    )
    embedded_store_max_mb: int = Field(
        default=512, ge=1, description="Embedded mode: memory for jobs and results (LRU)."
    )
    api_keys: list[ApiKey] = Field(
        default_factory=list,
        description='JSON list of {"name", "role": "admin"|"user", "sha256": hex digest}. '
        "Empty = no authentication (everyone is admin).",
    )
    auth_required: bool = Field(default=False, description="Refuse to start without api_keys.")
    rate_limit_per_minute: int = Field(default=0, ge=0, description="Requests per key; 0 = off.")

    # datasets (engine/datasets) -------------------------------------------------------
    dataset_roots: list[Path] = Field(
        default_factory=list,
        description="Directories under which an admin may register a dataset in place "
        "(JSON list); empty = registering directories is off.",
    )
    max_dataset_upload_bytes: int = Field(default=512 * 1024 * 1024, ge=1024)
    max_dataset_uncompressed_bytes: int = Field(
        default=2 * 1024 * 1024 * 1024, ge=1024, description="Sum of a zip's entries, unpacked."
    )
    max_dataset_ratio: float = Field(
        default=200.0, ge=1.0, description="Largest compression ratio of a zip or one entry."
    )
    max_dataset_entries: int = Field(default=200_000, ge=1, description="Entries in a zip.")
    max_dataset_images: int = Field(default=100_000, ge=1, description="Images in a dataset.")
    max_dataset_pixels: int = Field(
        default=4_000_000_000, ge=64, description="Pixels of all a dataset's images together."
    )
    dataset_chunk_images: int = Field(
        default=256, ge=1, le=65536,
        description="Images per chunk of a dataset analysis (one chunk in memory per worker).",
    )
    activation_cache_bytes: int = Field(
        default=0, ge=0,
        description="Most bytes the activation cache (data_dir/activations: activations and "
        "decoded pixels) keeps: after a write, least recently used (model version, dataset "
        "version) entries are deleted; 0 = no limit.",
    )
    dataset_pixel_cache_ratio: float = Field(
        default=4.0, ge=0.0,
        description="Keep a dataset's decoded pixels at a model's input size (uint8, read "
        "back memory-mapped by later extractions) when they take at most this many times "
        "the images' mean file size; 0 = never.",
    )
    dataset_decode_threads: int = Field(
        default=1, ge=1, le=64,
        description="Threads decoding a dataset's images while the model runs (per worker).",
    )
    dataset_scratch_stale_s: float = Field(
        default=3600.0, gt=0,
        description="A dataset upload's temporary files left by another host's process, or a "
        "live one's, are removed when the store opens once unchanged this long (a dead "
        "process's of this host at once).",
    )
    builtin_datasets: list[str] | None = Field(
        default=None, description="Which built-in datasets to register (JSON list); unset = all."
    )

    # completion callbacks (jobs/callbacks.py, docs/CALLBACKS.md) ------------------------
    callback_hosts: list[str] = Field(
        default_factory=list,
        description='Hosts a request\'s callback_url may name (JSON list): "hooks.example.com", '
        '"*.example.com", "host:8443", an address "203.0.113.7" or a range "10.0.0.0/8" '
        "(the only way to allow private, loopback or link-local addresses); empty = "
        "callbacks are refused (422 callback_not_allowed).",
    )
    callback_secret: str | None = Field(
        default=None,
        min_length=16,
        description="The server's callback secret: signs callbacks when there are no API keys, "
        "and derives each key's own secret (HMAC-SHA256 of the key's name) when there are. "
        "Required when callback_hosts is set.",
    )
    callback_retry_s: float = Field(
        default=3600.0, gt=0, description="How long a callback is retried before it is given up."
    )
    callback_backoff_s: float = Field(
        default=1.0, gt=0, description="First retry delay of a failed callback (doubles each try)."
    )
    callback_max_backoff_s: float = Field(
        default=300.0, gt=0, description="Longest delay between two tries of a callback."
    )
    callback_timeout_s: float = Field(
        default=10.0, gt=0, le=300, description="Time limit of one callback POST."
    )
    callback_poll_s: float = Field(
        default=0.5, gt=0.01, le=60, description="How often the deliverer looks for due callbacks."
    )

    # ONNX Runtime execution providers (engine/models/runtime.py) ---------------------------
    ort_providers: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["CPUExecutionProvider"],
        description="ONNX Runtime execution providers in order of preference: a JSON list or "
        'comma-separated, full or short names ("CUDA,CPU" = CUDAExecutionProvider then '
        "CPUExecutionProvider). One this installation cannot use is refused at start.",
    )

    @field_validator("ort_providers", mode="before")
    @classmethod
    def _split_providers(cls, v: object) -> object:
        if isinstance(v, str):
            text = v.strip()
            if text.startswith("["):
                return json.loads(text)
            return [p.strip() for p in text.split(",") if p.strip()]
        return v

    @field_validator("ort_providers")
    @classmethod
    def _check_providers(cls, v: list[str]) -> list[str]:
        from engine.models.runtime import resolve_providers

        return list(resolve_providers(v))

    @model_validator(mode="after")
    def _check_callbacks(self) -> Settings:
        if self.callback_hosts:
            from jobs.callbacks import parse_allowlist

            parse_allowlist(self.callback_hosts)  # a malformed entry is refused at start
            if not self.callback_secret:
                raise ValueError(
                    "LANTERN_CALLBACK_HOSTS is set but LANTERN_CALLBACK_SECRET is not: set a "
                    "secret of at least 16 characters to sign callbacks with."
                )
        return self

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def zoo_dir(self) -> Path:
        return self.zoo if self.zoo is not None else self.data_dir / "zoo"
