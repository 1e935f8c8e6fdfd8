"""Modalities by name: each module of ``engine/modalities/`` registers its own on import;
every module of the package is imported on first use."""

from __future__ import annotations

import importlib
import pkgutil
import threading
from typing import Any

from engine.errors import UnsupportedModality
from engine.modalities.base import Codec, Modality

_MODALITIES: dict[str, Modality] = {}
_loaded = False
_lock = threading.RLock()


def register_modality(spec: Modality) -> Modality:
    if spec.name in _MODALITIES:
        raise ValueError(f"modality {spec.name!r} registered twice")
    _MODALITIES[spec.name] = spec
    return spec


def _load() -> None:
    global _loaded
    if _loaded:
        return
    with _lock:
        if not _loaded:
            package = importlib.import_module("engine.modalities")
            for info in pkgutil.iter_modules(package.__path__, prefix="engine.modalities."):
                importlib.import_module(info.name)
            _loaded = True


def modality(name: str) -> Modality:
    """The registered modality ``name`` (a typed 422 for one nobody registered)."""
    _load()
    try:
        return _MODALITIES[name]
    except KeyError:
        known = sorted(_MODALITIES)
        raise UnsupportedModality(
            f"No modality {name!r}: use one of {', '.join(known)}.",
            details={"modality": name, "known": known},
        ) from None


def codec_for(manifest: Any, max_pixels: int = 40_000_000) -> Codec[Any]:
    """The codec of a model's modality, built from its manifest."""
    return modality(str(manifest.modality)).codec(manifest, max_pixels)
