"""The tiny-PNG reader gives exactly Pillow's RGB pixels, for every PNG filter type, both
colour types it reads and every size up to its limit, and declines (None: Pillow's path)
everything else; decode_one with it is still the codec's answer, errors included."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from engine.datasets.decode import MAX_PIXELS, tiny_png
from engine.datasets.pixels import decode_one
from engine.errors import InvalidImage
from jobs.runtime import Runtime
from lantern.settings import Settings


def chunk(kind: bytes, body: bytes) -> bytes:
    return (struct.pack(">I", len(body)) + kind + body
            + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))


def paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else (b if pb <= pc else c)


def encode(pixels: np.ndarray, filters: list[int], extra: bytes = b"",
           header: dict[str, int] | None = None) -> bytes:
    """A PNG written here, each row filtered with the filter type given (0-4)."""
    h, w = pixels.shape[:2]
    bpp = 1 if pixels.ndim == 2 else pixels.shape[2]
    rows = pixels.reshape(h, w * bpp).astype(np.int64)
    raw = bytearray()
    prev = np.zeros(w * bpp, np.int64)
    for y in range(h):
        f = filters[y % len(filters)]
        row = rows[y]
        left = np.concatenate([np.zeros(bpp, np.int64), row[:-bpp]])
        upleft = np.concatenate([np.zeros(bpp, np.int64), prev[:-bpp]])
        if f == 0:
            pred = np.zeros_like(row)
        elif f == 1:
            pred = left
        elif f == 2:
            pred = prev
        elif f == 3:
            pred = (left + prev) // 2
        else:
            pred = np.asarray([paeth(int(a), int(b), int(c))
                               for a, b, c in zip(left, prev, upleft, strict=True)])
        raw.append(f)
        raw.extend(((row - pred) % 256).astype(np.uint8).tobytes())
        prev = row
    fields = {"depth": 8, "colour": 0 if bpp == 1 else {3: 2, 4: 6}[bpp], "interlace": 0,
              **(header or {})}
    ihdr = struct.pack(">IIBBBBB", w, h, fields["depth"], fields["colour"], 0, 0,
                       fields["interlace"])
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + extra
            + chunk(b"IDAT", zlib.compress(bytes(raw))) + chunk(b"IEND", b""))


def pillow(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"))


RNG = np.random.default_rng(3)
SIZES = [(1, 1), (1, 7), (5, 1), (3, 5), (8, 8), (17, 9), (32, 32)]


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("filters", [[0], [1], [2], [3], [4], [4, 3, 2, 1, 0]])
def test_every_filter_gives_pillows_pixels(channels: int, filters: list[int]) -> None:
    for h, w in SIZES:
        shape = (h, w) if channels == 1 else (h, w, channels)
        for pixels in (RNG.integers(0, 256, shape, dtype=np.uint8),
                       np.full(shape, 200, np.uint8),
                       (np.indices((h, w)).sum(0) * 9 % 256).astype(np.uint8).reshape(
                           (h, w, 1) if channels == 3 else (h, w)).repeat(channels, -1)
                       if channels == 3 else
                       (np.indices((h, w)).sum(0) * 9 % 256).astype(np.uint8)):
            data = encode(pixels, filters, extra=chunk(b"gAMA", struct.pack(">I", 45455)))
            got = tiny_png(data)
            assert got is not None, (h, w, filters)
            np.testing.assert_array_equal(got, pillow(data), err_msg=str((h, w, filters)))


def test_pillows_own_pngs() -> None:
    for mode in ("L", "RGB"):
        for h, w in SIZES:
            img = Image.fromarray(RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)).convert(mode)
            for level in (0, 6, 9):
                buf = io.BytesIO()
                img.save(buf, "PNG", compress_level=level)
                got = tiny_png(buf.getvalue())
                assert got is not None
                np.testing.assert_array_equal(got, pillow(buf.getvalue()))


def declined() -> dict[str, bytes]:
    gray = RNG.integers(0, 256, (6, 6), dtype=np.uint8)
    good = encode(gray, [4])
    big = int(np.sqrt(MAX_PIXELS)) + 1
    out = {
        "rgba": encode(RNG.integers(0, 256, (4, 4, 4), dtype=np.uint8), [1]),
        "transparency": encode(gray, [0], extra=chunk(b"tRNS", b"\x00\x05")),
        "palette chunk": encode(gray, [0], extra=chunk(b"PLTE", b"\x00" * 3)),
        "16-bit": encode(gray, [0], header={"depth": 16}),
        "interlaced": encode(gray, [0], header={"interlace": 1}),
        "too large": encode(RNG.integers(0, 256, (big, big), dtype=np.uint8), [0]),
        "bad crc": good[:-20] + bytes([good[-20] ^ 1]) + good[-19:],
        "truncated": good[: len(good) - 15],
        "no IEND": good[:-12],
        "bad filter": encode(gray, [0]).replace(b"IDAT", b"IDAT"),  # replaced below
        "not a png": b"GIF89a" + b"\x00" * 80,
    }
    raw = bytearray([5] + [0] * 6) * 6
    ihdr = struct.pack(">IIBBBBB", 6, 6, 8, 0, 0, 0, 0)
    out["bad filter"] = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                         + chunk(b"IDAT", zlib.compress(bytes(raw))) + chunk(b"IEND", b""))
    short = bytearray([0] + [7] * 6) * 5
    out["short stream"] = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                           + chunk(b"IDAT", zlib.compress(bytes(short))) + chunk(b"IEND", b""))
    return out


@pytest.mark.parametrize("name", sorted(declined()))
def test_everything_else_is_declined(name: str) -> None:
    assert tiny_png(declined()[name]) is None


@pytest.fixture(scope="module")
def rt(tmp_path_factory: pytest.TempPathFactory) -> Runtime:
    runtime = Runtime(Settings(data_dir=tmp_path_factory.mktemp("dec"),
                               builtin_models=["digits-cnn", "efficientnet-lite0"],
                               ort_threads=1))
    runtime.ensure_builtin()
    return runtime


def test_decode_one_is_the_codec_answer(rt: Runtime) -> None:
    """Read by the tiny path at the model's size (digits, 8x8), or resized after it
    (EfficientNet-Lite0, 224x224, bicubic), or declined: always the codec's pixels."""
    cases = [encode(RNG.integers(0, 256, (8, 8), dtype=np.uint8), [4, 1]),
             encode(RNG.integers(0, 256, (8, 8, 3), dtype=np.uint8), [3]),
             encode(RNG.integers(0, 256, (20, 30, 3), dtype=np.uint8), [2]),
             *declined().values()]
    for name in ("digits-cnn", "efficientnet-lite0"):
        model = rt.load(name)
        for data in cases:
            try:
                want = model.codec.decode(data).pixels
            except InvalidImage:
                with pytest.raises(InvalidImage):
                    decode_one(model, data)
                continue
            np.testing.assert_array_equal(decode_one(model, data), want)
