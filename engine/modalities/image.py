"""Image decoding with the guards a public service needs.

Every failure a caller can cause is a typed error with a sentence saying what to change:
zero bytes, not an image, truncated data, a decompression bomb, an unsupported mode.
"""

from __future__ import annotations

import io
import math
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray
from PIL import Image, ImageFile, UnidentifiedImageError

from api_schemas.modalities.image import ImageManifest
from engine.errors import (
    ImageTooLarge,
    InvalidImage,
    InvalidManifest,
    InvalidModel,
    UnsupportedImageMode,
)
from engine.modalities.base import GraphCheck, Modality, check_label_count
from engine.modalities.baselines import Baseline, baseline_pixels
from engine.modalities.registry import register_modality

ImageFile.LOAD_TRUNCATED_IMAGES = False


@dataclass(frozen=True)
class ImageInput:
    """An image resized to the model's input size, as float32 pixels in 0..255 (H, W, 3 RGB)."""

    pixels: NDArray[np.float32]

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])


_RESAMPLE = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
}

_DIRECT_MODES = {"RGB", "L", "P", "RGBA", "LA", "CMYK", "YCbCr", "1", "PA", "La", "RGBa"}
_HIGH_DEPTH_MODES = {"I", "I;16", "I;16L", "I;16B", "I;16N", "F"}
_ALPHA_MODES = {"RGBA", "LA", "PA", "La", "RGBa"}

FORMATS = ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP", "ICO")
"""The formats Image.open may try (ICO holds PNG or BMP). No other plugin ever sees the
bytes: an EPS or PDF never reaches Ghostscript."""

DEFAULT_MAX_DECODE_BYTES = 512 * 1024 * 1024
DEFAULT_MAX_CONCURRENT_DECODES = 2

# Bytes per pixel decoding holds at its peak, by the mode Pillow decodes into: the frame
# (Pillow keeps 3- and 4-channel modes, and LA, in 4 bytes a pixel), what it is converted
# through, and the RGB image returned (4).
_DECODE_BYTES_PER_PIXEL = {
    "RGB": 4,  # the frame is the answer
    "1": 5,
    "L": 5,
    "P": 5,
    "RGBA": 8,  # frame + RGB pasted over white
    "LA": 8,
    "PA": 12,  # frame + RGBA + RGB
    "La": 12,
    "RGBa": 12,
    "CMYK": 8,
    "YCbCr": 8,
    "I;16": 7,  # frame (2) + 8-bit gray (1) + RGB, converted in strips
    "I;16L": 7,
    "I;16B": 7,
    "I;16N": 7,
    "I": 9,  # frame (4) + gray + RGB
    "F": 9,
}
_STRIP_PIXELS = 1 << 20  # pixels converted at once from 16- and 32-bit modes


class _Limits:
    def __init__(self) -> None:
        self.max_bytes = DEFAULT_MAX_DECODE_BYTES
        self.max_concurrent = DEFAULT_MAX_CONCURRENT_DECODES
        self.slots = threading.BoundedSemaphore(self.max_concurrent)


_limits = _Limits()
_limits_lock = threading.Lock()


def configure_decoding(*, max_concurrent: int | None = None, max_bytes: int | None = None) -> None:
    """Process-wide decoding limits (LANTERN_MAX_CONCURRENT_DECODES, _MAX_DECODE_BYTES):
    how many decodes run at once (others wait their turn), and the default byte budget
    of one decode. Decodes already running finish under the limits they started with."""
    with _limits_lock:
        if max_concurrent is not None:
            if max_concurrent < 1:
                raise ValueError("max_concurrent must be at least 1")
            if max_concurrent != _limits.max_concurrent:
                _limits.max_concurrent = max_concurrent
                _limits.slots = threading.BoundedSemaphore(max_concurrent)
        if max_bytes is not None:
            if max_bytes < 1:
                raise ValueError("max_bytes must be positive")
            _limits.max_bytes = max_bytes


def decode_limits() -> dict[str, int]:
    """The limits ``configure_decoding`` set (its keyword arguments)."""
    return {"max_concurrent": _limits.max_concurrent, "max_bytes": _limits.max_bytes}


