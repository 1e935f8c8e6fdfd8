from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ErrorBody(BaseModel):
    """The one body of every 4xx (and 5xx) answer."""

    code: str = Field(description="Stable machine-readable error code.", examples=["unknown_model"])
    message: str = Field(description="What went wrong and what to change.")
    details: dict[str, Any] = Field(default_factory=dict)
