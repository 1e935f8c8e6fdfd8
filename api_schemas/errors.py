from __future__ import annotations

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