@contextmanager
def _decode_slot() -> Iterator[None]:
    slots = _limits.slots
    with slots:
        yield


def decode_bytes_estimate(mode: str, pixels: int, *, transparency: bool = False) -> int:
    """Bytes decoding an image of this mode and size holds at its peak (to RGB)."""
    per_pixel = 9 if mode == "P" and transparency else _DECODE_BYTES_PER_PIXEL.get(mode, 8)
    return per_pixel * pixels


def decode_image(
    data: bytes,
    max_pixels: int,
    *,
    target_size: tuple[int, int] | None = None,
    max_bytes: int | None = None,
) -> Image.Image:
    """Bytes of an image file -> an RGB PIL image (first frame), or a typed error.

    ``target_size`` (width, height): the size the caller will resize to; formats that can
    decode at a reduced scale (JPEG) then decode at the smallest scale still at least that
    large. Default: full size. ``max_bytes``: the memory one decode may take, estimated
    from the header (mode × pixels) before any pixel is decoded; default: the process-wide
    budget (``configure_decoding``). At most ``max_concurrent`` decodes run at once.
    """
    if len(data) == 0:
        raise InvalidImage("The image is empty (zero bytes). Send the bytes of a PNG or JPEG file.")
    budget = _limits.max_bytes if max_bytes is None else max_bytes
    with _decode_slot():
        return _decode(data, max_pixels, target_size, budget)


def _decode(
    data: bytes, max_pixels: int, target_size: tuple[int, int] | None, budget: int
) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=FORMATS)
    except UnidentifiedImageError:
        raise InvalidImage(
            "The data is not an image Lantern can read. Send a PNG, JPEG, GIF, BMP, TIFF "
            "or WebP file.",
        ) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageTooLarge(
            f"The image has more pixels than the limit of {max_pixels}. Downscale it first.",
            details={"max_pixels": max_pixels},
        ) from None
    except Exception as e:  # Pillow raises assorted errors on malformed headers
        raise InvalidImage(
            "The image header is malformed. Send a complete, valid image file.",
            details={"reason": str(e)[:200]},
        ) from None
    w, h = img.size
    if w <= 0 or h <= 0:
        raise InvalidImage("The image has no pixels. Send an image with a positive size.")
    if w * h > max_pixels:
        raise ImageTooLarge(
            f"The image is {w}×{h} = {w * h} pixels; the limit is {max_pixels}. "
            "Downscale it before sending.",
            details={"width": w, "height": h, "max_pixels": max_pixels},
        )
    try:
        if target_size is not None:
            img.draft(None, (max(int(target_size[0]), 1), max(int(target_size[1]), 1)))
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise InvalidImage(
            "The image data is truncated or corrupt. Send the complete file.",
            details={"reason": str(e)[:200]},
        ) from None
    dw, dh = img.size
    need = decode_bytes_estimate(img.mode, dw * dh, transparency="transparency" in img.info)
    if need > budget:
        raise ImageTooLarge(
            f"Decoding this {dw}×{dh} {img.mode} image would take about {need} bytes of "
            f"memory; the limit is {budget}. Downscale it, or send it as 8-bit RGB.",
            details={"width": dw, "height": dh, "mode": img.mode, "bytes": need, "limit": budget},
        )
    try:
        img.seek(0)
        img.load()
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise InvalidImage(
            "The image data is truncated or corrupt. Send the complete file.",
            details={"reason": str(e)[:200]},
        ) from None
    return _to_rgb(img, release=True)


def to_rgb(img: Image.Image) -> Image.Image:
    """Any supported mode -> RGB: transparency composited over white, 16- and 32-bit
    modes scaled to 8 bits (in strips, with integer arithmetic for integer modes)."""
    return _to_rgb(img, release=False)


