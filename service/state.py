"""What the routers share, attached to app.state and injected with Depends."""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import Request

from lantern.settings import ApiKey
from workers.dispatch import Dispatcher
from workers.runtime import Runtime


@dataclass
class ServiceState:
    rt: Runtime
    dispatcher: Dispatcher
    ready: bool = False
    startup_error: str | None = None
    keys: dict[str, ApiKey] = field(default_factory=dict)


def get_state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.lantern
    return state
