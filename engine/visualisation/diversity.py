"""Lucid's ``diversity`` term across a batch: the mean cosine similarity of the images'
Gram matrices at a layer (channels × channels, over positions), with its exact gradient.

    D = (1/n) Σ_i Σ_{j≠i} <Ĝ_i, Ĝ_j>,   Ĝ = G / ‖G‖_F,   G_i = F_iᵀ F_i

where F_i is image i's activation as (positions × channels). A visualisation maximising
``objective - weight · D`` pushes the images of one batch apart in style.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

#: tf.nn.l2_normalize's default epsilon (on the squared norm).
EPS = 1e-10


def _positions_by_channels(t: NDArray[Any], channel_axis: int) -> NDArray[np.float64]:
    a = np.moveaxis(np.asarray(t, np.float64), channel_axis % t.ndim, -1)
    return a.reshape(a.shape[0], -1, a.shape[-1])


def diversity(t: NDArray[Any], channel_axis: int = 1) -> tuple[float, NDArray[np.float32]]:
    """(D, dD/dt) for a batch ``t`` (n, ...) of a layer's values."""
    n = t.shape[0]
    f = _positions_by_channels(t, channel_axis)  # (n, P, C)
    g = np.einsum("npc,npd->ncd", f, f)
    norms = np.sqrt(np.maximum((g * g).sum(axis=(1, 2)), EPS))  # (n,)
    gh = g / norms[:, None, None]
    total = gh.sum(axis=0)
    value = float(((gh * (total[None] - gh)).sum()) / n) if n > 1 else 0.0
    d_gh = (2.0 / n) * (total[None] - gh)
    inner = (d_gh * gh).sum(axis=(1, 2))
    d_g = (d_gh - inner[:, None, None] * gh) / norms[:, None, None]
    d_f = 2.0 * np.einsum("npc,ncd->npd", f, d_g)  # d_g is symmetric
    moved = np.moveaxis(np.asarray(t), channel_axis % t.ndim, -1).shape
    grad = np.moveaxis(d_f.reshape(moved), -1, channel_axis % t.ndim)
    return value, np.ascontiguousarray(grad, np.float32)
