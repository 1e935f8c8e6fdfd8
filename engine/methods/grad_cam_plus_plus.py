"""Grad-CAM++ (Chattopadhyay et al., 2018): pixel-wise weighted positive gradients,
in the closed form for an exponential output used by pytorch-grad-cam."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from engine.artifacts import Result
from engine.methods.base import MethodSpec, Progress
from engine.methods.cam_core import cam_batch, gradient_cam
from engine.methods.grad_cam import GradCamParams, check
from engine.methods.registry import register
from engine.modalities.image import ImageInput
from engine.models.runtime import LoadedModel
from engine.objectives import Objective


def grad_cam_plus_plus(
    model: LoadedModel,
    image: ImageInput,
    objective: Objective,
    params: GradCamParams,
    progress: Progress,
) -> Result:
    result = gradient_cam(model, image, objective, params, channel_weights)
    progress(1.0)
    return result


def grad_cam_plus_plus_batch(
    model: LoadedModel,
    images: list[ImageInput],
    objectives: list[Objective],
    params: GradCamParams,
) -> list[Result]:
    """Grad-CAM++ of several images, each for its own class, from one VJP."""
    return cam_batch(model, images, objectives, params, channel_weights)


def channel_weights(a: NDArray[np.float32], g: NDArray[np.float32]) -> NDArray[np.float32]:
    """Σ over positions of relu(g) · α, α = g² / (2 g² + Σa · g³) (0 where g = 0)."""
    g64, a64 = g.astype(np.float64), a.astype(np.float64)
    g2 = g64 * g64
    g3 = g2 * g64
    sum_a = a64.sum(axis=(1, 2), keepdims=True)
    alpha = g2 / (2.0 * g2 + sum_a * g3 + 1e-7)
    alpha = np.where(g64 != 0.0, alpha, 0.0)
    w: NDArray[np.float32] = (np.maximum(g64, 0.0) * alpha).sum(axis=(1, 2)).astype(np.float32)
    return w


SPEC = register(
    MethodSpec(
        name="grad_cam_plus_plus",
        params_model=GradCamParams,
        fn=grad_cam_plus_plus,
        description="Grad-CAM++: feature maps weighted by pixel-wise weighted positive "
        "gradients.",
        kind="cam",
        execution="sync",
        check=check,
        batch_fn=grad_cam_plus_plus_batch,
    )
)
