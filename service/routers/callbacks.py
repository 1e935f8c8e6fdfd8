"""Completion callbacks in the API process: the caller's secret (GET
/v1/keys/me/callback-secret, docs/CALLBACKS.md) and the deliverer thread, started and stopped
with the app (this router's lifespan, merged into the app's where it is included)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, Depends, FastAPI
from pydantic import BaseModel, Field

from api_schemas.errors import ErrorBody
from engine.errors import CallbackNotAllowed
from jobs.callbacks import DELIVERY_HEADER, SIGNATURE_HEADER, Deliverer, owner_secret
from service.auth import AUTH_RESPONSES, Principal, require_user
from service.state import ServiceState, get_state


@asynccontextmanager
async def deliver_callbacks(app: FastAPI) -> AsyncIterator[None]:
    """The deliverer, while the app runs (when the settings allow callbacks): it delivers
    what was recorded before a restart too."""
    state: ServiceState | None = getattr(app.state, "lantern", None)
    deliverer = None
    if state is not None and state.rt.settings.callback_hosts:
        deliverer = Deliverer(state.rt.jobs, state.rt.settings)
        deliverer.start()
    try:
        yield
    finally:
        if deliverer is not None:
            deliverer.stop()


router = APIRouter(
    prefix="/v1/keys", tags=["keys"], responses=AUTH_RESPONSES, lifespan=deliver_callbacks
)


class CallbackSecret(BaseModel):
    key: str = Field(description="The API key's name (the job owner).")
    secret: str = Field(description="HMAC-SHA256 key of this key's callbacks (as text).")
    signature_header: str = SIGNATURE_HEADER
    delivery_header: str = DELIVERY_HEADER
    scheme: str = Field(
        default='t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>',
        description="How the signature header is made; see docs/CALLBACKS.md.",
    )


@router.get(
    "/me/callback-secret",
    response_model=CallbackSecret,
    summary="The secret that signs this key's completion callbacks.",
    responses={422: {"model": ErrorBody, "description": "Callbacks are off on this server."}},
)
def callback_secret(
    state: ServiceState = Depends(get_state), principal: Principal = Depends(require_user)
) -> CallbackSecret:
    settings = state.rt.settings
    if not settings.callback_hosts:
        raise CallbackNotAllowed(
            "This server sends no callbacks (LANTERN_CALLBACK_HOSTS is empty), so there is "
            "no callback secret to read.",
            details={"setting": "LANTERN_CALLBACK_HOSTS"},
        )
    return CallbackSecret(key=principal.name, secret=owner_secret(settings, principal.name))
