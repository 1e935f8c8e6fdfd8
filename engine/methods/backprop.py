"""What the gradient and CAM methods share: seeds, channel reductions, upsampling, layers."""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from engine.errors import InvalidParams
from engine.methods.scoring import ScoreKind
from engine.models.heads import default_cam_layer
from engine.models.runtime import LoadedModel, softmax

Reduce = Literal["abs_max", "abs_sum", "signed"]


def seeds(logits: NDArray[np.float32], target: int, kind: ScoreKind) -> NDArray[np.float32]:
    """Cotangents of the logits that make a VJP the gradient of the target's score.

    logit: the one-hot of the target. probability: d p_t / d z = p_t (e_t - p).
    """
    n, classes = logits.shape
    one_hot = np.zeros((n, classes), np.float32)
    one_hot[:, target] = 1.0
    if kind == "logit":
        return one_hot
    p = softmax(logits)
    out: NDArray[np.float32] = (p[:, target : target + 1] * (one_hot - p)).astype(np.float32)
    return out


def score_of(logits: NDArray[np.float32], target: int, kind: ScoreKind) -> NDArray[np.float64]:
    if kind == "probability":
        return softmax(logits)[:, target].astype(np.float64)
    return logits[:, target].astype(np.float64)


def gradients(
    model: LoadedModel,
    x: NDArray[np.float32],
    target: int,
    kind: ScoreKind,
    wrt: str | None = None,
) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.float32] | None, int]:
    """(logits, gradient of the target's score, activation, forward passes used).

    A logit target needs one forward+backward pass per image; a probability target first
    needs the logits of each image for its seed, so one extra forward pass per image.
    """
    passes = 0
    if kind == "probability":
        logits = model.run(x)
        passes += x.shape[0]
        seed = seeds(logits, target, kind)
    else:
        seed = seeds(np.zeros((x.shape[0], len(model.labels)), np.float32), target, "logit")
    res = model.vjp(x, seed, wrt)
    passes += x.shape[0]
    return (
        np.asarray(res.logits, np.float32),
        np.asarray(res.grad, np.float32),
        None if res.activation is None else np.asarray(res.activation, np.float32),
        passes,
    )


def channel_axis(model: LoadedModel) -> int:
    return 1 if model.manifest.layout == "NCHW" else 3


def reduce_channels(
    g: NDArray[np.float32], model: LoadedModel, how: Reduce
) -> NDArray[np.float32]:
    """(1, C, H, W) or (1, H, W, C) -> (H, W)."""
    axis = channel_axis(model)
    if how == "abs_max":
        out = np.abs(g).max(axis=axis)
    elif how == "abs_sum":
        out = np.abs(g).sum(axis=axis)
    else:
        out = g.sum(axis=axis)
    return np.asarray(out[0], np.float32)


def upsample(cam: NDArray[np.float32], height: int, width: int) -> NDArray[np.float32]:
    """Bilinear upsampling of a (h, w) map to (height, width)."""
    if cam.shape == (height, width):
        return cam.astype(np.float32)
    img = Image.fromarray(np.ascontiguousarray(cam, dtype=np.float32), mode="F")
    return np.asarray(img.resize((width, height), Image.Resampling.BILINEAR), np.float32)


def resolve_layer(model: LoadedModel, layer: str | None) -> str:
    """The named layer (checked to be a spatial tensor), or the default CAM layer."""
    spatial = model.spatial_layers()
    if layer is None:
        found = default_cam_layer(model.proto(), spatial)
        if found is None:
            raise InvalidParams(
                "This model has no spatial (rank-4) layer to explain; name a `layer`.",
            )
        return found
    if layer not in spatial:
        raise InvalidParams(
            f"{layer!r} is not a spatial layer of this model. Pick one of the layers marked "
            "spatial in GET /v1/models/{model}.",
            details={"layer": layer, "spatial_layers": spatial[-20:]},
        )
    return layer


def to_chw(a: NDArray[np.float32], model: LoadedModel) -> NDArray[np.float32]:
    """A layer value (1, C, h, w) or (1, h, w, C) as (C, h, w)."""
    out: NDArray[np.float32] = (
        np.ascontiguousarray(a[0].transpose(2, 0, 1)) if model.manifest.layout == "NHWC" else a[0]
    )
    return out
