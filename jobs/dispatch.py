"""How the API hands a job to workers: the contract, and the in-process worker of embedded
mode. The Celery dispatcher lives in ``workers.dispatch``; the service never imports it."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from jobs.runner import run_job
from jobs.runtime import Runtime


class Dispatcher(Protocol):
    def submit(self, job_id: str, time_limit_s: float) -> None: ...
    def submit_chunk(self, job_id: str, start: int, stop: int) -> None: ...
    def submit_assemble(self, job_id: str) -> None: ...
    def pending(self) -> set[tuple[str, str, int]] | None:
        """What waits in the queue: (task, job id, chunk start or -1); None: unknown."""
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

    def submit_chunk(self, job_id: str, start: int, stop: int) -> None:
        raise NotImplementedError("embedded jobs are never split")

    def submit_assemble(self, job_id: str) -> None:
        raise NotImplementedError("embedded jobs are never split")

    def pending(self) -> set[tuple[str, str, int]] | None:
        return None

    def cancel(self, job_id: str) -> None:
        """The runner sees the cancelled state at its next progress report."""

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