def _to_rgb(img: Image.Image, *, release: bool) -> Image.Image:
    """``release``: the caller gives ``img`` up, so it is closed (its pixels freed) as soon
    as what it converts into holds the pixels."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in _ALPHA_MODES or (mode == "P" and "transparency" in img.info):
        # Composite transparent pixels over white, as viewers show them (pasting with the
        # alpha band as the mask is exactly alpha_composite over opaque white).
        src = img if mode in ("RGBA", "LA") else img.convert("RGBA")
        if release and src is not img:
            img.close()
        out = Image.new("RGB", src.size, (255, 255, 255))
        out.paste(src, mask=src)
        return out
    if mode in _DIRECT_MODES:
        return img.convert("RGB")
    if mode in _HIGH_DEPTH_MODES:
        gray = _high_depth_to_gray(img)
        if release:
            img.close()
        return gray.convert("RGB")
    raise UnsupportedImageMode(
        f"Images in mode {mode!r} are not supported. Convert it to RGB or grayscale first.",
        details={"mode": mode},
    )


def _strips(img: Image.Image) -> Iterator[tuple[int, int, NDArray[Any]]]:
    w, h = img.size
    rows = max(1, _STRIP_PIXELS // max(w, 1))
    for y in range(0, h, rows):
        y1 = min(y + rows, h)
        yield y, y1, np.asarray(img.crop((0, y, w, y1)))


def _high_depth_to_gray(img: Image.Image) -> Image.Image:
    """A 16-bit, 32-bit integer or float image -> 8-bit gray ("L"), strip by strip, never
    a float64 copy of the whole image. Integer modes: values above 255 mean 16-bit data,
    scaled by 255/65535 (v // 257, exactly the former float arithmetic). Float: values in
    0..1 are scaled to 0..255; everything is clipped to 0..255."""
    mode = img.mode
    w, h = img.size
    if mode == "F":
        hi = -math.inf
        for _, _, strip in _strips(img):
            if not np.isfinite(strip).all():
                raise InvalidImage("The image holds non-finite values. Send a regular image.")
            if strip.size:
                hi = max(hi, float(strip.max()))
    else:
        extrema = img.getextrema()
        hi = float(extrema[1])  # type: ignore[arg-type]
    scale16 = hi > 255
    gray = np.empty((h, w), np.uint8)
    for y, y1, strip in _strips(img):
        if mode == "F":
            values = strip.astype(np.float64)
            if hi <= 1.0:
                values *= 255.0
            np.clip(values, 0, 255, out=values)
            gray[y:y1] = values.astype(np.uint8)
            continue
        ints = strip if strip.flags.writeable else strip.copy()
        if mode == "I":
            np.clip(ints, 0, 65535 if scale16 else 255, out=ints)
        if scale16:
            np.floor_divide(ints, 257, out=ints)
        gray[y:y1] = ints
    return Image.fromarray(gray)


def prepare_image(img: Image.Image, manifest: ImageManifest) -> ImageInput:
    """Resize to the model's input size with the manifest's filter -> pixels 0..255."""
    h, w = manifest.input_size
    resized = img.resize((w, h), _RESAMPLE[manifest.resize])
    pixels: NDArray[np.float32] = np.asarray(resized, dtype=np.float32)
    return ImageInput(pixels=pixels)


class ImageCodec:
    """The image codec (see :mod:`engine.modalities.base`): files -> pixels at the model's
    input size -> the model's input tensor, by the manifest's scaling, normalisation,
    channel order and layout."""

    modality = "image"

    def __init__(self, manifest: ImageManifest, max_pixels: int = 40_000_000) -> None:
        self.manifest = manifest
        self.max_pixels = max_pixels
        scale = np.float32(manifest.scale)
        mean = np.asarray(manifest.mean, dtype=np.float32)
        std = np.asarray(manifest.std, dtype=np.float32)
        # x = (p * scale - mean) / std  ==  p * a + b
        self._a = (scale / std).astype(np.float32)
        self._b = (-mean / std).astype(np.float32)
        self.nchw = manifest.layout == "NCHW"

    def validate(self, data: bytes) -> None:
        decode_image(data, self.max_pixels)

    def decode(self, data: bytes) -> ImageInput:
        return prepare_image(decode_image(data, self.max_pixels), self.manifest)

    def to_model_input(self, pixels: NDArray[np.float32]) -> NDArray[np.float32]:
        """Pixels (N, H, W, 3) RGB 0..255 -> the model's input tensor."""
        x = pixels
        if self.manifest.channel_order == "BGR":
            x = x[..., ::-1]
        x = x * self._a + self._b
        if self.nchw:
            x = x.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(x, dtype=np.float32)

    def item_input(self, item: ImageInput) -> NDArray[np.float32]:
        return self.to_model_input(item.pixels[None])

    def baseline(
        self, item: ImageInput, name: Baseline, blur_radius: float = 10.0
    ) -> NDArray[np.float32]:
        return baseline_pixels(item.pixels, name, blur_radius)

    def masked_batch(
        self,
        x0: NDArray[np.float32],
        xb: NDArray[np.float32],
        masks: NDArray[Any],
        out: NDArray[np.float32],
    ) -> NDArray[np.float32]:
        """``x0`` where the (n, H, W) masks keep, ``xb`` where they hide (float masks blend),
        written into ``out`` (n, ...model input). Boolean masks take two masked copies —
        exact, and 5× faster than x0·m + xb·(1 − m) in float32, and than np.where."""
        m = masks[:, None, :, :] if self.nchw else masks[..., None]
        if masks.dtype == np.bool_:
            np.copyto(out, x0)
            np.copyto(out, xb, where=~m)
        else:
            np.multiply(m.astype(np.float32, copy=False), x0 - xb, out=out)
            out += xb
        return out


def image_inference_dims(manifest: ImageManifest) -> list[int]:
    h, w = manifest.input_size
    return [1, 3, h, w] if manifest.layout == "NCHW" else [1, h, w, 3]


def check_image_graph(sess: ort.InferenceSession, manifest: ImageManifest) -> GraphCheck:
    """One float32 rank-4 input of the manifest's layout and size; the first output has one
    score per label (run once on a zero image)."""
    inputs = sess.get_inputs()
    if len(inputs) != 1:
        raise InvalidModel(
            f"The model has {len(inputs)} inputs; image models must take exactly one input tensor.",
            details={"inputs": [i.name for i in inputs]},
        )
    inp = inputs[0]
    if inp.type != "tensor(float)":
        raise InvalidModel(
            f"The model input is {inp.type}; Lantern feeds float32 images.",
            details={"input_type": inp.type},
        )
    shape = list(inp.shape)
    if len(shape) != 4:
        raise InvalidManifest(
            f"The model input has rank {len(shape)}; an image model takes a rank-4 "
            "tensor (NCHW or NHWC).",
            details={"input_shape": shape},
        )
    h, w = manifest.input_size
    expect = [None, 3, h, w] if manifest.layout == "NCHW" else [None, h, w, 3]
    for axis, (got, want) in enumerate(zip(shape, expect, strict=True)):
        if want is not None and isinstance(got, int) and got != want:
            raise InvalidManifest(
                f"The model input has shape {shape}, but the manifest says "
                f"{manifest.layout} with input_size {list(manifest.input_size)} "
                f"(axis {axis} should be {want}). Fix the manifest's layout or input_size.",
                details={"input_shape": shape, "layout": manifest.layout},
            )
    batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else 1
    dummy_shape = [batch, *image_inference_dims(manifest)[1:]]
    try:
        out = sess.run(None, {inp.name: np.zeros(dummy_shape, dtype=np.float32)})[0]
    except Exception as e:  # ORT raises many types; any failure means "cannot run"
        raise InvalidModel(
            "The model failed on a test input of the manifest's size. Check input_size and layout.",
            details={"reason": str(e)[:500]},
        ) from None
    num_classes = int(np.asarray(out).size // max(batch, 1))
    check_label_count(num_classes, manifest.labels)
    return GraphCheck(inp.name, sess.get_outputs()[0].name, num_classes)


register_modality(
    Modality(
        name="image",
        codec=ImageCodec,
        check_graph=check_image_graph,
        inference_dims=image_inference_dims,
    )
)
