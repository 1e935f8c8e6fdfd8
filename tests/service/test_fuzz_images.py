"""Bad, odd and hostile images through every image-taking route, and mutated PNGs through the
decoder: each is handled (200/202 with a result) or refused with a 4xx with a stable code and a
sentence — never a 5xx, and the decoder never raises anything but a LanternError."""

from __future__ import annotations

import io
import json
import shutil
import struct
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from engine.errors import LanternError
from engine.modalities.image import decode_image
from engine.models.zoo import BUILTIN_MODEL_ID
from lantern.settings import Settings
from lantern_testing.images import b64, png_bytes
from lantern_testing.models import linear_classifier, manifest
from service.app import create_app

MAX_PIXELS = 5_000_000
MAX_BYTES = 2_000_000
TINY = "tiny"

# The codes an image can be refused with, and their statuses.
IMAGE_CODES = {
    "invalid_image": 422,
    "image_too_large": 413,
    "payload_too_large": 413,
    "unsupported_image_mode": 422,
    "invalid_input": 422,
}


# -- building the images ----------------------------------------------------------------------


def _rng_pixels(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)


def save(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def rgb(h: int = 32, w: int = 32) -> Image.Image:
    return Image.fromarray(_rng_pixels(h, w))


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A PNG declaring width x height 1-bit pixels, with a few bytes of (zero) image data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 4096, 9)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    )


def gif_bomb(width: int = 65_535, height: int = 65_535) -> bytes:
    """GIF89a with a huge logical screen and image, 2 colours, a tiny LZW stream."""
    header = (
        b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    )
    descriptor = b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0)
    lzw = b"\x02" + b"\x02\x4c\x01" + b"\x00"  # min code size 2, one tiny sub-block, terminator
    return header + descriptor + lzw + b"\x3b"


def bmp_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A 24-bit BMP header declaring width x height, with 16 bytes of pixel data."""
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    pixels = b"\x00" * 16
    offset = 14 + len(info)
    header = b"BM" + struct.pack("<IHHI", offset + len(pixels), 0, 0, offset)
    return header + info + pixels


def tiff_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A little-endian baseline TIFF declaring width x height 8-bit gray, one tiny strip."""
    entries = [
        (256, 4, 1, width),  # ImageWidth (LONG)
        (257, 4, 1, height),  # ImageLength
        (258, 3, 1, 8),  # BitsPerSample
        (259, 3, 1, 1),  # Compression: none
        (262, 3, 1, 1),  # Photometric: BlackIsZero
        (273, 4, 1, 0),  # StripOffsets (patched below)
        (277, 3, 1, 1),  # SamplesPerPixel
        (278, 4, 1, height),  # RowsPerStrip
        (279, 4, 1, 16),  # StripByteCounts
    ]
    ifd_offset = 8
    data_offset = ifd_offset + 2 + 12 * len(entries) + 4
    ifd = struct.pack("<H", len(entries))
    for tag, typ, count, value in entries:
        if tag == 273:
            value = data_offset
        packed = struct.pack("<I", value) if typ == 4 else struct.pack("<HH", value, 0)
        ifd += struct.pack("<HHI", tag, typ, count) + packed
    ifd += struct.pack("<I", 0)
    return b"II*\x00" + struct.pack("<I", ifd_offset) + ifd + b"\x00" * 16


def cmyk_jpeg() -> bytes:
    return save(rgb().convert("CMYK"), "JPEG")


def png16() -> bytes:
    arr = (np.arange(32 * 32, dtype=np.uint16).reshape(32, 32) * 60).astype(np.uint16)
    return save(Image.frombytes("I;16", (32, 32), arr.astype("<u2").tobytes()), "PNG")


def float_tiff(values: np.ndarray | None = None) -> bytes:
    arr = np.linspace(0, 1, 32 * 32, dtype=np.float32).reshape(32, 32) if values is None else values
    return save(Image.fromarray(arr.astype(np.float32)), "TIFF")


def int32_tiff() -> bytes:
    arr = (np.arange(32 * 32, dtype=np.int32).reshape(32, 32) - 500) * 1000
    return save(Image.fromarray(arr.astype(np.int32)), "TIFF")


def palette(transparent: bool) -> bytes:
    img = rgb().convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    return save(img, "PNG", transparency=0) if transparent else save(img, "PNG")


def with_alpha(mode: str) -> bytes:
    base = rgb().convert("RGBA" if mode == "RGBA" else "LA")
    arr = np.asarray(base).copy()
    arr[..., -1] = np.linspace(0, 255, arr.shape[1], dtype=np.uint8)[None, :]
    return save(Image.fromarray(arr), "PNG")


def animated(fmt: str) -> bytes:
    frames = [Image.fromarray(_rng_pixels(24, 24, seed)) for seed in range(3)]
    return save(frames[0], fmt, save_all=True, append_images=frames[1:], duration=50, loop=0)


