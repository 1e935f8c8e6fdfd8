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
