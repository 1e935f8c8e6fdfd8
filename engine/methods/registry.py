"""Methods by name. Adding a method is adding its module under ``engine/methods/`` (found
and imported on first use; see :func:`_import_builtin_methods`)."""

from __future__ import annotations

import threading
from typing import Any

from engine.errors import UnknownMethod
from engine.methods.base import MethodSpec

#: name -> modality -> spec: one name (``lime``) may have one module per modality.
_REGISTRY: dict[str, dict[str, MethodSpec[Any]]] = {}


def register(spec: MethodSpec[Any]) -> MethodSpec[Any]:
    by_modality = _REGISTRY.setdefault(spec.name, {})
    for modality in spec.modalities:
        if modality in by_modality:
            raise ValueError(f"method {spec.name!r} registered twice for {modality!r}")
    for modality in spec.modalities:
        by_modality[modality] = spec
    return spec


def get_method(name: str, modality: str | None = None) -> MethodSpec[Any]:
    """The method ``name`` for inputs of ``modality``; without one, the image method when
    there is one (else the first registered). A name known only for other modalities
    answers the spec of one of them: :func:`engine.explain.check_method` then refuses it
    naming the methods that do apply."""
    _load_builtin_methods()
    by_modality = _REGISTRY.get(name)
    if not by_modality:
        known = sorted(_REGISTRY)
        raise UnknownMethod(
            f"Unknown method {name!r}. Use one of: {', '.join(known)} (see GET /v1/methods).",
            details={"method": name, "known": known},
        )
    if modality is not None and modality in by_modality:
        return by_modality[modality]
    return by_modality.get("image") or next(iter(by_modality.values()))


def all_methods() -> list[MethodSpec[Any]]:
    """Every registered spec once, by name (then by first modality)."""
    _load_builtin_methods()
    seen: dict[int, MethodSpec[Any]] = {}
    for name in sorted(_REGISTRY):
        for spec in _REGISTRY[name].values():
            seen.setdefault(id(spec), spec)
    return list(seen.values())


_loaded = False
_load_lock = threading.RLock()  # a method module may ask the registry while loading


def _load_builtin_methods() -> None:
    """Import the method modules once; concurrent first callers wait for all of them (a
    flag set before the imports finished let a request see a partial registry)."""
    global _loaded
    if _loaded:
        return
    with _load_lock:
        if not _loaded:
            _import_builtin_methods()
            _loaded = True


def _import_builtin_methods() -> None:
    """Import every module under ``engine.methods`` (subpackages included): each method
    module registers itself on import, so adding a method is adding its module."""
    import importlib
    import pkgutil

    import engine.methods as package

    for info in pkgutil.walk_packages(package.__path__, prefix=f"{package.__name__}."):
        importlib.import_module(info.name)
