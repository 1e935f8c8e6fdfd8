"""What the routers share, attached to app.state and injected with Depends."""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable, Hashable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from fastapi import Request

from jobs.batching import MicroBatcher
from jobs.dispatch import Dispatcher
from jobs.reconciler import Reconciler
from jobs.runtime import Runtime
from lantern.settings import ApiKey

T = TypeVar("T")
#: The sync lane's threads (the most batches running at once).
SYNC_THREADS = 2


@dataclass
class ServiceState:
    rt: Runtime
    dispatcher: Dispatcher
    ready: bool = False
    startup_error: str | None = None
    keys: dict[str, ApiKey] = field(default_factory=dict)
    #: Redis mode: repairs jobs whose state and queue disagree (None when embedded).
    reconciler: Reconciler | None = None
    #: The sync lane: cheap methods asked with ?wait run here, never behind long jobs.
    sync_pool: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(SYNC_THREADS, thread_name_prefix="lantern-sync")
    )
    #: The sync lane's micro-batchers by name (``explain``, ``predict``), made on first use.
    batchers: dict[str, MicroBatcher[Any, Any, Any]] = field(default_factory=dict)
    #: A model's best batch (its ``preferred_batch``) by name, once a batch has measured it.
    batch_limits: dict[str, int] = field(default_factory=dict)
    _batchers_lock: threading.Lock = field(default_factory=threading.Lock)

    def batcher(
        self, name: str, run_batch: Callable[[Any, list[Any]], Iterable[tuple[int, Any]]]
    ) -> MicroBatcher[Any, Any, Any] | None:
        """The sync lane's batcher ``name`` (running ``run_batch`` on the lane's threads,
        keys ``(model name, ...)`` up to that model's best batch), or None when batching is
        off (``LANTERN_SYNC_BATCH_WINDOW_MS=0``)."""
        window_ms = self.rt.settings.sync_batch_window_ms
        if window_ms <= 0:
            return None
        with self._batchers_lock:
            found = self.batchers.get(name)
            if found is None:
                found = MicroBatcher(
                    run_batch,
                    executor=self.sync_pool,
                    window_s=window_ms / 1000.0,
                    slots=SYNC_THREADS,
                    limit=self._limit,
                    name=f"lantern-batch-{name}",
                )
                self.batchers[name] = found
            return found

    def claim_limit(self, model: str) -> bool:
        """Whether this caller measures ``model``'s best batch (once: the first caller;
        meanwhile the model counts as 1, its requests taking the plain sync lane)."""
        with self._batchers_lock:
            if model in self.batch_limits:
                return False
            self.batch_limits[model] = 1
            return True

    def _limit(self, key: Hashable) -> int:
        """A key's most calls per batch: its model's best batch, 1 until a batch measured it."""
        model = key[0] if isinstance(key, tuple) else key
        return self.batch_limits.get(str(model), 1)

    async def in_batch(self, batcher: MicroBatcher[Any, Any, T], key: Hashable, item: Any) -> T:
        """``item``'s own answer from the batch it joins under ``key``."""
        return await asyncio.wrap_future(batcher.submit(key, item))

    async def in_sync_lane(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on the sync lane's threads (a sync method's whole request)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.sync_pool, functools.partial(fn, *args))


async def get_state(request: Request) -> ServiceState:
    """The service's state (a coroutine: FastAPI runs a plain function dependency on its
    thread pool, a hop per request for an attribute read)."""
    state: ServiceState = request.app.state.lantern
    return state
