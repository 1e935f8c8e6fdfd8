"""Built-in datasets by name, like built-in models (engine/models/zoo/registry.py): each
module of ``engine/datasets/zoo/`` registers the datasets it builds offline (from data that
ships inside packages); every start registers them all (or ``settings.builtin_datasets``)."""

from __future__ import annotations

import importlib
import pkgutil
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from api_schemas.datasets import DatasetInfo
from engine.datasets.store import DatasetStore
from engine.errors import UnknownDataset


@dataclass(frozen=True)
class BuiltinDataset:
    """``files()`` yields (path, image bytes) — a folder per class labels them —
    deterministically, so every build is the same version."""

    name: str
    description: str
    files: Callable[[], Iterable[tuple[str, bytes]]]

    def register(self, store: DatasetStore, zoo_dir: Path) -> DatasetInfo:
        """Build the images once into ``zoo_dir/datasets`` (shared by data dirs, like the
        built-in models) and register them in ``store`` in place (its record points there:
        no copy of the images per data dir)."""
        zoo = DatasetStore(Path(zoo_dir) / "datasets", store.limits, [])
        try:
            built = zoo.get(self.name)
            if built.description != self.description:
                raise UnknownDataset("stale build")
        except UnknownDataset:
            built = zoo.add_files(self.name, self.files(), builtin=True,
                                  description=self.description)
        return store.adopt(built, zoo)


_BUILTINS: dict[str, BuiltinDataset] = {}
_loaded = False
_lock = threading.RLock()


def register_builtin_dataset(ds: BuiltinDataset) -> BuiltinDataset:
    if ds.name in _BUILTINS:
        raise ValueError(f"built-in dataset {ds.name!r} registered twice")
    _BUILTINS[ds.name] = ds
    return ds


def builtin_datasets() -> list[BuiltinDataset]:
    global _loaded
    if not _loaded:
        with _lock:
            if not _loaded:
                package = importlib.import_module("engine.datasets.zoo")
                for info in pkgutil.iter_modules(package.__path__, "engine.datasets.zoo."):
                    importlib.import_module(info.name)
                _loaded = True
    return sorted(_BUILTINS.values(), key=lambda d: d.name)


def register_all(
    store: DatasetStore, zoo_dir: Path, wanted: list[str] | None = None
) -> list[DatasetInfo]:
    return [d.register(store, zoo_dir) for d in builtin_datasets()
            if wanted is None or d.name in wanted]