def thin(width: int, height: int) -> bytes:
    return save(Image.new("L", (width, height), 128), "PNG")


def exif_rotated_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW
    return save(rgb(16, 48), "JPEG", exif=exif.tobytes())


def lab_tiff() -> bytes:
    return save(Image.new("LAB", (16, 16), (50, 10, 10)), "TIFF")


SVG = (
    b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
    b'<rect width="10" height="10" fill="red"/></svg>'
)
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


def truncations() -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = []
    sources = {
        "png": save(rgb(48, 48), "PNG"),
        "jpeg": save(rgb(48, 48), "JPEG"),
        "gif": save(rgb(48, 48).convert("P"), "GIF"),
        "webp": save(rgb(48, 48), "WEBP"),
        "tiff": save(rgb(48, 48), "TIFF"),
    }
    for fmt, data in sources.items():
        for cut in (1, 4, 8, 16, 30, 64, len(data) // 2, len(data) - 12, len(data) - 1):
            out.append((f"truncated-{fmt}-{cut}", data[:cut]))
    return out


CASES: list[tuple[str, bytes]] = [
    *truncations(),
    ("zero-bytes", b""),
    ("random-bytes", bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8))),
    ("png-bomb", png_bomb()),
    ("png-bomb-wide", png_bomb(2**31 - 1, 1)),
    ("gif-bomb", gif_bomb()),
    ("bmp-bomb", bmp_bomb()),
    ("bmp-bomb-negative-height", bmp_bomb(100_000, -100_000)),
    ("tiff-bomb", tiff_bomb()),
    ("cmyk-jpeg", cmyk_jpeg()),
    ("png-16bit", png16()),
    ("tiff-float", float_tiff()),
    ("tiff-float-nan", float_tiff(np.full((8, 8), np.nan, np.float32))),
    ("tiff-float-large", float_tiff(np.full((8, 8), 1e30, np.float32))),
    ("tiff-int32", int32_tiff()),
    ("tiff-lab", lab_tiff()),
    ("palette", palette(False)),
    ("palette-transparent", palette(True)),
    ("la-alpha", with_alpha("LA")),
    ("rgba-alpha", with_alpha("RGBA")),
    ("bilevel", save(rgb().convert("1"), "PNG")),
    ("animated-gif", animated("GIF")),
    ("apng", animated("PNG")),
    ("animated-webp", animated("WEBP")),
    ("thin-1x100000", thin(1, 100_000)),
    ("thin-100000x1", thin(100_000, 1)),
    ("one-pixel", save(rgb(1, 1), "PNG")),
    ("one-pixel-jpeg", save(rgb(1, 1), "JPEG")),
    ("exif-rotated-jpeg", exif_rotated_jpeg()),
    ("svg", SVG),
    ("pdf", PDF),
    ("trailing-garbage", save(rgb(), "PNG") + b"\x00garbage" * 100),
    ("jpeg-trailing-garbage", save(rgb(), "JPEG") + bytes(range(256)) * 4),
    ("ico", save(rgb(), "ICO")),
    ("bmp", save(rgb(), "BMP")),
]


# -- the app ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, zoo_dir: Path) -> Iterator[TestClient]:
    data = tmp_path_factory.mktemp("fuzz-data")
    (data / "zoo").mkdir()
    shutil.copy(zoo_dir / f"{BUILTIN_MODEL_ID}.onnx", data / "zoo")
    s = Settings(
        data_dir=data, max_upload_bytes=MAX_BYTES, max_pixels=MAX_PIXELS, embedded_workers=2
    )
    with TestClient(create_app(s), raise_server_exceptions=False) as c:
        w = np.zeros((2, 3, 8, 8), np.float32)
        w[0, 0, :4, :4] = 1.0
        r = c.post(
            "/v1/models",
            files={"file": ("m.onnx", linear_classifier(w).SerializeToString())},
            data={"manifest": json.dumps(manifest(TINY, 8, ["left", "other"]))},
        )
        assert r.status_code == 201, r.text
        yield c


def assert_handled(r: object, name: str) -> str:
    """200/202 with a result, or a 4xx with a stable code; returns the code or 'ok'."""
    status = r.status_code  # type: ignore[attr-defined]
    body = r.json()  # type: ignore[attr-defined]
    assert status < 500, f"{name}: {status} {body}"
    if status in (200, 202):
        return "ok"
    assert body["code"] in IMAGE_CODES, f"{name}: {status} {body}"
    assert IMAGE_CODES[body["code"]] == status, f"{name}: {status} {body}"
    assert isinstance(body["message"], str) and len(body["message"]) > 20
    assert isinstance(body["details"], dict)
    return str(body["code"])


Sender = Callable[[TestClient, bytes], object]


def predict_json(model: str) -> Sender:
    return lambda c, data: c.post(f"/v1/models/{model}/predict", json={"image": b64(data)})


