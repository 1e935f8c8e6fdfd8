"""The Celery dispatcher: the API's side of the Celery shell (wired in by ``lantern serve``)."""

from __future__ import annotations

import base64
import json
from typing import Any

import kombu.exceptions
import redis

from engine.errors import BackendUnavailable
from jobs.runtime import Runtime

#: Celery task name -> the reconciler's name for that work
TASKS = {"lantern.explain": "explain", "lantern.chunk": "chunk", "lantern.assemble": "assemble"}


def message_work(raw: bytes) -> tuple[str, str, int] | None:
    """(task, job id, chunk start or -1) of a Celery message as kombu keeps it in Redis."""
    try:
        m = json.loads(raw)
        task = TASKS.get(str(m.get("headers", {}).get("task")))
        if task is None:
            return None
        body: Any = m["body"]
        if m.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        return task, str(args[0]), int(args[1]) if task == "chunk" else -1
    except (ValueError, KeyError, IndexError, TypeError):
        return None


class CeleryDispatcher:
    def __init__(self, rt: Runtime) -> None:
        from workers.app import make_celery

        self.app = make_celery(rt.settings)
        self.rt = rt
        self._redis = redis.Redis.from_url(
            rt.settings.redis_url or "redis://127.0.0.1:6379/0", socket_timeout=10
        )

    def _send(self, name: str, args: list[Any], time_limit_s: float | None = None) -> None:
        limits = (
            {}
            if time_limit_s is None
            else {"soft_time_limit": time_limit_s + 5, "time_limit": time_limit_s + 60}
        )
        try:
            self.app.send_task(name, args=args, queue=self.rt.settings.queue, **limits)
        except kombu.exceptions.OperationalError as e:
            raise BackendUnavailable(
                "The job backend (Redis) is unavailable. Retry in a few seconds."
            ) from e

    def submit(self, job_id: str, time_limit_s: float) -> None:
        """Celery enforces a soft limit (the task fails the job) and, a minute later, a
        hard one (the process is killed; the API then reports the job as timed out)."""
        self._send("lantern.explain", [job_id], time_limit_s)

    def submit_chunk(self, job_id: str, start: int, stop: int) -> None:
        self._send("lantern.chunk", [job_id, start, stop])

    def submit_assemble(self, job_id: str) -> None:
        self._send("lantern.assemble", [job_id])

    def pending(self) -> set[tuple[str, str, int]] | None:
        """The work waiting in the queue (not the messages workers hold: those run under
        leases, and a lost worker's are exactly what the reconciler must see as missing)."""
        try:
            raw = self._redis.lrange(self.rt.settings.queue, 0, -1)
        except (redis.ConnectionError, redis.TimeoutError) as e:
            raise BackendUnavailable("The job backend (Redis) is unavailable.") from e
        return {w for w in (message_work(r) for r in raw) if w is not None}

    def cancel(self, job_id: str) -> None:
        """A queued task finds the job cancelled and returns; a running one stops at its
        next progress report."""

    def close(self) -> None:
        self.app.close()
        self._redis.close()
