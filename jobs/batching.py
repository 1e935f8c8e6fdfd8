"""Micro-batching: calls for the same key that arrive close together run as one batch.

The sync lane's answers (Grad-CAM, Grad-CAM++, CAM, saliency, gradient × input, activation
maps, predict) are one forward or VJP each; an inference server runs those that arrive
together as one batch instead.
:class:`MicroBatcher` collects the calls of one key (model, method, the params that change
the computation) and hands them, as one list, to a batch function on an executor's threads
(the sync lane's pool): it sits *in front of* those threads, so a batch is never bounded by
their number.

When a group is dispatched:

* at once when nothing of this batcher is running (a lone call never waits for company);
* when it holds ``limit(key)`` calls (the model's measured best batch), or
* once its oldest call has waited ``window_s`` — in both cases only while fewer than
  ``slots`` batches run (a full lane gathers what arrives meanwhile into the next batch).

Each caller gets a future of its own result or its own exception: the batch function
yields ``(index, result or exception)`` once per call, in any order, and each caller is
answered as soon as its entry comes (a batch's first answers need not wait for its last);
an exception the batch function raises reaches every caller of that batch not answered
yet. Framework-free: threads and futures of the standard library.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from typing import Generic, TypeVar

log = logging.getLogger("lantern")

K = TypeVar("K", bound=Hashable)
I = TypeVar("I")  # noqa: E741 (an item)
R = TypeVar("R")

class BatcherClosed(RuntimeError):
    """A call submitted to, or still waiting in, a batcher that was closed."""


@dataclass
class _Call(Generic[I, R]):
    item: I
    future: Future[R]
    at: float


@dataclass
class _Group(Generic[I, R]):
    calls: list[_Call[I, R]] = field(default_factory=list)


@dataclass
class BatchStats:
    """What a batcher has done: batches run and the calls they held."""

    batches: int = 0
    calls: int = 0
    largest: int = 0


class MicroBatcher(Generic[K, I, R]):
    """Runs calls of the same key that arrive within ``window_s`` as one batch (see the
    module's docstring for when a batch leaves)."""

    def __init__(
        self,
        run_batch: Callable[[K, list[I]], Iterable[tuple[int, R | BaseException]]],
        *,
        executor: Executor,
        window_s: float,
        slots: int,
        limit: Callable[[K], int],
        name: str = "lantern-batcher",
    ) -> None:
        if window_s < 0 or slots < 1:
            raise ValueError("window_s must be >= 0 and slots >= 1")
        self._run_batch = run_batch
        self._executor = executor
        self.window_s = window_s
        self.slots = slots
        self._limit = limit
        self._name = name
        self._pending: OrderedDict[K, _Group[I, R]] = OrderedDict()
        self._busy = 0
        self._closed = False
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self.stats = BatchStats()

    def submit(self, key: K, item: I) -> Future[R]:
        """Queue ``item`` under ``key``: a future of its own result (or exception)."""
        fut: Future[R] = Future()
        with self._cond:
            if self._closed:
                raise BatcherClosed("the batcher is closed")
            self._pending.setdefault(key, _Group()).calls.append(
                _Call(item, fut, time.monotonic())
            )
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
                self._thread.start()
            self._cond.notify_all()
        return fut

    def waiting(self) -> int:
        """Calls submitted and not yet dispatched in a batch."""
        with self._cond:
            return sum(len(g.calls) for g in self._pending.values())

    def close(self) -> None:
        """Stop dispatching; calls still waiting fail with :class:`BatcherClosed` (batches
        already running finish)."""
        with self._cond:
            self._closed = True
            waiting = [c for g in self._pending.values() for c in g.calls]
            self._pending.clear()
            self._cond.notify_all()
        for call in waiting:
            if call.future.set_running_or_notify_cancel():
                call.future.set_exception(BatcherClosed("the batcher was closed"))

    # -- the dispatcher thread ------------------------------------------------------------

    def _take(self, now: float) -> tuple[K, list[_Call[I, R]]] | float | None:
        """The next batch to run, or the seconds until one may be due (None: none
        waiting, or every slot busy: a finished batch or a new call wakes the thread)."""
        if self._busy >= self.slots or not self._pending:
            return None
        wait: float | None = None
        for key, group in self._pending.items():
            limit = max(1, self._limit(key))
            due = group.calls[0].at + self.window_s
            if len(group.calls) >= limit or self._busy == 0 or now >= due:
                calls = group.calls[:limit]
                del group.calls[:limit]
                if not group.calls:
                    del self._pending[key]
                return key, calls
            wait = due - now if wait is None else min(wait, due - now)
        return wait

    def _loop(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._closed:
                        return
                    got = self._take(time.monotonic())
                    if isinstance(got, tuple):
                        break
                    self._cond.wait(got)
                key, calls = got
                self._busy += 1
            live = [c for c in calls if c.future.set_running_or_notify_cancel()]
            if not live:
                self._done()
                continue
            try:
                self._executor.submit(self._run, key, live)
            except RuntimeError as e:  # the executor was shut down
                self._done()
                for call in live:
                    call.future.set_exception(BatcherClosed(str(e)))

    def _done(self) -> None:
        with self._cond:
            self._busy -= 1
            self._cond.notify_all()

    def _run(self, key: K, calls: list[_Call[I, R]]) -> None:
        """Run this batch, then — on the same thread, no hand-off — every batch due by the
        time it ends (a busy lane goes from one batch to the next)."""
        batch: tuple[K, list[_Call[I, R]]] | None = (key, calls)
        while batch is not None:
            try:
                self._run_one(*batch)
            except BaseException:  # not an error (KeyboardInterrupt, ...): stop here
                self._done()
                raise
            with self._cond:
                self._busy -= 1
                got = None if self._closed else self._take(time.monotonic())
                batch = None
                if isinstance(got, tuple):
                    self._busy += 1
                    batch = got
                self._cond.notify_all()
            if batch is not None:
                live = [c for c in batch[1] if c.future.set_running_or_notify_cancel()]
                if not live:
                    self._done()
                    return
                batch = (batch[0], live)

    def _run_one(self, key: K, calls: list[_Call[I, R]]) -> None:
        pending = dict(enumerate(calls))
        with self._cond:
            self.stats.batches += 1
            self.stats.calls += len(calls)
            self.stats.largest = max(self.stats.largest, len(calls))
        try:
            for index, res in self._run_batch(key, [c.item for c in calls]):
                call = pending.pop(index, None)
                if call is None:
                    raise RuntimeError(f"the batch function answered item {index} twice")
                if isinstance(res, BaseException):
                    call.future.set_exception(res)
                else:
                    call.future.set_result(res)
            if pending:
                raise RuntimeError(
                    f"the batch function left {len(pending)} of {len(calls)} calls unanswered"
                )
        except BaseException as e:  # every caller not answered yet hears it
            for call in pending.values():
                call.future.set_exception(e)
            if not isinstance(e, Exception):
                raise


#: How much faster per item a batch must run than one item alone to be worth gathering:
#: where the runtime gains nothing from batching (ONNX Runtime on a few CPU cores), a batch
#: only makes its first callers wait for its last.
MIN_GAIN = 0.10


def gainful_batch(per_item_s: dict[int, float], min_gain: float = MIN_GAIN) -> int:
    """The batch to gather from measured seconds per item by batch size (1 included): the
    fastest batch when it runs at least ``min_gain`` faster per item than 1 alone, else 1
    (no batching)."""
    if 1 not in per_item_s:
        raise ValueError("the timings need batch 1")
    best = min(per_item_s, key=lambda b: (per_item_s[b], b))
    return best if per_item_s[best] <= per_item_s[1] * (1.0 - min_gain) else 1
