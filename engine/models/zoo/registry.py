"""Built-in models by name: each module of ``engine/models/zoo/`` registers the models it
builds (offline, from data and weights that ship inside packages), so a new example model is
a new module. Their files are built once into a zoo directory and reused."""

from __future__ import annotations

import importlib
import os
import pkgutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from api_schemas.models import ModelInfo
from engine.models.store import ModelStore


@dataclass(frozen=True)
class BuiltinModel:
    """``register(store, zoo_dir)`` builds the model into ``zoo_dir`` when it is not there
    yet (atomically: readers never see a partial file) and registers it as built-in."""

    name: str
    modality: str
    description: str
    register: Callable[[ModelStore, Path], ModelInfo]


_BUILTINS: dict[str, BuiltinModel] = {}
_loaded = False
_lock = threading.RLock()


def register_builtin(model: BuiltinModel) -> BuiltinModel:
    if model.name in _BUILTINS:
        raise ValueError(f"built-in model {model.name!r} registered twice")
    _BUILTINS[model.name] = model
    return model


def builtin_models() -> list[BuiltinModel]:
    """Every built-in model, the image model first, then by name."""
    global _loaded
    if not _loaded:
        with _lock:
            if not _loaded:
                package = importlib.import_module("engine.models.zoo")
                for info in pkgutil.iter_modules(package.__path__, "engine.models.zoo."):
                    importlib.import_module(info.name)
                _loaded = True
    return sorted(_BUILTINS.values(), key=lambda m: (m.modality != "image", m.name))


def atomic_write(path: Path, payload: bytes) -> None:
    """Write a zoo file so that readers never see a partial one (temp file, fsync,
    os.replace; readable by all: mkstemp creates 0600 files)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), 0o644)
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
