"""Image decoding: every bad input becomes a typed error; odd modes become RGB."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from api_schemas.models import ModelManifest
from engine.errors import ImageTooLarge, InvalidImage
from engine.modalities.image import decode_image, prepare_image
from lantern_testing.images import png_bytes

LIMIT = 10_000_000


def encode(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    return struct.pack(">I", len(data)) + kind + data + crc


def png_header_only(width: int, height: int) -> bytes:
    """A PNG of a few hundred bytes whose header claims a huge size (a decompression bomb)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1000)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    )


def test_rgb_png_round_trips() -> None:
    px = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    img = decode_image(png_bytes(px), LIMIT)
    assert img.mode == "RGB" and img.size == (7, 5)
    np.testing.assert_array_equal(np.asarray(img), px)


def test_zero_bytes() -> None:
    with pytest.raises(InvalidImage, match="empty"):
        decode_image(b"", LIMIT)


def test_not_an_image() -> None:
    with pytest.raises(InvalidImage, match="not an image"):
        decode_image(b"hello, this is text" * 10, LIMIT)


def test_truncated_png() -> None:
    data = png_bytes(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    with pytest.raises(InvalidImage, match="truncated or corrupt"):
        decode_image(data[: len(data) // 2], LIMIT)


def test_truncated_jpeg() -> None:
    img = Image.fromarray(np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    data = encode(img, "JPEG")
    with pytest.raises(InvalidImage):
        decode_image(data[: len(data) // 3], LIMIT)


def test_decompression_bomb_is_refused_before_decoding() -> None:
    for side in (100_000, 5_000):  # beyond Pillow's own guard, and beyond only ours
        with pytest.raises(ImageTooLarge) as e:
            decode_image(png_header_only(side, side), LIMIT)
        assert e.value.status == 413


def test_pixel_limit_is_ours() -> None:
    data = png_bytes(np.zeros((20, 20, 3), np.uint8))
    with pytest.raises(ImageTooLarge, match="400 pixels"):
        decode_image(data, 399)
    assert decode_image(data, 400).size == (20, 20)


@pytest.mark.parametrize(
    ("mode", "value", "expected"),
    [
        ("L", 128, (128, 128, 128)),
        ("CMYK", (0, 0, 0, 0), (255, 255, 255)),
        ("CMYK", (0, 255, 255, 0), (255, 0, 0)),
        ("1", 1, (255, 255, 255)),
    ],
)
def test_modes_become_rgb(mode: str, value: object, expected: tuple[int, int, int]) -> None:
    img = Image.new(mode, (4, 3), value)  # type: ignore[arg-type]
    fmt = "TIFF" if mode == "CMYK" else "PNG"
    out = decode_image(encode(img, fmt), LIMIT)
    assert out.mode == "RGB"
    assert out.getpixel((0, 0)) == expected


def test_alpha_is_composited_on_white() -> None:
    img = Image.new("RGBA", (4, 4), (255, 0, 0, 0))  # fully transparent red
    img.putpixel((0, 0), (0, 0, 255, 255))
    out = decode_image(encode(img, "PNG"), LIMIT)
    assert out.getpixel((1, 1)) == (255, 255, 255)
    assert out.getpixel((0, 0)) == (0, 0, 255)


def test_palette_with_transparency() -> None:
    img = Image.new("P", (4, 4), 0)
    img.putpalette([10, 20, 30] * 256)
    out = decode_image(encode(img, "PNG", transparency=1), LIMIT)
    assert out.getpixel((0, 0)) == (10, 20, 30)


def test_sixteen_bit_grayscale_is_scaled() -> None:
    arr = np.full((4, 4), 65535, np.uint16)
    arr[0, 0] = 0
    img = Image.fromarray(arr)
    assert img.mode.startswith("I;16")
    out = decode_image(encode(img, "PNG"), LIMIT)
    assert out.getpixel((1, 1)) == (255, 255, 255)
    assert out.getpixel((0, 0)) == (0, 0, 0)


def test_animated_gif_takes_the_first_frame() -> None:
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 255, 0))]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=100)
    out = decode_image(buf.getvalue(), LIMIT)
    assert out.mode == "RGB"
    r, g, _ = out.getpixel((0, 0))  # type: ignore[misc]
    assert r > 200 and g < 50


def test_prepare_resizes_with_the_manifest_filter() -> None:
    m = ModelManifest(name="m", input_size=(8, 12), resize="nearest", labels=["a"])
    img = Image.fromarray((np.arange(16 * 24 * 3) % 251).astype(np.uint8).reshape(16, 24, 3))
    inp = prepare_image(img, m)
    assert inp.pixels.shape == (8, 12, 3) and inp.pixels.dtype == np.float32
    np.testing.assert_array_equal(inp.pixels, np.asarray(img.resize((12, 8), Image.NEAREST)))


# -- formats, budgets, draft, 16-bit arithmetic, concurrency ----------------------------------

EPS = (
    b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 16 16\n%%EndComments\n"
    b"newpath 0 0 moveto 16 0 lineto 16 16 lineto closepath fill\nshowpage\n%%EOF\n"
)


def test_eps_never_reaches_ghostscript(monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import EpsImagePlugin

    calls: list[object] = []

    def ghostscript(*args: object, **kwargs: object) -> object:
        calls.append(args)
        raise OSError("ghostscript must not run")

    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", ghostscript)
    monkeypatch.setattr(EpsImagePlugin, "has_ghostscript", lambda: True)
    with pytest.raises(InvalidImage, match="not an image Lantern can read") as e:
        decode_image(EPS, LIMIT)
    assert e.value.code == "invalid_image"
    assert calls == []


@pytest.mark.parametrize(
    ("fmt", "mode"),
    [
        ("PNG", "RGB"),
        ("JPEG", "RGB"),
        ("GIF", "P"),
        ("BMP", "RGB"),
        ("TIFF", "RGB"),
        ("WEBP", "RGB"),
        ("ICO", "RGBA"),
    ],
)
def test_supported_formats_still_decode(fmt: str, mode: str) -> None:
    img = Image.new(mode, (16, 16))
    assert decode_image(encode(img, fmt), LIMIT).size == (16, 16)


@pytest.mark.parametrize("fmt", ["PPM", "TGA", "PCX", "SGI", "DDS"])
def test_other_formats_are_refused(fmt: str) -> None:
    with pytest.raises(InvalidImage, match="not an image Lantern can read"):
        decode_image(encode(Image.new("RGB", (16, 16)), fmt), LIMIT)


def sixteen_bit_png(width: int, height: int) -> bytes:
    arr = (np.arange(width * height, dtype=np.uint32) % 65536).astype(np.uint16)
    return encode(Image.fromarray(arr.reshape(height, width)), "PNG")


def test_the_decode_byte_budget_is_checked_from_the_header() -> None:
    data = sixteen_bit_png(1000, 1000)
    assert decode_image(data, LIMIT, max_bytes=100_000_000).size == (1000, 1000)
    with pytest.raises(ImageTooLarge) as e:
        decode_image(data, LIMIT, max_bytes=5_000_000)
    assert e.value.status == 413 and e.value.details["mode"] == "I;16"
    assert e.value.details["limit"] == 5_000_000 and e.value.details["bytes"] > 5_000_000
    # a header whose data would not even decode: refused for its size, before loading
    with pytest.raises(ImageTooLarge, match="bytes"):
        decode_image(png_header_only(3000, 3000), LIMIT, max_bytes=10_000_000)


def test_the_default_budget_takes_images_at_the_pixel_limit() -> None:
    from engine.modalities.image import decode_bytes_estimate

    for mode in ("RGB", "RGBA", "L", "P", "I;16", "I", "F", "CMYK", "LA", "1"):
        est = decode_bytes_estimate(mode, 40_000_000)
        assert 40_000_000 * 4 <= est <= 512 * 1024 * 1024, (mode, est)


def test_jpeg_draft_to_the_target_size() -> None:
    rng = np.random.default_rng(5)
    img = Image.fromarray(rng.integers(0, 256, (1600, 2000, 3), dtype=np.uint8))
    data = encode(img, "JPEG")
    assert decode_image(data, LIMIT).size == (2000, 1600)  # default: full size
    out = decode_image(data, LIMIT, target_size=(224, 224))
    assert out.mode == "RGB" and out.size == (500, 400)  # 1/4 scale, still >= 224
    assert decode_image(data, LIMIT, target_size=(1500, 1500)).size == (2000, 1600)
    # the budget is checked on what is decoded: drafted, it fits
    with pytest.raises(ImageTooLarge):
        decode_image(data, LIMIT, max_bytes=2_000_000)
    assert decode_image(data, LIMIT, max_bytes=2_000_000, target_size=(224, 224)).size == (
        500,
        400,
    )
    # formats without draft ignore target_size
    png = png_bytes(np.zeros((300, 400, 3), np.uint8))
    assert decode_image(png, LIMIT, target_size=(50, 50)).size == (400, 300)


def _old_high_depth(img: Image.Image) -> np.ndarray:
    """to_rgb's float64 arithmetic before integer conversion, as the reference."""
    arr = np.asarray(img, dtype=np.float64)
    hi = float(arr.max())
    mode = img.mode
    if mode.startswith("I;16") or (mode == "I" and hi > 255):
        arr = arr / 65535.0 * 255.0 if hi > 255 else arr
    elif mode == "F" and hi <= 1.0:
        arr = arr * 255.0
    return np.clip(arr, 0, 255).astype(np.uint8)


@pytest.mark.parametrize(
    "values",
    [
        np.arange(65536, dtype=np.uint16).reshape(256, 256),
        np.arange(256, dtype=np.uint16).reshape(16, 16),  # 8-bit values in a 16-bit file
        (np.arange(-70000, 70000, 7, dtype=np.int32)[:19600]).reshape(140, 140),
        np.arange(200, dtype=np.int32).reshape(10, 20),
        np.linspace(0, 1, 4096, dtype=np.float32).reshape(64, 64),
        np.linspace(-3, 300, 4096, dtype=np.float32).reshape(64, 64),
    ],
    ids=["i16-full", "i16-low", "i32-wide", "i32-low", "f-unit", "f-wide"],
)
def test_high_depth_conversion_is_unchanged(values: np.ndarray) -> None:
    from engine.modalities.image import to_rgb

    img = Image.fromarray(values)
    expected = _old_high_depth(img)
    out = np.asarray(to_rgb(img))
    assert out.shape == (*values.shape, 3)
    np.testing.assert_array_equal(out[..., 0], expected)
    np.testing.assert_array_equal(out[..., 2], expected)
    fmt = "PNG" if values.dtype == np.uint16 else "TIFF"
    np.testing.assert_array_equal(
        np.asarray(decode_image(encode(img, fmt), LIMIT))[..., 1], expected
    )


def test_non_finite_float_images_are_refused() -> None:
    from engine.modalities.image import to_rgb

    arr = np.zeros((300, 300), np.float32)
    arr[299, 299] = np.inf
    with pytest.raises(InvalidImage, match="non-finite"):
        to_rgb(Image.fromarray(arr))


def test_decodes_at_once_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading
    import time

    import PIL.Image

    from engine.modalities import image as codec

    running = 0
    most = 0
    lock = threading.Lock()
    real_open = PIL.Image.open

    def slow_open(*args: object, **kwargs: object) -> Image.Image:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.05)
        with lock:
            running -= 1
        return real_open(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(PIL.Image, "open", slow_open)
    data = png_bytes(np.zeros((8, 8, 3), np.uint8))
    before = codec.decode_limits()
    codec.configure_decoding(max_concurrent=2)
    try:
        threads = [threading.Thread(target=decode_image, args=(data, LIMIT)) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        codec.configure_decoding(**before)
    assert most == 2
    assert codec.decode_limits() == before
