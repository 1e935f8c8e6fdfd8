from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ErrorBody(BaseModel):
    """The one body of every 4xx (and 5xx) answer."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "code": "unknown_model",
                    "message": "No model named 'resnet'. List models with GET /v1/models or "
                    "register one with POST /v1/models.",
                    "details": {"model": "resnet"},
                }
            ]
        }
    )

    code: str = Field(description="Stable machine-readable error code.", examples=["unknown_model"])
    message: str = Field(description="What went wrong and what to change.")
    details: dict[str, Any] = Field(default_factory=dict)


FINITE_MESSAGE = "must be a finite number"


# Error types where a non-finite input is the real problem (a NaN fails every bound).
_NUMERIC_ERRORS = {
    "finite_number",
    "float_parsing",
    "float_type",
    "int_parsing",
    "int_type",
    "int_from_float",
    "greater_than",
    "greater_than_equal",
    "less_than",
    "less_than_equal",
    "multiple_of",
}


def _non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, str):
        try:
            return not math.isfinite(float(value))
        except ValueError:
            return False
    return False


def describe_validation_errors(errors: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """pydantic's ``e.errors()`` as Lantern's ``details.errors``: ``loc`` (dotted, without
    the ``body`` prefix), ``msg`` and ``type``. A non-finite number (NaN, ±Infinity, an
    overflow) says it must be finite, whatever bound it also fails."""
    out = []
    for err in errors:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        kind = str(err.get("type", ""))
        msg = str(err.get("msg", "invalid"))
        if kind == "finite_number" or (kind in _NUMERIC_ERRORS and _non_finite(err.get("input"))):
            msg = FINITE_MESSAGE
        out.append({"loc": loc, "msg": msg, "type": kind})
    return out


def validation_message(what: str, errors: Sequence[Mapping[str, str]], hint: str = "") -> str:
    """'<what> at <loc>: <msg>. <hint>' for the first error, where ``what`` opens the
    sentence ("The request is invalid", "Invalid params for occlusion"); without a loc
    (the whole value is wrong), '<what>: <msg>. <hint>'."""
    first = errors[0] if errors else {"loc": "", "msg": "invalid"}
    where = f" at {first['loc']}" if first["loc"] else ""
    msg = str(first["msg"]).rstrip(".")
    text = f"{what}{where}: {msg}."
    return f"{text} {hint}" if hint else text
