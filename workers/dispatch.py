"""The Celery dispatcher: the API's side of the Celery shell (wired in by ``lantern serve``)."""

from __future__ import annotations

import kombu.exceptions

from engine.errors import BackendUnavailable
from jobs.runtime import Runtime


class CeleryDispatcher:
    def __init__(self, rt: Runtime) -> None:
        from workers.app import make_celery

        self.app = make_celery(rt.settings)
        self.rt = rt

    def submit(self, job_id: str, time_limit_s: float) -> None:
        """Celery enforces a soft limit (the task fails the job) and, a minute later, a
        hard one (the process is killed; the API then reports the job as timed out)."""
        try:
            self.app.send_task(
                "lantern.explain",
                args=[job_id],
                queue=self.rt.settings.queue,
                soft_time_limit=time_limit_s + 5,
                time_limit=time_limit_s + 60,
            )
        except kombu.exceptions.OperationalError as e:
            raise BackendUnavailable(
                "The job backend (Redis) is unavailable. Retry in a few seconds."
            ) from e

    def cancel(self, job_id: str) -> None:
        """A queued task finds the job cancelled and returns; a running one stops at its
        next progress report."""

    def close(self) -> None:
        self.app.close()
