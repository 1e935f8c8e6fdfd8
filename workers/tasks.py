"""Celery tasks: thin shells over jobs.runner and jobs.split. Each process builds its
Runtime lazily, after the fork, so ONNX Runtime sessions are never shared across processes.

A split job's chunks are plain tasks (no chord): the chunk that completes a round queues the
assembly, and the reconciler re-queues chunks and assemblies whose workers vanished."""

from __future__ import annotations

from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import worker_ready, worker_shutdown

from jobs.presence import Presence, start_for
from jobs.runner import run_job
from jobs.runtime import Runtime
from jobs.split import Ranges, finish_round, run_chunk
from lantern.settings import Settings
from workers.app import app

_runtime: Runtime | None = None
_presence: Presence | None = None


def runtime() -> Runtime:
    global _runtime
    if _runtime is None:
        _runtime = Runtime(Settings())
    return _runtime


@worker_ready.connect  # type: ignore[untyped-decorator]
def _announce(sender: Any = None, **_: Any) -> None:
    """The worker's record (its ONNX Runtime providers, for /readyz) while it runs."""
    global _presence
    _presence = start_for(Settings(), str(getattr(sender, "hostname", None) or "worker"))


@worker_shutdown.connect  # type: ignore[untyped-decorator]
def _withdraw(**_: Any) -> None:
    if _presence is not None:
        _presence.stop()


class CelerySplitter:
    """A round of chunks as tasks, and the assembly as a task."""

    def submit_round(self, job_id: str, ranges: Ranges) -> None:
        for a, b in ranges:
            chunk_task.delay(job_id, a, b)

    def submit_assemble(self, job_id: str) -> None:
        assemble_task.delay(job_id)


@app.task(name="lantern.explain")  # type: ignore[untyped-decorator]
def explain_task(job_id: str) -> str:
    return run_job(runtime(), job_id, CelerySplitter(), (SoftTimeLimitExceeded,))


@app.task(name="lantern.chunk")  # type: ignore[untyped-decorator]
def chunk_task(job_id: str, start: int, stop: int) -> str:
    return run_chunk(runtime(), job_id, start, stop, CelerySplitter())


@app.task(name="lantern.assemble")  # type: ignore[untyped-decorator]
def assemble_task(job_id: str) -> str:
    return finish_round(runtime(), job_id, CelerySplitter())
