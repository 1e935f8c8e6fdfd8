"""What the routers share, attached to app.state and injected with Depends."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from fastapi import Request

from jobs.dispatch import Dispatcher
from jobs.reconciler import Reconciler
from jobs.runtime import Runtime
from lantern.settings import ApiKey

T = TypeVar("T")


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
        default_factory=lambda: ThreadPoolExecutor(2, thread_name_prefix="lantern-sync")
    )

    async def in_sync_lane(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on the sync lane's threads (a sync method's whole request)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.sync_pool, functools.partial(fn, *args))


async def get_state(request: Request) -> ServiceState:
    """The service's state (a coroutine: FastAPI runs a plain function dependency on its
    thread pool, a hop per request for an attribute read)."""
    state: ServiceState = request.app.state.lantern
    return state
