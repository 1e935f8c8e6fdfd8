"""Celery tasks: thin shells over jobs.runner and jobs.split. Each process builds its
Runtime lazily, after the fork, so ONNX Runtime sessions are never shared across processes."""

from __future__ import annotations

from celery import chord
from celery.exceptions import SoftTimeLimitExceeded

from jobs.runner import run_job
from jobs.runtime import Runtime
from jobs.split import Ranges, finish_round, run_chunk
from lantern.settings import Settings
from workers.app import app

_runtime: Runtime | None = None


def runtime() -> Runtime:
    global _runtime
    if _runtime is None:
        _runtime = Runtime(Settings())
    return _runtime


class CelerySplitter:
    """A round of chunks as a group, with the assembly as the chord's callback."""

    def submit_round(self, job_id: str, ranges: Ranges) -> None:
        header = [chunk_task.si(job_id, a, b) for a, b in ranges]
        chord(header)(assemble_task.si(job_id))


@app.task(name="lantern.explain")  # type: ignore[untyped-decorator]
def explain_task(job_id: str) -> str:
    return run_job(runtime(), job_id, CelerySplitter(), (SoftTimeLimitExceeded,))


@app.task(name="lantern.chunk", ignore_result=False)  # type: ignore[untyped-decorator]
def chunk_task(job_id: str, start: int, stop: int) -> int:
    run_chunk(runtime(), job_id, start, stop)
    return stop - start


@app.task(name="lantern.assemble")  # type: ignore[untyped-decorator]
def assemble_task(job_id: str) -> str:
    return finish_round(runtime(), job_id, CelerySplitter())
