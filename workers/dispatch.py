"""How the API hands a job to workers: Celery on Redis, or a thread pool when embedded."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from workers.runner import run_job
from workers.runtime import Runtime


class Dispatcher(Protocol):
    def submit(self, job_id: str, time_limit_s: float) -> None: ...
    def cancel(self, job_id: str) -> None: ...
    def close(self) -> None: ...


class EmbeddedDispatcher:
    """The in-process worker of embedded mode."""

    def __init__(self, rt: Runtime, threads: int) -> None:
        self.rt = rt
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="lantern-job")

    def submit(self, job_id: str, time_limit_s: float) -> None:
        """The runner enforces the limit itself, between forward batches."""
        self.pool.submit(run_job, self.rt, job_id)

    def cancel(self, job_id: str) -> None:
        """The runner sees the cancelled state at its next progress report."""

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


class CeleryDispatcher:
    def __init__(self, rt: Runtime) -> None:
        from workers.app import make_celery

        self.app = make_celery(rt.settings)
        self.rt = rt

    def submit(self, job_id: str, time_limit_s: float) -> None:
        """Celery enforces a soft limit (the task fails the job) and, a minute later, a
        hard one (the process is killed; the API then reports the job as timed out)."""
        self.app.send_task(
            "lantern.explain",
            args=[job_id],
            queue=self.rt.settings.queue,
            soft_time_limit=time_limit_s + 5,
            time_limit=time_limit_s + 60,
        )

    def cancel(self, job_id: str) -> None:
        """A queued task finds the job cancelled and returns; a running one stops at its
        next progress report."""

    def close(self) -> None:
        self.app.close()
