"""Tiny models loaded as the engine loads them, with a gradient cache."""

from __future__ import annotations

from pathlib import Path

import onnx

from api_schemas.models import ModelManifest
from engine.gradients import GradientCache
from engine.models.runtime import LoadedModel, RuntimeOptions
from lantern_testing.models import manifest


def loaded(
    directory: Path,
    model: onnx.ModelProto,
    size: int,
    labels: list[str],
    *,
    layout: str = "NCHW",
    **manifest_overrides: object,
) -> LoadedModel:
    """Identity preprocessing by default (the model sees pixel values), gradients enabled."""
    path = directory / "model.onnx"
    onnx.save(model, path)
    m = ModelManifest.model_validate(
        {**manifest("tiny", size, labels, layout), **manifest_overrides}
    )
    cache = GradientCache(directory / "gradients")
    return LoadedModel("tiny", path.stem + str(abs(hash(path))), path, m, RuntimeOptions(), cache)
