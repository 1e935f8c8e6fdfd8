"""Choosing a batch size by timing it: ONNX Runtime's time per image depends on the batch
through the caches, so Lantern measures instead of guessing."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

__all__ = ["BATCH_CANDIDATES", "choose_batch", "time_per_image"]

#: Batch sizes timed (those up to the model's ``max_batch``); below 4, Python's per-call
#: work (masks, scores) outweighs what ORT gains.
BATCH_CANDIDATES: tuple[int, ...] = (4, 8, 16, 32, 64)


def choose_batch(per_image_s: dict[int, float], tolerance: float = 0.02) -> int:
    """The largest batch whose time per image is within ``tolerance`` of the fastest: the
    timings cover ONNX Runtime only, and each call also costs Python and mask-making time
    (measured on LIME: batch 2 timed level with 4 but ran 10% slower end to end)."""
    if not per_image_s:
        raise ValueError("no timings")
    best = min(per_image_s.values())
    return max(b for b, t in per_image_s.items() if t <= best * (1.0 + tolerance))


def time_per_image(run: Callable[[int], object], batches: list[int]) -> dict[int, float]:
    """Median seconds per image of ``run(b)`` for each batch ``b``: one warm-up call, then
    at least 3 calls and 32 images."""
    out: dict[int, float] = {}
    for b in batches:
        run(b)  # warm-up: allocations, arena
        times = []
        for _ in range(max(3, -(-32 // b))):
            started = time.perf_counter()
            run(b)
            times.append(time.perf_counter() - started)
        out[b] = float(np.median(times)) / b
    return out
