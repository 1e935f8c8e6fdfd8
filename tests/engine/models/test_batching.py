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


def test_time_per_image_warms_up_then_times_at_least_32_images_taking_turns() -> None:
    calls: list[int] = []
    out = time_per_image(calls.append, [4, 8, 64])
    # one warm-up each, then max(3, ceil(32 / b)) timed calls each, in turns
    assert calls == [4, 8, 64] * 4 + [4, 8] + [4] * 4
    assert sorted(out) == [4, 8, 64] and all(t >= 0 for t in out.values())


def test_time_per_image_keeps_each_batch_fastest_call(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [0.0]
    cost = {4: [8.0, 4.0, 4.4, 40.0, 4.0, 4.0, 4.0, 4.0, 4.0], 16: [32.0, 64.0, 16.0, 48.0]}

    def run(b: int) -> None:  # a fake workload that advances a fake clock
        clock[0] += cost[b].pop(0)

    import engine.models.batching as batching

    monkeypatch.setattr(batching.time, "perf_counter", lambda: clock[0])
    out = time_per_image(run, [4, 16])
    # the burst (40 for batch 4, 64 and 48 for 16) does not count: the fastest call does
    assert out == {4: 1.0, 16: 1.0}
