"""The reconciler: finds jobs whose state and queue disagree and repairs them.

Run by the API process every ``reconcile_interval_s`` in Redis mode. For every active job:

* ``queued``, handed to the queue more than a lease ago, not running anywhere and not in
  the queue (its message lost, e.g. in the last second before a Redis crash) → queued again;
* ``running`` with no live lease (its worker's host vanished, was OOM-killed, or paused past
  its lease) and not a split in its chunk phase → a new attempt is queued; the old run, if it
  comes back, writes nothing (fenced);
* a split job: each chunk of the current round with no scores, no live lease and no message
  → queued again; a round whose chunks are all in and whose assembly is not running →
  the assembly is queued.

A message Celery still redelivers later finds the job leased or finished and does nothing;
so a job runs once at a time, and completes once.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from api_schemas.jobs import JobState
from engine.errors import BackendUnavailable
from jobs.dispatch import Dispatcher
from jobs.runtime import Runtime
from jobs.split import pending_chunks

log = logging.getLogger("lantern.reconciler")


@dataclass
class Repairs:
    requeued: list[str] = field(default_factory=list)
    chunks: list[tuple[str, int]] = field(default_factory=list)
    assembled: list[str] = field(default_factory=list)
    forgotten: list[str] = field(default_factory=list)


class Reconciler:
    def __init__(self, rt: Runtime, dispatcher: Dispatcher) -> None:
        self.rt = rt
        self.dispatcher = dispatcher
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self, only: str | None = None) -> Repairs:
        """One round over the active jobs (or over ``only``, e.g. a resubmitted one)."""
        out = Repairs()
        queued = self.dispatcher.pending()
        if queued is None:
            return out  # a dispatcher that cannot tell: nothing is known to be lost
        now = time.time()
        ids = [only] if only is not None else sorted(self.rt.jobs.active_jobs())
        for job_id in ids:
            self._repair(job_id, queued, now, out)
        return out

    def _repair(
        self, job_id: str, queued: set[tuple[str, str, int]], now: float, out: Repairs
    ) -> None:
        jobs, lease_s = self.rt.jobs, self.rt.settings.lease_s
        rec = jobs.get_job(job_id)
        if rec is None or JobState(rec.state).terminal:
            jobs.forget(job_id, rec)
            out.forgotten.append(job_id)
            return
        if jobs.leased(jobs.lease_key(job_id)):
            return  # a run holds it (a whole job, or a split's assembly)
        if ("explain", job_id, -1) in queued:
            return
        recent = rec.dispatched_at is not None and now - rec.dispatched_at < lease_s
        split = jobs.split_state(job_id)
        if rec.state == JobState.running.value and split is not None:
            if ("assemble", job_id, -1) in queued:
                return
            missing = pending_chunks(self.rt, job_id)
            for a, b in missing:
                lease = jobs.lease_key(job_id, f"c{a}")
                if not jobs.leased(lease) and ("chunk", job_id, a) not in queued:
                    self.dispatcher.submit_chunk(job_id, a, b)
                    out.chunks.append((job_id, a))
            if not missing and not recent:
                jobs.update_job(job_id, dispatched_at=now)
                self.dispatcher.submit_assemble(job_id)
                out.assembled.append(job_id)
            return
        if recent:
            return  # just handed over: its worker may not have taken the lease yet
        if rec.state == JobState.running.value:
            log.warning("job %s: running with no live lease; queued again", job_id)
        else:
            log.warning("job %s: queued with no message; queued again", job_id)
        jobs.update_job(job_id, state=JobState.queued.value, dispatched_at=now)
        self.dispatcher.submit(job_id, rec.time_limit_s)
        out.requeued.append(job_id)

    # -- the background thread ----------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="lantern-reconciler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(self.rt.settings.reconcile_interval_s):
            try:
                self.run_once()
            except BackendUnavailable:
                continue  # Redis away: try again next round
            except Exception:
                log.exception("reconciler round failed")
