from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

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


_JOB = "3f2a9c0e5b7d4e1f8a6c2b9d0e4f7a1c"


class JobStatus(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": _JOB,
                    "state": "running",
                    "progress": 0.42,
                    "model": "efficientnet-lite0",
                    "version": "e0886b5ab73b868b",
                    "method": "occlusion",
                    "created_at": 1795354186.17,
                    "started_at": 1795354186.18,
                    "finished_at": None,
                    "timings": {"queued_ms": 3.4},
                    "model_calls": None,
                    "error": None,
                    "result_summary": None,
                    "links": {
                        "self": f"/v1/jobs/{_JOB}",
                        "result": f"/v1/jobs/{_JOB}/result?format=json",
                        "png": f"/v1/jobs/{_JOB}/result?format=png",
                        "overlay": f"/v1/jobs/{_JOB}/result?format=overlay",
                        "npy": f"/v1/jobs/{_JOB}/result?format=npy",
                    },
                }
            ]
        }
    )

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
    preview: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Artifacts the running job has published so far (name, type, shape, "
        "links): readable at /v1/jobs/{id}/artifacts/{name} before the result.",
    )
    links: JobLinks
