from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from api_schemas.errors import ErrorBody


class JobState(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (JobState.succeeded, JobState.failed, JobState.cancelled)


class JobLinks(BaseModel):
    self: str
    result: str
    png: str
    overlay: str
    npy: str


class JobStatus(BaseModel):
    id: str
    state: JobState
    progress: float = Field(ge=0.0, le=1.0)
    model: str
    version: str
    method: str
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    timings: dict[str, float] = Field(default_factory=dict)
    model_calls: int | None = None
    error: ErrorBody | None = None
    result_summary: dict[str, Any] | None = None
    links: JobLinks
