"""What a process needs to serve models and run jobs, built from injected settings."""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING

import redis

from api_schemas.models import ModelInfo
from engine.modalities.image import configure_decoding
from engine.models.runtime import GraphIO, LoadedModel, RuntimeOptions, SessionCache
from engine.models.store import ModelStore
from jobs.store import JobStore, MemoryKV, RedisKV
from lantern.settings import Settings

if TYPE_CHECKING:
    from engine.datasets.store import DatasetStore

log = logging.getLogger("lantern")


class Runtime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.models = ModelStore(
            settings.models_dir,
            settings.max_model_bytes,
            max_tensor_bytes=settings.max_model_tensor_bytes,
        )
        configure_decoding(
            max_concurrent=settings.max_concurrent_decodes, max_bytes=settings.max_decode_bytes
        )
        self.sessions = SessionCache(
            RuntimeOptions(
                intra_op_threads=settings.ort_threads,
                max_batch=settings.max_batch,
                forward_batch=settings.forward_batch,
                vjp_batch=settings.vjp_batch,
                gradient_dir=settings.data_dir / "gradients",
                gradient_cache_max_mb=settings.gradient_cache_max_mb,
                max_pixels=settings.max_pixels,
                providers=tuple(settings.ort_providers),
            ),
            capacity=settings.session_cache_size,
        )
        if settings.redis_url:
            client = redis.Redis.from_url(
                settings.redis_url, socket_connect_timeout=5, socket_timeout=30
            )
            self.jobs = JobStore(RedisKV(client), settings.result_ttl_s)
        else:
            self.jobs = JobStore(
                MemoryKV(settings.embedded_store_max_mb * 1024 * 1024), settings.result_ttl_s
            )

    def ensure_builtin(self) -> None:
        """Build the built-in models into the zoo dir where needed and register them
        (every module of engine/models/zoo/ registers its own; `builtin_models` picks)."""
        if not self.settings.builtin_model:
            return
        from engine.models.zoo.registry import builtin_models

        wanted = self.settings.builtin_models
        for model in builtin_models():
            if wanted is not None and model.name not in wanted:
                continue
            info = model.register(self.models, self.settings.zoo_dir)
            log.info("built-in model %s ready (version %s)", model.name, info.version)
        self.ensure_builtin_datasets()

    @functools.cached_property
    def datasets(self) -> DatasetStore:
        """The dataset store (data_dir/datasets), with the settings' limits and roots."""
        from engine.datasets.store import dataset_store

        return dataset_store(self.settings)

    def ensure_builtin_datasets(self) -> None:
        """Register the built-in datasets (engine/datasets/zoo/; settings.builtin_datasets)."""
        from engine.datasets.builtin import register_all

        for info in register_all(
            self.datasets, self.settings.zoo_dir, self.settings.builtin_datasets
        ):
            log.info("built-in dataset %s ready (version %s)", info.name, info.version)

    def load(self, name: str, version: str | None = None) -> LoadedModel:
        """The loaded model (its ONNX Runtime session is created on the first run, so
        checking a request against it creates none)."""
        info = self.models.get(name)
        v = version or info.version
        if v != info.version:
            info = self.models.info(name, v)  # the manifest the job was accepted with
        return self.sessions.get(name, v, self.models.path(name, v), info.manifest, _io(info, v))


def _io(info: ModelInfo, version: str) -> GraphIO | None:
    """The graph's input and output from the model's record, when the record describes
    this version (an older version's come from its session)."""
    if version != info.version or not info.inputs or not info.outputs:
        return None
    shape0 = info.inputs[0].shape[0] if info.inputs[0].shape else None
    fixed = shape0 if isinstance(shape0, int) and shape0 > 0 else None
    return GraphIO(info.inputs[0].name, info.output or info.outputs[0].name, fixed)
