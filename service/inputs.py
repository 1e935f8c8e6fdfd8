"""Reading a request body that is JSON (base64 image) or multipart (file + fields)."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile

from engine.errors import InvalidInput, LanternError, PayloadTooLarge

MULTIPART = "multipart/form-data"
M = TypeVar("M", bound=BaseModel)


def decode_base64_image(data: str, max_bytes: int) -> bytes:
    if len(data) > max_bytes * 4 // 3 + 16:
        raise PayloadTooLarge(
            f"The image is larger than the limit of {max_bytes} bytes. Send a smaller file.",
            details={"limit": max_bytes},
        )
    if data.startswith("data:") and "," in data:
        data = data.split(",", 1)[1]
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(
            "The image field is not valid base64. Encode the file's bytes with standard "
            "base64 (RFC 4648).",
            details={"field": "image"},
        ) from None
    return raw


async def read_body(request: Request) -> tuple[dict[str, Any], bytes | None]:
    """(fields, file bytes or None). JSON bodies give (object, None)."""
    ctype = request.headers.get("content-type", "")
    if ctype.startswith(MULTIPART):
        try:
            form = await request.form(max_files=2, max_fields=32)
        except PayloadTooLarge:
            raise
        except Exception:
            raise InvalidInput(
                "The multipart body could not be parsed. Send multipart/form-data with a "
                "'file' part and text fields.",
            ) from None
        fields: dict[str, Any] = {}
        file_bytes: bytes | None = None
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                if key in ("file", "image"):
                    file_bytes = await value.read()
            else:
                fields[key] = value
        return fields, file_bytes
    if ctype and not ctype.startswith("application/json"):
        raise InvalidInput(
            f"Unsupported content type {ctype!r}. Send application/json or multipart/form-data.",
            details={"content_type": ctype},
        )
    body = await request.body()
    try:
        obj = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InvalidInput("The body is not valid JSON. Send a JSON object.") from None
    if not isinstance(obj, dict):
        raise InvalidInput("The body must be a JSON object.")
    return obj, None


def parse_json_field(fields: dict[str, Any], name: str) -> None:
    """In multipart bodies structured fields arrive as JSON strings; parse them in place."""
    raw = fields.get(name)
    if isinstance(raw, str):
        try:
            fields[name] = json.loads(raw)
        except json.JSONDecodeError:
            raise InvalidInput(
                f'The field {name!r} must be JSON (for example {{}} or ["values"]).',
                details={"field": name},
            ) from None


def validation_error(
    e: ValidationError, what: str, hint: str, error_cls: type[LanternError] = InvalidInput
) -> LanternError:
    """A pydantic ValidationError as Lantern's typed error: the first problem's place and
    message, every problem in ``details.errors`` (the one place this body is written)."""
    errors = []
    for err in e.errors():
        msg = str(err["msg"])
        if err.get("type") == "finite_number":
            msg = "must be a finite number (not NaN or infinity)"
        errors.append({"loc": ".".join(str(p) for p in err["loc"]), "msg": msg})
    first = errors[0] if errors else {"loc": "", "msg": "invalid"}
    return error_cls(
        f"{what}: {first['loc'] or 'body'}: {first['msg']}. {hint}".strip(),
        details={"errors": errors},
    )


def validate_as(model: type[M], data: dict[str, Any]) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise validation_error(e, "The request is invalid", "", InvalidInput) from None


class BodyLimitMiddleware:
    """Refuses bodies over ``limit`` bytes with 413, by header or by counting the stream."""

    def __init__(self, app: Any, limit: int, model_limit: int) -> None:
        self.app = app
        self.default_limit = limit
        self.model_limit = model_limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.model_limit if scope.get("path") == "/v1/models" else self.default_limit
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await self._reject(send, limit)
            return
        seen = 0

        async def counting_receive() -> Any:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise PayloadTooLarge(
                        f"The request body exceeds {limit} bytes. Send a smaller file.",
                        details={"limit": limit},
                    )
            return message

        await self.app(scope, counting_receive, send)

    async def _reject(self, send: Any, limit: int) -> None:
        body = json.dumps(
            {
                "code": "payload_too_large",
                "message": f"The request body exceeds {limit} bytes. Send a smaller file.",
                "details": {"limit": limit},
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
