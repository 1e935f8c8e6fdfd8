"""Reading a request body that is JSON (base64 image) or multipart (file + fields)."""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from dataclasses import dataclass
from typing import Any, TypeVar, overload

import numpy as np
import orjson
from fastapi import Request
from pydantic import BaseModel, TypeAdapter, ValidationError
from starlette.datastructures import UploadFile

from api_schemas.errors import FINITE_MESSAGE, describe_validation_errors, validation_message
from engine.errors import InvalidInput, LanternError, PayloadTooLarge

MULTIPART = "multipart/form-data"
M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")
E = TypeVar("E", bound=LanternError)

MAX_JSON_DEPTH = 64
"""The deepest nesting of arrays and objects a JSON body or field may have."""

FILE_FIELDS = ("file", "image")


# -- pydantic's errors as Lantern's ------------------------------------------------------------


@overload
def validation_error(e: ValidationError, what: str, hint: str = "") -> InvalidInput: ...


@overload
def validation_error(e: ValidationError, what: str, hint: str, error_cls: type[E]) -> E: ...


@overload
def validation_error(e: ValidationError, what: str, hint: str = "", *, error_cls: type[E]) -> E: ...


def validation_error(
    e: ValidationError,
    what: str,
    hint: str = "",
    error_cls: type[LanternError] = InvalidInput,
) -> LanternError:
    """The one translation of a pydantic ValidationError into Lantern's error: an
    ``error_cls`` whose message is '<what> at <loc>: <msg>. <hint>' for the first error
    (``what`` opens the sentence: "The request is invalid", "Invalid params for
    occlusion"), with every error in ``details.errors`` as {loc, msg, type}. A NaN,
    ±Infinity or overflowing number says it "must be a finite number" (pydantic's
    finite_number, or any bound a non-finite input fails). Raise it ``from None``."""
    errors = describe_validation_errors(e.errors())
    return error_cls(validation_message(what, errors, hint), details={"errors": errors})


