"""Methods by name. Adding a method touches its module and the import list below."""

from __future__ import annotations

import threading
from typing import Any

from engine.errors import UnknownMethod
from engine.methods.base import MethodSpec

_REGISTRY: dict[str, MethodSpec[Any]] = {}


def register(spec: MethodSpec[Any]) -> MethodSpec[Any]:
    if spec.name in _REGISTRY:
        raise ValueError(f"method {spec.name!r} registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def get_method(name: str) -> MethodSpec[Any]:
    _load_builtin_methods()
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise UnknownMethod(
            f"Unknown method {name!r}. Use one of: {known} (see GET /v1/methods).",
            details={"method": name, "known": sorted(_REGISTRY)},
        ) from None


def all_methods() -> list[MethodSpec[Any]]:
    _load_builtin_methods()
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


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
    # Each import registers its method.
    import engine.methods.activation_maps
    import engine.methods.cam
    import engine.methods.deepdream
    import engine.methods.feature_visualisation
    import engine.methods.grad_cam
    import engine.methods.grad_cam_plus_plus
    import engine.methods.gradient_x_input
    import engine.methods.integrated_gradients
    import engine.methods.kernel_shap
    import engine.methods.lime
    import engine.methods.occlusion
    import engine.methods.rise
    import engine.methods.saliency
    import engine.methods.smoothgrad  # noqa: F401
