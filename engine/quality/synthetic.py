"""Synthetic images with a known object box, and a tiny model that looks only at the object.

The images (64×64 by default, seeded): a red square or disc on a textured background
(noise, stripes or a checkerboard in two colours that are never red). The model,
built with ``onnx.helper``, is a "redness" detector::

    input (N, 3, H, W), pixels · 1/255
      → Conv "redness_conv" (3×3, one channel: the mean of R − (G + B)/2 over the 3×3
        neighbourhood, minus a threshold)
      → Relu "redness" (the default CAM layer: the last spatial layer before pooling)
      → GlobalAveragePool → Flatten → Gemm "head" → logits ["absent", "present"]

Background pixels have R − (G + B)/2 ≤ −20/255, far below the threshold (0.3), so the
Relu is zero outside the object and the logits depend on the object's pixels only:
every faithful explanation of "present" must point at the object.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import onnx
from numpy.typing import NDArray
from onnx import TensorProto, helper, numpy_helper

from engine.quality.pointing import Box

SIZE = 64
LABELS = ["absent", "present"]
PRESENT = 1
ABSENT = 0
THRESHOLD = 0.3
#: The Gemm's gain and the pooled redness where the two logits are equal.
GAIN = 400.0
POOL_THRESHOLD = 0.004
CAM_LAYER = "redness"

Shape = Literal["square", "disc", "random"]


def synthetic_model(size: int = SIZE) -> tuple[onnx.ModelProto, dict[str, Any]]:
    """The redness classifier for ``size``×``size`` images and its manifest (as a dict,
    valid for :class:`api_schemas.models.ModelManifest`: scale 1/255, mean 0, std 1)."""
    redness = np.asarray([1.0, -0.5, -0.5], np.float32)
    cw = np.broadcast_to(redness[:, None, None] / 9.0, (3, 3, 3)).copy()[None]  # (1, 3, 3, 3)
    cb = np.asarray([-THRESHOLD], np.float32)
    fw = np.asarray([[-GAIN], [GAIN]], np.float32)  # (classes, channels), transB=1
    fb = np.asarray([GAIN * POOL_THRESHOLD, -GAIN * POOL_THRESHOLD], np.float32)
    graph = helper.make_graph(
        [
            helper.make_node(
                "Conv",
                ["input", "cw", "cb"],
                ["redness_conv"],
                name="redness_conv",
                pads=[1, 1, 1, 1],
            ),
            helper.make_node("Relu", ["redness_conv"], [CAM_LAYER], name=CAM_LAYER),
            helper.make_node("GlobalAveragePool", [CAM_LAYER], ["pool"], name="pool"),
            helper.make_node("Flatten", ["pool"], ["flat"], name="flatten", axis=1),
            helper.make_node("Gemm", ["flat", "fw", "fb"], ["logits"], name="head", transB=1),
        ],
        "synthetic_redness",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", len(LABELS)])],
        initializer=[
            numpy_helper.from_array(cw.astype(np.float32), "cw"),
            numpy_helper.from_array(cb, "cb"),
            numpy_helper.from_array(fw, "fw"),
            numpy_helper.from_array(fb, "fb"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    manifest: dict[str, Any] = {
        "name": "synthetic-redness",
        "layout": "NCHW",
        "input_size": [size, size],
        "channel_order": "RGB",
        "scale": 1.0 / 255.0,
        "mean": [0.0, 0.0, 0.0],
        "std": [1.0, 1.0, 1.0],
        "resize": "bilinear",
        "labels": list(LABELS),
        "description": "Synthetic redness detector: 'present' when a red object is in view.",
    }
    return model, manifest


def _not_red(rgb: NDArray[np.float64], margin: float = 20.0) -> NDArray[np.float64]:
    """Clamp R so that R − (G + B)/2 ≤ −margin at every pixel."""
    out = rgb.copy()
    cap = (out[..., 1] + out[..., 2]) / 2.0 - margin
    out[..., 0] = np.minimum(out[..., 0], np.maximum(cap, 0.0))
    return out


def _background_colour(rng: np.random.Generator) -> NDArray[np.float64]:
    g, b = rng.uniform(60, 255, size=2)
    r = rng.uniform(0, max(0.0, (g + b) / 2.0 - 40.0))
    return np.asarray([r, g, b])


def _background(rng: np.random.Generator, size: int) -> NDArray[np.float64]:
    c1, c2 = _background_colour(rng), _background_colour(rng)
    kind = rng.integers(0, 3)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    if kind == 0:  # colour noise around a blend of the two colours
        t = rng.uniform(0, 1, (size, size, 1))
        img = c1 * t + c2 * (1 - t) + rng.normal(0, 18, (size, size, 3))
    elif kind == 1:  # stripes at a random angle and period
        angle = rng.uniform(0, np.pi)
        period = rng.uniform(4, 12)
        phase = np.sin(2 * np.pi * (yy * np.sin(angle) + xx * np.cos(angle)) / period)
        img = np.where((phase > 0)[..., None], c1, c2) + rng.normal(0, 6, (size, size, 3))
    else:  # checkerboard
        cell = int(rng.integers(4, 11))
        check = ((yy // cell + xx // cell) % 2).astype(bool)
        img = np.where(check[..., None], c1, c2) + rng.normal(0, 6, (size, size, 3))
    return _not_red(np.clip(img, 0, 255))


def synthetic_image(
    seed: int,
    size: int = SIZE,
    *,
    min_side: int = 14,
    max_side: int = 22,
    shape: Shape = "random",
) -> tuple[NDArray[np.uint8], Box]:
    """A (size, size, 3) uint8 image with one red object, and its box (y0, y1, x0, x1),
    half-open, the tight bounding box of the object's pixels."""
    if not 1 <= min_side <= max_side <= size:
        raise ValueError("need 1 <= min_side <= max_side <= size")
    rng = np.random.default_rng(seed)
    img = _background(rng, size)
    side = int(rng.integers(min_side, max_side + 1))
    y0 = int(rng.integers(0, size - side + 1))
    x0 = int(rng.integers(0, size - side + 1))
    kind = shape if shape != "random" else ("square", "disc")[int(rng.integers(0, 2))]
    yy, xx = np.mgrid[0:size, 0:size]
    if kind == "square":
        mask = (yy >= y0) & (yy < y0 + side) & (xx >= x0) & (xx < x0 + side)
    else:
        c = (side - 1) / 2.0
        mask = (yy - y0 - c) ** 2 + (xx - x0 - c) ** 2 <= (side / 2.0) ** 2
    red = np.asarray([rng.uniform(190, 255), rng.uniform(0, 50), rng.uniform(0, 50)])
    obj = np.clip(red + rng.normal(0, 8, (size, size, 3)), 0, 255)
    img = np.where(mask[..., None], obj, img)
    ys, xs = np.nonzero(mask)
    box: Box = (int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), box


def synthetic_dataset(
    n: int, seed: int = 0, size: int = SIZE, **kwargs: Any
) -> list[tuple[NDArray[np.uint8], Box]]:
    """``n`` images and boxes, image i from seed ``seed + i``."""
    return [synthetic_image(seed + i, size, **kwargs) for i in range(n)]
