"""API keys and roles. Keys arrive as ``Authorization: Bearer <key>`` or ``X-API-Key``;
settings hold only their SHA-256. With no keys configured, everyone is admin."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool

from api_schemas.errors import ErrorBody
from engine.errors import Forbidden, RateLimited, Unauthorized
from service.state import ServiceState, get_state


@dataclass(frozen=True)
class Principal:
    name: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


ANONYMOUS = Principal(name="anonymous", role="admin")

AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "Missing or invalid API key."},
    403: {"model": ErrorBody, "description": "The key's role may not do this."},
    429: {"model": ErrorBody, "description": "Rate limit exceeded; see Retry-After."},
}


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _token(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip() or None
    return request.headers.get("x-api-key") or None


async def authenticate(request: Request, state: ServiceState = Depends(get_state)) -> Principal:
    keys = state.keys
    if not keys:
        return ANONYMOUS
    token = _token(request)
    if token is None:
        raise Unauthorized(
            "An API key is required. Send it as 'Authorization: Bearer <key>' or 'X-API-Key'."
        )
    key = keys.get(hash_key(token))
    if key is None:
        raise Unauthorized("The API key is not valid. Check it, or ask an admin for one.")
    principal = Principal(name=key.name, role=key.role)
    limit = state.rt.settings.rate_limit_per_minute
    if limit:
        await run_in_threadpool(_rate_limit, state, principal, limit)
    return principal


def _rate_limit(state: ServiceState, principal: Principal, limit: int) -> None:
    window = int(time.time() // 60)
    count = state.rt.jobs.count_request(principal.name, window)
    if count > limit:
        retry = max(1, 60 - int(time.time() % 60))
        raise RateLimited(
            f"Rate limit of {limit} requests per minute exceeded for this key. Retry in {retry} s.",
            retry_after=retry,
        )


async def require_user(principal: Principal = Depends(authenticate)) -> Principal:
    return principal


async def require_admin(principal: Principal = Depends(authenticate)) -> Principal:
    if not principal.is_admin:
        raise Forbidden("This needs an admin key: registering and deleting models is for admins.")
    return principal
