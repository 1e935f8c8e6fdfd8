"""Word attributions (an AttributionMap with axes ``("word",)``) as highlighted text: HTML
(``?format=html``: each word a span, its background the weight's sign and size — blue
raises the target's score, red lowers it — and the weight in its title) and PNG (the
same, drawn with Pillow, wrapped at 760 pixels). The words are the map's
``feature_names``, in the order of the text."""

from __future__ import annotations

from html import escape

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFont

from engine.artifacts import AttributionMap
from engine.errors import InvalidFormat
from engine.render.heatmap import encode_png
from engine.render.registry import RenderContext, renderer

POSITIVE = (31, 119, 180)  # blue: the word raises the score
NEGATIVE = (214, 39, 40)  # red: it lowers it
WIDTH, PAD, LINE, FONT_SIZE = 760, 12, 26, 16


def is_words(artifact: AttributionMap) -> bool:
    return tuple(artifact.axes_) == ("word",)


def _words(artifact: AttributionMap) -> tuple[list[str], NDArray[np.float64]]:
    if not is_words(artifact):
        raise InvalidFormat(
            f"Attribution {artifact.name!r} has axes {artifact.axes}; highlighted text needs "
            "(word,). Ask for png, json or npy.",
            details={"artifact": artifact.name, "axes": artifact.axes},
        )
    values = np.nan_to_num(np.asarray(artifact.values, np.float64).reshape(-1))
    names = artifact.feature_names or [str(i) for i in range(values.size)]
    return list(names), values


def _strength(values: NDArray[np.float64]) -> NDArray[np.float64]:
    m = float(np.abs(values).max(initial=0.0))
    out: NDArray[np.float64] = np.abs(values) / m if m > 0 else np.zeros_like(values)
    return out


def _rgb(value: float, strength: float) -> tuple[int, int, int]:
    base = POSITIVE if value >= 0 else NEGATIVE
    a = 0.85 * strength
    return (
        round(255 + (base[0] - 255) * a),
        round(255 + (base[1] - 255) * a),
        round(255 + (base[2] - 255) * a),
    )


def words_html(words: list[str], values: NDArray[np.float64]) -> str:
    """A standalone HTML fragment: the words as highlighted spans."""
    strength = _strength(values)
    spans = []
    for i, (word, v) in enumerate(zip(words, values, strict=True)):
        r, g, b = _rgb(float(v), float(strength[i]))
        spans.append(
            f'<span class="lantern-word" data-index="{i}" data-weight="{float(v):.6g}" '
            f'title="{escape(word)}: {float(v):+.4g}" '
            f'style="background: rgb({r}, {g}, {b}); padding: 1px 3px; border-radius: 3px">'
            f"{escape(word)}</span>"
        )
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>Word attributions</title>'
        "</head><body>"
        '<p class="lantern-text" style="font: 16px/1.9 sans-serif; max-width: 60em">'
        + " ".join(spans)
        + "</p></body></html>"
    )


@renderer("attribution", "html", axes=lambda axes: axes == ("word",))
def attribution_html(artifact: AttributionMap, ctx: RenderContext) -> bytes:
    words, values = _words(artifact)
    return words_html(words, values).encode("utf-8")


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the bitmap font
        return ImageFont.load_default()


def words_png(artifact: AttributionMap, ctx: RenderContext) -> bytes:
    """The highlighted words drawn as a picture, lines wrapped."""
    words, values = _words(artifact)
    strength = _strength(values)
    font = _font(FONT_SIZE)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    space = probe.textlength(" ", font=font)
    boxes: list[tuple[float, int, float]] = []  # x, line, width
    x, line = float(PAD), 0
    for word in words:
        w = probe.textlength(word, font=font) + 6
        if x + w > WIDTH - PAD and x > PAD:
            x, line = float(PAD), line + 1
        boxes.append((x, line, w))
        x += w + space
    height = PAD * 2 + LINE * (line + 1)
    img = Image.new("RGB", (WIDTH, height), "white")
    draw = ImageDraw.Draw(img)
    for i, (word, (bx, bl, bw)) in enumerate(zip(words, boxes, strict=True)):
        y = PAD + bl * LINE
        draw.rectangle(
            (bx, y, bx + bw, y + LINE - 4), fill=_rgb(float(values[i]), float(strength[i]))
        )
        draw.text((bx + 3, y + 2), word, fill=(0, 0, 0), font=font)
    return encode_png(img)
