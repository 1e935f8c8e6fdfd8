"""Tiny PNGs decoded without Pillow's per-image machinery.

Pillow spends some 60-150 µs of Python on each image whatever its size (open, plugin,
decoder, convert); an 8x8 digit's pixels are 64 bytes. :func:`tiny_png` reads the PNGs
that are simple and small enough itself — 8-bit grayscale or RGB, not interlaced, no
transparency, at most ``MAX_PIXELS`` pixels — and gives exactly the RGB pixels Pillow's
decode and ``convert("RGB")`` give (grayscale repeated over R, G and B); anything else
(another mode or depth, a palette, transparency, a broken chunk, a short or long stream)
returns None, and the caller takes Pillow's path, which also raises the errors a broken
file deserves.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np
from numpy.typing import NDArray

SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_PIXELS = 32 * 32
_CHANNELS = {0: 1, 2: 3}  # colour type -> samples per pixel (8-bit only)
_ANCILLARY_OK = frozenset({b"gAMA", b"cHRM", b"sRGB", b"iCCP", b"pHYs", b"tEXt", b"zTXt",
                           b"iTXt", b"tIME", b"bKGD", b"sBIT"})


def tiny_png(data: bytes) -> NDArray[np.uint8] | None:
    """RGB pixels (H, W, 3) of a small simple PNG, or None (see the module doc)."""
    if len(data) < 57 or not data.startswith(SIGNATURE):
        return None
    pos = 8
    end = len(data)
    header: tuple[int, int, int, int, int, int, int] | None = None
    idat: list[bytes] = []
    seen_iend = False
    while pos + 12 <= end:
        (length,) = struct.unpack_from(">I", data, pos)
        kind = data[pos + 4 : pos + 8]
        body_end = pos + 8 + length
        if body_end + 4 > end:
            return None
        body = data[pos + 8 : body_end]
        (crc,) = struct.unpack_from(">I", data, body_end)
        if zlib.crc32(kind + body) & 0xFFFFFFFF != crc:
            return None
        pos = body_end + 4
        if kind == b"IHDR":
            if header is not None or length != 13:
                return None
            header = struct.unpack(">IIBBBBB", body)
        elif header is None:
            return None  # IHDR first
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            seen_iend = True
            break
        elif kind not in _ANCILLARY_OK:
            return None  # a palette, transparency, anything we do not read the same way
    if header is None or not seen_iend or not idat:
        return None
    w, h, depth, colour, compression, filtering, interlace = header
    if (depth != 8 or colour not in _CHANNELS or compression or filtering or interlace
            or w < 1 or h < 1 or w * h > MAX_PIXELS):
        return None
    bpp = _CHANNELS[colour]
    stride = w * bpp
    try:
        raw = zlib.decompress(b"".join(idat))
    except zlib.error:
        return None
    if len(raw) != h * (stride + 1):
        return None
    out = bytearray(h * stride)
    prev = bytearray(stride)
    for y in range(h):
        base = y * (stride + 1)
        kind_f = raw[base]
        row = bytearray(raw[base + 1 : base + 1 + stride])
        if kind_f == 0:
            pass
        elif kind_f == 1:  # Sub
            for i in range(bpp, stride):
                row[i] = (row[i] + row[i - bpp]) & 0xFF
        elif kind_f == 2:  # Up
            for i in range(stride):
                row[i] = (row[i] + prev[i]) & 0xFF
        elif kind_f == 3:  # Average
            for i in range(stride):
                left = row[i - bpp] if i >= bpp else 0
                row[i] = (row[i] + ((left + prev[i]) >> 1)) & 0xFF
        elif kind_f == 4:  # Paeth
            for i in range(stride):
                a = row[i - bpp] if i >= bpp else 0
                b = prev[i]
                c = prev[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                row[i] = (row[i] + pred) & 0xFF
        else:
            return None
        out[y * stride : (y + 1) * stride] = row
        prev = row
    pixels = np.frombuffer(bytes(out), np.uint8).reshape(h, w, bpp)
    if bpp == 1:
        return np.repeat(pixels, 3, axis=2)
    return pixels.copy()