def predict_multipart(model: str) -> Sender:
    return lambda c, data: c.post(
        f"/v1/models/{model}/predict", files={"file": ("x.bin", data)}, data={"top_k": "3"}
    )


def explain_json(c: TestClient, data: bytes) -> object:
    return c.post(
        "/v1/explanations?wait=20",
        json={
            "model": TINY,
            "method": "occlusion",
            "image": b64(data),
            "target": "top1",
            "params": {"window": 4},
            "outputs": ["values", "png", "overlay"],
        },
    )


def explain_multipart(c: TestClient, data: bytes) -> object:
    return c.post(
        "/v1/explanations?wait=20",
        files={"file": ("x.bin", data)},
        data={
            "model": TINY,
            "method": "saliency",
            "target": "0",
            "outputs": '["overlay"]',
        },
    )


SENDERS: dict[str, Sender] = {
    "predict-json-tiny": predict_json(TINY),
    "predict-multipart-builtin": predict_multipart(BUILTIN_MODEL_ID),
    "explain-json": explain_json,
    "explain-multipart": explain_multipart,
}

# Images that are valid and must be answered, not refused.
MUST_SUCCEED = {
    "cmyk-jpeg",
    "png-16bit",
    "tiff-float",
    "tiff-float-large",
    "tiff-int32",
    "palette",
    "palette-transparent",
    "la-alpha",
    "rgba-alpha",
    "bilevel",
    "animated-gif",
    "apng",
    "animated-webp",
    "thin-1x100000",
    "thin-100000x1",
    "one-pixel",
    "one-pixel-jpeg",
    "exif-rotated-jpeg",
    "trailing-garbage",
    "jpeg-trailing-garbage",
    "ico",
    "bmp",
}
MUST_REFUSE = {
    "zero-bytes": "invalid_image",
    "random-bytes": "invalid_image",
    "svg": "invalid_image",
    "pdf": "invalid_image",
    "png-bomb": "image_too_large",
    "png-bomb-wide": "image_too_large",
    "gif-bomb": "image_too_large",
    "bmp-bomb": "image_too_large",
    "bmp-bomb-negative-height": "image_too_large",
    "tiff-bomb": "image_too_large",
    "tiff-float-nan": "invalid_image",
}


@pytest.mark.parametrize("sender", list(SENDERS))
@pytest.mark.parametrize(("name", "data"), CASES, ids=[n for n, _ in CASES])
def test_bad_images_are_handled_or_refused(
    client: TestClient, sender: str, name: str, data: bytes
) -> None:
    r = SENDERS[sender](client, data)
    code = assert_handled(r, f"{sender}/{name}")
    if name in MUST_SUCCEED:
        assert code == "ok", f"{sender}/{name}: {r.json()}"  # type: ignore[attr-defined]
    if name in MUST_REFUSE:
        assert code == MUST_REFUSE[name], f"{sender}/{name}: {r.json()}"  # type: ignore[attr-defined]
    if name.startswith("truncated-") and int(name.rsplit("-", 1)[1]) <= 16:
        assert code == "invalid_image"
    if code == "ok" and sender.startswith("explain"):
        body = r.json()  # type: ignore[attr-defined]
        assert r.status_code == 200, body  # type: ignore[attr-defined]
        assert body["attribution"]["shape"] == [8, 8]
        assert "overlay" in body["images"]


def test_results_of_odd_images_render(client: TestClient) -> None:
    """The overlay of a thin image is drawn at the image's own size."""
    r = explain_json(client, thin(3, 2000))
    assert r.status_code == 200, r.json()  # type: ignore[attr-defined]
    job = r.json()["job"]  # type: ignore[attr-defined]
    overlay = client.get(f"/v1/jobs/{job}/result?format=overlay")
    assert overlay.status_code == 200
    assert Image.open(io.BytesIO(overlay.content)).size == (3, 2000)


# -- mutated PNGs straight through the decoder ------------------------------------------------

SEED_PNG = png_bytes(np.random.default_rng(3).integers(0, 255, (12, 10, 3), dtype=np.uint8))
SEED_PNG_ALPHA = save(Image.fromarray(np.full((6, 7, 4), 200, np.uint8)), "PNG")


@st.composite
def mutated_png(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from([SEED_PNG, SEED_PNG_ALPHA])))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "truncate", "insert", "delete"]))
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            data[i] = draw(st.integers(0, 255))
        elif op == "truncate":
            del data[i:]
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=16))
        else:
            del data[i : i + draw(st.integers(1, 16))]
    return bytes(data)


@given(data=mutated_png())
@settings(
    max_examples=400,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
def test_mutated_pngs_decode_or_raise_a_lantern_error(data: bytes) -> None:
    try:
        img = decode_image(data, max_pixels=1_000_000)
    except LanternError as e:
        assert 400 <= e.status < 500 and e.code and len(e.message) > 20
        return
    assert img.mode == "RGB"
    assert img.size[0] > 0 and img.size[1] > 0
