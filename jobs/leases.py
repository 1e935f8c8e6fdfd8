"""A run's lease and the heartbeat that renews it.

A worker takes a job's (or a chunk's) lease before it runs it — one holder at a time, so a
long job is never run twice at once, whatever Celery redelivers — and renews it every third
of the lease. A renewal that finds the lease gone or someone else's marks the run ``lost``:
the run stops at its next progress report and writes nothing (its writes are fenced).
While Redis is unreachable the heartbeat keeps trying; the lease lapses only if the outage
outlasts it, and then the reconciler re-queues the work.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid

from engine.errors import BackendUnavailable
from jobs.store import JobStore

log = logging.getLogger("lantern.lease")


def new_token() -> str:
    """Who holds a lease: host, process and a random part (unique per run)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


class LeaseLost(Exception):
    """Raised in a run whose lease was taken over: stop and write nothing."""


class Heartbeat:
    def __init__(self, store: JobStore, lease: str, token: str, lease_s: float) -> None:
        self.store = store
        self.lease = lease
        self.token = token
        self.lease_s = lease_s
        self.lost = False
        #: monotonic time until which the lease is known to be held
        self.held_until = time.monotonic() + lease_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lantern-heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        try:
            self.store.release(self.lease, self.token)
        except BackendUnavailable:
            pass  # it lapses by itself

    def _run(self) -> None:
        interval = self.lease_s / 3.0
        while not self._stop.wait(interval):
            started = time.monotonic()
            try:
                if self.store.renew(self.lease, self.token, self.lease_s):
                    self.held_until = started + self.lease_s
                else:
                    self.lost = True
                    log.warning("lease %s lost: another worker runs it now", self.lease)
                    return
            except BackendUnavailable:
                continue  # Redis restarting: keep computing, try again

    def check(self) -> None:
        """Raise LeaseLost when the run no longer holds its lease (or cannot know it does)."""
        if self.lost or time.monotonic() > self.held_until:
            self.lost = True
            raise LeaseLost()
