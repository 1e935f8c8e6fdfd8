"""``digits``: scikit-learn's ``load_digits`` (1,797 8×8 digits 0–9, shipped inside
scikit-learn) as PNGs, gray levels 0..16 stored as round(v·255/16), one folder per class
(``<label>/<index>.png``, index = the row in load_digits)."""

from __future__ import annotations

import io
from collections.abc import Iterator

from PIL import Image

from engine.datasets.builtin import BuiltinDataset, register_builtin_dataset


def files() -> Iterator[tuple[str, bytes]]:
    from engine.models.zoo.digits_cnn import digits_pixels

    images, labels = digits_pixels()
    for i, (img, y) in enumerate(zip(images, labels, strict=True)):
        buf = io.BytesIO()
        Image.fromarray(img, mode="L").save(buf, format="PNG", optimize=False)
        yield f"{int(y)}/{i:04d}.png", buf.getvalue()


register_builtin_dataset(
    BuiltinDataset(
        name="digits",
        description="scikit-learn load_digits: 1,797 8x8 grayscale digits 0-9 (UCI ML "
        "hand-written digits), one folder per class; for the built-in model digits-cnn.",
        files=files,
    )
)
