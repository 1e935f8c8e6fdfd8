"""The micro-batcher with real threads: who shares a batch, how long a call waits, the most
calls per batch, and whose exception reaches whom."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import pytest

from jobs.batching import BatcherClosed, MicroBatcher, gainful_batch


class Recorder:
    """A batch function that records every batch; key "block" waits for ``release``;
    item "bad" answers its own exception, key "boom" raises for the whole batch."""

    def __init__(self) -> None:
        self.batches: list[tuple[str, list[str]]] = []
        self.release = threading.Event()
        self.blocking = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, key: str, items: list[str]) -> list[tuple[int, str | BaseException]]:
        with self._lock:
            self.batches.append((key, list(items)))
        if key == "block":
            self.blocking.set()
            assert self.release.wait(10)
        if key == "boom":
            raise ValueError(f"boom {items}")
        return [
            (n, ValueError(f"bad {i}") if i == "bad" else f"{key}:{i}") for n, i in enumerate(items)
        ]

    def of(self, key: str) -> list[list[str]]:
        with self._lock:
            return [items for k, items in self.batches if k == key]


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(2) as p:
        yield p


def batcher(
    fn: Recorder, pool: ThreadPoolExecutor, window_s: float, slots: int = 2, limit: int = 16
) -> MicroBatcher[str, str, str]:
    return MicroBatcher(fn, executor=pool, window_s=window_s, slots=slots, limit=lambda k: limit)


def block(b: MicroBatcher[str, str, str], fn: Recorder) -> Future[str]:
    """A batch that holds one slot until ``fn.release`` is set."""
    fut = b.submit("block", "x")
    assert fn.blocking.wait(5)
    return fut


def test_a_lone_call_on_an_idle_batcher_runs_at_once(pool: ThreadPoolExecutor) -> None:
    fn = Recorder()
    b = batcher(fn, pool, window_s=2.0)
    t0 = time.monotonic()
    assert b.submit("k", "1").result(5) == "k:1"
    assert time.monotonic() - t0 < 1.0  # far below the 2 s window
    assert fn.of("k") == [["1"]]


def test_calls_within_the_window_share_one_batch(pool: ThreadPoolExecutor) -> None:
    """One slot of two busy: calls arriving from several threads within the window wait
    for it and then run as one batch (the batch function is called once for them)."""
    fn = Recorder()
    b = batcher(fn, pool, window_s=0.3)
    blocker = block(b, fn)
    start = threading.Barrier(6)
    futures: list[Future[str]] = []
    lock = threading.Lock()

    def call(i: int) -> None:
        start.wait()
        fut = b.submit("k", str(i))
        with lock:
            futures.append(fut)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(6)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    answers = sorted(f.result(5) for f in futures)
    waited = time.monotonic() - t0
    assert answers == [f"k:{i}" for i in range(6)]
    assert [sorted(batch) for batch in fn.of("k")] == [[str(i) for i in range(6)]]
    assert 0.25 <= waited < 2.0  # the window, not more (a slot was free all along)
    fn.release.set()
    assert blocker.result(5) == "block:x"
    assert b.stats.batches == 2 and b.stats.largest == 6


def test_a_lone_call_waits_no_longer_than_the_window(pool: ThreadPoolExecutor) -> None:
    fn = Recorder()
    b = batcher(fn, pool, window_s=0.2)
    blocker = block(b, fn)  # something runs: a new call waits for company, up to the window
    t0 = time.monotonic()
    assert b.submit("k", "1").result(5) == "k:1"
    waited = time.monotonic() - t0
    assert 0.15 <= waited < 0.2 + 0.5
    fn.release.set()
    blocker.result(5)


def test_a_full_lane_gathers_calls_up_to_the_limit(pool: ThreadPoolExecutor) -> None:
    """Every slot busy: calls gather meanwhile and leave in batches of at most the limit,
    oldest first, once the slot frees."""
    fn = Recorder()
    b = batcher(fn, pool, window_s=0.0, slots=1, limit=3)
    blocker = block(b, fn)
    futures = [b.submit("k", str(i)) for i in range(7)]
    time.sleep(0.1)
    assert fn.of("k") == []  # no slot: nothing ran yet
    fn.release.set()
    assert [f.result(5) for f in futures] == [f"k:{i}" for i in range(7)]
    assert fn.of("k") == [["0", "1", "2"], ["3", "4", "5"], ["6"]]
    blocker.result(5)


def test_keys_never_share_a_batch(pool: ThreadPoolExecutor) -> None:
    fn = Recorder()
    b = batcher(fn, pool, window_s=0.0, slots=1)
    blocker = block(b, fn)
    futures = [b.submit(k, str(i)) for i, k in enumerate(["a", "b", "a", "b", "a"])]
    fn.release.set()
    assert [f.result(5) for f in futures] == ["a:0", "b:1", "a:2", "b:3", "a:4"]
    assert fn.of("a") == [["0", "2", "4"]] and fn.of("b") == [["1", "3"]]
    blocker.result(5)


def test_an_items_exception_reaches_its_caller_only(pool: ThreadPoolExecutor) -> None:
    fn = Recorder()
    b = batcher(fn, pool, window_s=0.0, slots=1)
    blocker = block(b, fn)
    futures = [b.submit("k", i) for i in ["1", "bad", "3"]]
    fn.release.set()
    assert futures[0].result(5) == "k:1" and futures[2].result(5) == "k:3"
    with pytest.raises(ValueError, match="bad bad"):
        futures[1].result(5)
    assert fn.of("k") == [["1", "bad", "3"]]  # one batch
    blocker.result(5)


def test_a_batch_that_raises_fails_its_callers_and_no_others(pool: ThreadPoolExecutor) -> None:
    fn = Recorder()
    b = batcher(fn, pool, window_s=0.0, slots=1)
    blocker = block(b, fn)
    boom = [b.submit("boom", str(i)) for i in range(3)]
    fine = [b.submit("k", str(i)) for i in range(2)]
    fn.release.set()
    for f in boom:
        with pytest.raises(ValueError, match=r"boom \['0', '1', '2'\]"):
            f.result(5)
    assert [f.result(5) for f in fine] == ["k:0", "k:1"]
    blocker.result(5)


def test_a_cancelled_call_is_left_out(pool: ThreadPoolExecutor) -> None:
    fn = Recorder()
    b = batcher(fn, pool, window_s=0.0, slots=1)
    blocker = block(b, fn)
    futures = [b.submit("k", str(i)) for i in range(3)]
    assert futures[1].cancel()
    fn.release.set()
    assert futures[0].result(5) == "k:0" and futures[2].result(5) == "k:2"
    assert fn.of("k") == [["0", "2"]]
    blocker.result(5)


def test_close_fails_the_waiting_calls(pool: ThreadPoolExecutor) -> None:
    fn = Recorder()
    b = batcher(fn, pool, window_s=0.0, slots=1)
    blocker = block(b, fn)
    waiting = b.submit("k", "1")
    b.close()
    with pytest.raises(BatcherClosed):
        waiting.result(5)
    with pytest.raises(BatcherClosed):
        b.submit("k", "2")
    fn.release.set()
    assert blocker.result(5) == "block:x"  # what was running finishes


def test_bad_arguments_are_refused(pool: ThreadPoolExecutor) -> None:
    with pytest.raises(ValueError):
        batcher(Recorder(), pool, window_s=-1.0)
    with pytest.raises(ValueError):
        batcher(Recorder(), pool, window_s=0.0, slots=0)


def test_answers_leave_as_the_batch_yields_them(pool: ThreadPoolExecutor) -> None:
    """A batch function that yields its answers one by one (last first): each caller is
    answered when its entry comes, before the batch ends; one left out hears an error."""
    gate = threading.Event()
    held = threading.Event()
    release = threading.Event()

    def stepwise(key: str, items: list[str]) -> Iterator[tuple[int, str]]:
        if key == "block":
            held.set()
            assert release.wait(5)
            yield 0, "block"
            return
        yield len(items) - 1, f"last {items[-1]}"
        assert gate.wait(5)
        for n in range(len(items) - 2):
            yield n, items[n]

    b: MicroBatcher[str, str, str] = MicroBatcher(
        stepwise, executor=pool, window_s=0.0, slots=1, limit=lambda k: 8
    )
    blocker = b.submit("block", "x")
    assert held.wait(5)
    futures = [b.submit("k", str(i)) for i in range(3)]  # one batch, once the slot frees
    release.set()
    assert futures[2].result(5) == "last 2"
    assert not futures[0].done()  # the last is answered before its batch ended
    gate.set()
    assert futures[0].result(5) == "0"
    with pytest.raises(RuntimeError, match="unanswered"):
        futures[1].result(5)
    assert blocker.result(5) == "block"


def test_gainful_batch_keeps_a_batch_only_where_it_pays() -> None:
    # ONNX Runtime on two CPU cores: batches no faster per image than one alone -> 1
    assert gainful_batch({1: 6.2e-3, 4: 6.0e-3, 8: 5.7e-3, 16: 6.4e-3}) == 1
    # a GPU: batch 16 four times faster per image -> 16 (the fastest)
    assert gainful_batch({1: 4e-3, 4: 1.5e-3, 8: 1.1e-3, 16: 1.0e-3}) == 16
    assert gainful_batch({1: 10.0, 8: 8.9}) == 8  # 11% faster: at least MIN_GAIN
    assert gainful_batch({1: 10.0, 8: 9.1}) == 1  # 9%: not worth the wait
    assert gainful_batch({1: 10.0, 4: 5.0, 8: 5.0}) == 4  # a tie: the smaller batch
    with pytest.raises(ValueError):
        gainful_batch({4: 1.0})


def test_waiting_counts_the_calls_not_yet_dispatched(pool: ThreadPoolExecutor) -> None:
    """The one slot busy: new calls wait (counted) until it frees, then leave (0)."""
    fn = Recorder()
    b = batcher(fn, pool, window_s=0.0, slots=1)
    assert b.waiting() == 0
    blocker = block(b, fn)
    futures = [b.submit("k", str(i)) for i in range(3)]
    assert b.waiting() == 3
    fn.release.set()
    assert blocker.result(5) == "block:x"
    assert [f.result(5) for f in futures] == ["k:0", "k:1", "k:2"]
    assert b.waiting() == 0
    assert fn.of("k") == [["0", "1", "2"]]
