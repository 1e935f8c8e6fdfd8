"""Choosing a batch size by timing it: ONNX Runtime's time per image depends on the batch
through the caches, so Lantern measures instead of guessing."""

from __future__ import annotations

import time
from collections.abc import Callable

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


def time_per_image(
    run: Callable[[int], object], batches: list[int], images: int = 32
) -> dict[int, float]:
    """Seconds per image of ``run(b)`` for each batch ``b``: one warm-up call each, then at
    least 3 calls and ``images`` images each, the batches taking turns, and the fastest call kept
    (a burst of load from elsewhere only ever adds time, and taking turns spreads it over
    the candidates instead of ruining one: a block per batch once picked 16 at 3.45 ms per
    image over 4 at 5.48, where 4 runs 10-20% faster)."""
    for b in batches:
        run(b)  # warm-up: allocations, arena
    todo = {b: max(3, -(-images // b)) for b in batches}
    best = {b: float("inf") for b in batches}
    for round_ in range(max(todo.values(), default=0)):
        for b in batches:
            if round_ < todo[b]:
                started = time.perf_counter()
                run(b)
                best[b] = min(best[b], (time.perf_counter() - started) / b)
    return best
