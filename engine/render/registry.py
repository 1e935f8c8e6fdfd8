"""Renderers by artifact type and format.

``render(artifact, fmt, ctx)`` draws any artifact: ``json`` and ``npy`` come from the
artifact itself; every other format from the renderer registered for ``(type, fmt)``.
Adding an artifact type adds its renderers here with :func:`renderer`; the service asks
:func:`formats_of` which links to offer and never looks at a method's names.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import orjson
from PIL import Image

from engine.artifacts import Artifact
from engine.errors import InvalidFormat

Format = Literal["json", "npy", "png", "overlay", "svg", "html"]

MEDIA_TYPES: dict[str, str] = {
    "json": "application/json",
    "npy": "application/octet-stream",
    "png": "image/png",
    "overlay": "image/png",
    "svg": "image/svg+xml",
    "html": "text/html; charset=utf-8",
}


@dataclass
class RenderContext:
    """What a renderer may need beyond the artifact: the caller's input image (loaded only
    when a renderer asks, e.g. for an overlay) and the display options."""

    input_image: Callable[[], Image.Image] | None = None
    colormap: str = "jet"
    alpha: float = 0.5
    options: dict[str, Any] = field(default_factory=dict)

    def image(self) -> Image.Image:
        if self.input_image is None:
            raise InvalidFormat("This rendering needs the input image, which this job has not.")
        return self.input_image()


def dumps(obj: Any) -> bytes:
    """JSON with numpy arrays written natively (float32 at float32 precision; NaN as null)."""
    return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)


RenderFn = Callable[[Any, RenderContext], bytes]
#: Which artifacts of its type a renderer draws, by their axes (None: all of them).
AxesRule = Callable[[tuple[str, ...]], bool]

_RENDERERS: dict[tuple[str, str], RenderFn] = {}
_AXES: dict[tuple[str, str], AxesRule] = {}


def renderer(
    artifact_type: str, fmt: str, *, axes: AxesRule | None = None
) -> Callable[[RenderFn], RenderFn]:
    """Decorator: register ``fn(artifact, ctx) -> bytes`` for ``(artifact_type, fmt)``;
    ``axes`` limits it to the artifacts whose axes it accepts (an overlay needs image axes,
    highlighted text word axes), so links are offered only where a rendering exists."""

    def deco(fn: RenderFn) -> RenderFn:
        key = (artifact_type, fmt)
        if key in _RENDERERS:
            raise ValueError(f"renderer {key} registered twice")
        _RENDERERS[key] = fn
        if axes is not None:
            _AXES[key] = axes
        return fn

    return deco


def image_axes(axes: tuple[str, ...]) -> bool:
    """A map over an image's pixels (what an overlay draws on)."""
    return axes == ("y", "x")


_loaded = False


def _load() -> None:
    """Import every module of this package once: each registers its renderers on import
    (adding a renderer is adding its module)."""
    global _loaded
    if _loaded:
        return
    import importlib
    import pkgutil

    import engine.render as package

    for info in pkgutil.iter_modules(package.__path__, prefix=f"{package.__name__}."):
        importlib.import_module(info.name)
    _loaded = True


def formats_of(artifact_type: str, axes: tuple[str, ...] | list[str] | None = None) -> list[str]:
    """The formats an artifact of this type (and these axes, when given) renders to: json,
    npy, then its renderers'."""
    _load()
    shape = tuple(axes) if axes is not None else None
    return [
        "json",
        "npy",
        *[
            f
            for (t, f) in _RENDERERS
            if t == artifact_type and (shape is None or (t, f) not in _AXES or _AXES[(t, f)](shape))
        ],
    ]


def formats_for(artifact: Artifact) -> list[str]:
    """The formats this artifact renders to."""
    return formats_of(artifact.type, artifact.axes)


def render(artifact: Artifact, fmt: str, ctx: RenderContext | None = None) -> bytes:
    """The artifact in format ``fmt``, or InvalidFormat naming the formats it has."""
    _load()
    ctx = ctx or RenderContext()
    if fmt == "json":
        return dumps(artifact.to_json())
    if fmt == "npy":
        buf = io.BytesIO()
        np.save(buf, artifact.primary_array(), allow_pickle=False)
        return buf.getvalue()
    fn = _RENDERERS.get((artifact.type, fmt))
    rule = _AXES.get((artifact.type, fmt))
    if fn is None or (rule is not None and not rule(tuple(artifact.axes))):
        formats = formats_for(artifact)
        raise InvalidFormat(
            f"Artifact {artifact.name!r} ({artifact.type}, axes {artifact.axes}) has no {fmt!r} "
            f"rendering. Ask for one of: {', '.join(formats)}.",
            details={"artifact": artifact.name, "format": fmt, "formats": formats},
        )
    return fn(artifact, ctx)
