"""Errors to HTTP, in one place.

Every 4xx or 5xx answer has the body ``{code, message, details}``; under ``/v2/`` (the Open
Inference Protocol's routes) it also has the protocol's ``error`` (the message).
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from engine.errors import LanternError

log = logging.getLogger("lantern.api")


def error_response(
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    request: Request | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message, "details": details or {}}
    if request is not None and (request.url.path + "/").startswith("/v2/"):
        body = {"error": message, **body}  # the Open Inference Protocol's error body
    return JSONResponse(body, status_code=status, headers=headers)


def _loc(loc: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(str(p) for p in loc if p not in ("body",)) or "body"


async def _lantern_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, LanternError)
    return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers,
                          request)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": _loc(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": e.get("type", "")}
        for e in exc.errors()
    ]
    first = errors[0] if errors else {"loc": "body", "msg": "invalid request"}
    return error_response(
        422,
        "validation_error",
        f"The request is invalid at {first['loc']}: {first['msg']}. "
        "Fix that field (see the OpenAPI schema at /docs).",
        {"errors": errors},
        request=request,
    )


_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    message = str(exc.detail) if exc.detail else code.replace("_", " ")
    if exc.status_code == 404 and message == "Not Found":
        message = f"No route {request.method} {request.url.path}. See /docs for the API."
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}. See /docs."
    return error_response(exc.status_code, code, message, headers=getattr(exc, "headers", None),
                          request=request)


async def _redis_down(request: Request, exc: Exception) -> JSONResponse:
    log.warning("redis unavailable: %s", exc)
    return error_response(
        503,
        "backend_unavailable",
        "The job backend (Redis) is unavailable. Retry in a few seconds.",
        headers={"Retry-After": "5"},
        request=request,
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(
        500,
        "internal_error",
        "Lantern failed on this request; this is a bug, please report it.",
        {"type": type(exc).__name__},
        request=request,
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(LanternError, _lantern_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(redis.ConnectionError, _redis_down)
    app.add_exception_handler(redis.TimeoutError, _redis_down)
    app.add_exception_handler(Exception, _unexpected)