# -- JSON: depth and finite numbers, checked before and while parsing --------------------------

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def json_depth_exceeds(raw: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether arrays and objects in this JSON text nest deeper than ``limit``, brackets
    inside strings not counted — found without parsing (parsing that deep is what fails)."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    outside = _STRING.sub(b"", raw)
    quote = outside.find(b'"')
    if quote >= 0:  # an unterminated string: what follows is inside it (and json.loads says so)
        outside = outside[:quote]
    brackets = outside.translate(None, _NOT_BRACKETS)
    if len(brackets) <= limit:
        return False
    steps = np.frombuffer(brackets, np.uint8)
    delta = np.where((steps == ord("[")) | (steps == ord("{")), 1, -1).astype(np.int32)
    return int(np.cumsum(delta).max()) > limit


class _NonFinite(float):
    """A NaN, ±Infinity or overflowing number in JSON text, found again after parsing."""


def _non_finite_path(obj: Any, path: list[str]) -> list[str] | None:
    if isinstance(obj, _NonFinite):
        return path
    if isinstance(obj, dict):
        items: Any = obj.items()
    elif isinstance(obj, list):
        items = enumerate(obj)
    else:
        return None
    for key, value in items:
        found = _non_finite_path(value, [*path, str(key)])
        if found is not None:
            return found
    return None


def loads_json(raw: bytes | str, what: str) -> Any:
    """Parse JSON a caller sent, as Lantern's errors (code invalid_input) when it is
    wrong: not JSON, nested deeper than MAX_JSON_DEPTH, or holding a number that is not
    finite (the NaN/Infinity literals Python writes, or one that overflows a double).
    ``what`` names the value in messages: "body", or the field's name."""
    data = raw.encode() if isinstance(raw, str) else raw
    if json_depth_exceeds(data):
        raise InvalidInput(
            f"The JSON in {what} nests arrays and objects more than {MAX_JSON_DEPTH} levels "
            f"deep; at most {MAX_JSON_DEPTH} levels are allowed.",
            details={"field": what, "max_depth": MAX_JSON_DEPTH, "reason": "too_deep"},
        )
    seen: list[str] = []

    def number(text: str) -> float:
        value = float(text)
        if math.isfinite(value):
            return value
        seen.append(text)
        return _NonFinite(value)

    try:
        obj = json.loads(data, parse_float=number, parse_constant=number)
    except RecursionError:  # json_depth_exceeds guards this; never a 500 regardless
        raise InvalidInput(
            f"The JSON in {what} nests too deep; at most {MAX_JSON_DEPTH} levels are allowed.",
            details={"field": what, "max_depth": MAX_JSON_DEPTH, "reason": "too_deep"},
        ) from None
    except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError, and over-long integers
        raise InvalidInput(
            f"The {what} is not valid JSON ({str(e)[:120]}). Send valid JSON.",
            details={"field": what},
        ) from None
    if seen:
        path = _non_finite_path(obj, [] if what == "body" else [what])
        field = ".".join(path) if path else what
        raise InvalidInput(
            f"The number {seen[0]} at {field} {FINITE_MESSAGE}: NaN, Infinity and numbers "
            "beyond ±1.8e308 are refused. Send a finite JSON number.",
            details={"field": field, "reason": "non_finite_number"},
        )
    return obj


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


@dataclass(frozen=True)
class FilePart:
    """A file part of a multipart body other than the input file (e.g. a training sample)."""

    filename: str | None
    data: bytes


async def read_body(
    request: Request, extra_files: tuple[str, ...] = ()
) -> tuple[dict[str, Any], bytes | None]:
    """(fields, file bytes or None). JSON bodies give (object, None). File parts named in
    ``extra_files`` come back in the fields as :class:`FilePart`; other file parts are
    ignored."""
    ctype = request.headers.get("content-type", "")
    if ctype.startswith(MULTIPART):
        try:
            form = await request.form(max_files=2 + len(extra_files), max_fields=32)
        except PayloadTooLarge:
            raise
        except Exception:
            raise InvalidInput(
                "The multipart body could not be parsed. Send multipart/form-data with a "
                "'file' part and text fields.",
            ) from None
        fields: dict[str, Any] = {}
        file_bytes: bytes | None = None
        file_field: str | None = None
        seen: set[str] = set()
        for key, value in form.multi_items():
            if key in seen or (key in FILE_FIELDS and file_field is not None):
                other = f"'{file_field}'" if key in FILE_FIELDS else f"'{key}'"
                raise InvalidInput(
                    f"The multipart body has more than one {other} part"
                    + (f" ('{key}' and {other})" if other != f"'{key}'" else "")
                    + ". Send each field once, and one file.",
                    details={"field": key},
                )
            seen.add(key)
            if isinstance(value, UploadFile):
                if key in FILE_FIELDS:
                    file_bytes = await value.read()
                    file_field = key
                elif key in extra_files:
                    fields[key] = FilePart(value.filename, await value.read())
            else:
                fields[key] = value
        return fields, file_bytes
    if ctype and not ctype.startswith("application/json"):
        raise InvalidInput(
            f"Unsupported content type {ctype!r}. Send application/json or multipart/form-data.",
            details={"content_type": ctype},
        )
    body = await request.body()
    obj = loads_json(body, "body")
    if not isinstance(obj, dict):
        raise InvalidInput("The body must be a JSON object.")
    return obj, None


def parse_json_field(fields: dict[str, Any], name: str) -> None:
    """In multipart bodies structured fields arrive as JSON strings; parse them in place
    (depth and finite numbers checked as for JSON bodies)."""
    raw = fields.get(name)
    if isinstance(raw, str):
        try:
            fields[name] = loads_json(raw, name)
        except InvalidInput as e:
            if e.details.get("reason"):
                raise
            raise InvalidInput(
                f'The field {name!r} must be JSON (for example {{}} or ["values"]).',
                details={"field": name},
            ) from None


def validate_as(
    model: type[M],
    data: Any,
    *,
    what: str = "The request is invalid",
    hint: str = "",
    error_cls: type[LanternError] = InvalidInput,
) -> M:
    """``data`` validated as ``model``, or ``validation_error``'s error."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise validation_error(e, what, hint, error_cls) from None


def input_bytes(body: Any, limit: int) -> bytes:
    """An input body's bytes as its model's codec decodes them: an image's file (base64
    decoded), any other modality's fields as JSON (without ``modality``)."""
    from api_schemas.modalities.image import ImageInputBody

    if isinstance(body, ImageInputBody):
        return decode_base64_image(body.data, limit)
    try:
        data: bytes = orjson.dumps(body.model_dump(mode="json", exclude={"modality"}))
    except orjson.JSONEncodeError:  # an integer beyond 64 bits (JSON allows any length)
        raise InvalidInput(
            "The input holds an integer too large to be a number here (beyond 64 bits). "
            "Send it as a finite JSON number.",
            details={"field": "input", "reason": "non_finite_number"},
        ) from None
    return data


def validate_with(
    adapter: TypeAdapter[T],
    data: Any,
    *,
    what: str = "The request is invalid",
    hint: str = "",
    error_cls: type[LanternError] = InvalidInput,
) -> T:
    """``data`` validated by a type adapter (a union such as a manifest of any modality),
    or ``validation_error``'s error."""
    try:
        return adapter.validate_python(data)
    except ValidationError as e:
        raise validation_error(e, what, hint, error_cls) from None


class BodyLimitMiddleware:
    """Refuses bodies over ``limit`` bytes with 413, by header or by counting the stream."""

    def __init__(
        self, app: Any, limit: int, model_limit: int, dataset_limit: int | None = None
    ) -> None:
        self.app = app
        self.default_limit = limit
        self.model_limit = model_limit
        self.dataset_limit = model_limit if dataset_limit is None else dataset_limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path")
        limit = (
            self.model_limit if path == "/v1/models"
            else self.dataset_limit if path == "/v1/datasets" else self.default_limit
        )
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
