from __future__ import annotations

import pytest

from engine.models.batching import choose_batch, time_per_image


def test_choose_batch_takes_the_largest_batch_near_the_fastest() -> None:
    # ms per image: 4 is fastest, 8 is within 2% of it, 2 too but it is smaller, 16 is not
    assert choose_batch({2: 3.05, 4: 3.0, 8: 3.05, 16: 3.4}) == 8
    assert choose_batch({2: 3.05, 4: 3.0, 8: 3.1, 16: 3.4}) == 4
    assert choose_batch({2: 3.0, 4: 3.1, 8: 3.2}, tolerance=0.05) == 4
    assert choose_batch({16: 1.0}) == 16
    with pytest.raises(ValueError):
        choose_batch({})


def test_time_per_image_warms_up_then_times_at_least_32_images() -> None:
    calls: list[int] = []
    out = time_per_image(calls.append, [4, 8, 64])
    # per batch: one warm-up, then max(3, ceil(32 / b)) timed calls
    assert calls == [4] * (1 + 8) + [8] * (1 + 4) + [64] * (1 + 3)
    assert sorted(out) == [4, 8, 64] and all(t >= 0 for t in out.values())
