"""Celery tasks: thin shells over workers.runner. Each process builds its Runtime lazily,
after the fork, so ONNX Runtime sessions are never shared across processes."""

from __future__ import annotations

from lantern.settings import Settings
from workers.app import app
from workers.runner import run_job
from workers.runtime import Runtime

_runtime: Runtime | None = None


def runtime() -> Runtime:
    global _runtime
    if _runtime is None:
        _runtime = Runtime(Settings())
    return _runtime


@app.task(name="lantern.explain")  # type: ignore[untyped-decorator]
def explain_task(job_id: str) -> str:
    return run_job(runtime(), job_id)
