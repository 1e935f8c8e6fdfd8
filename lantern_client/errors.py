"""Errors raised by the Lantern client."""

from __future__ import annotations

import json
from typing import Any

import httpx

from api_schemas.jobs import JobStatus


class LanternError(Exception):
    """Base class of the client's errors."""


class LanternAPIError(LanternError):
    """An error answered by the API: its HTTP status and the body ``{code, message, details}``.

    Also raised for a job that ended ``failed`` (the job's own error: status 422, or 500 for
    ``internal_error``) or ``cancelled`` (status 409, code ``job_cancelled``) while waiting.
    """

    def __init__(
        self, status: int, code: str, message: str, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details: dict[str, Any] = details or {}

    @classmethod
    def from_response(cls, response: httpx.Response) -> LanternAPIError:
        """Build the error from an API answer (any body: JSON error, text or nothing)."""
        try:
            body = json.loads(response.content) if response.content else None
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        if isinstance(body, dict) and isinstance(body.get("code"), str):
            details = body.get("details")
            return cls(
                response.status_code,
                body["code"],
                str(body.get("message", "")),
                details if isinstance(details, dict) else {},
            )
        text = response.text.strip()[:500] if response.content else ""
        return cls(
            response.status_code,
            "http_error",
            text or response.reason_phrase or f"HTTP {response.status_code}",
        )

    @classmethod
    def from_job(cls, status: JobStatus) -> LanternAPIError:
        """The error of a job that failed or was cancelled."""
        if status.state.value == "cancelled":
            return cls(
                409,
                "job_cancelled",
                f"The job {status.id} was cancelled before it finished.",
                {"job": status.id, "progress": status.progress},
            )
        err = status.error
        if err is None:
            return cls(500, "job_failed", f"The job {status.id} failed.", {"job": status.id})
        code = 500 if err.code == "internal_error" else 422
        return cls(code, err.code, err.message, {"job": status.id, **err.details})


class LanternTimeoutError(LanternError, TimeoutError):
    """The job did not finish in time (or ``poll=False`` and it had not finished yet).

    ``status`` is the job's last known status: poll it with ``client.job(status.id)``.
    """

    def __init__(self, message: str, status: JobStatus) -> None:
        super().__init__(message)
        self.status = status
