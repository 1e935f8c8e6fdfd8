"""Per-request observation as a plain ASGI middleware: a request id (the caller's
``X-Request-ID`` or a new one) in the logs' context and on the answer, the route's latency
and count in the metrics, one access-log line.

A plain ASGI wrapper, not Starlette's ``BaseHTTPMiddleware`` (``@app.middleware("http")``):
that one runs the app in a task of its own and streams the answer through a memory
channel, about a millisecond per request on this service's sync answers."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from lantern import logs
from service.metrics import LATENCY, REQUESTS

access = logging.getLogger("lantern.access")

Scope = dict[str, Any]
Message = dict[str, Any]


class ObserveMiddleware:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        rid = ""
        for key, value in scope.get("headers") or ():
            if key == b"x-request-id":
                rid = value.decode("latin-1")[:64]
                break
        rid = rid or uuid.uuid4().hex
        status = [500]

        async def send_observed(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
                headers = [
                    (k, v) for k, v in message.get("headers", ()) if k.lower() != b"x-request-id"
                ]
                headers.append((b"x-request-id", rid.encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        token = logs.request_id.set(rid)
        try:
            await self.app(scope, receive, send_observed)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            seconds = time.perf_counter() - start
            LATENCY.labels(path).observe(seconds)
            REQUESTS.labels(path, str(status[0])).inc()
            access.info(
                "%s %s %d",
                scope.get("method", ""),
                scope.get("path", ""),
                status[0],
                extra={"route": path, "status": status[0], "ms": round(seconds * 1e3, 2)},
            )
            logs.request_id.reset(token)
