"""One perturbation job split into chunks that several workers evaluate, then assembled.

The job's first task builds the plan and the reference scores, stores them, and hands the
sample ranges of the first round to a :class:`Splitter` (a Celery group + chord in
production). Each chunk task evaluates its range and stores its scores; the chord's
callback concatenates them in order and either assembles the attribution or, for adaptive
plans (occlusion's drill-down), stores the refined plan and starts the next round.
Sample ``i`` depends only on the plan and ``i``, so the map is the same, bit for bit, as
one chunk's. Cancel is honoured between forward batches of every chunk; a chunk whose
worker dies is redelivered (acks late) and overwrites its own scores idempotently.
"""

from __future__ import annotations

import itertools
import logging
import time
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from api_schemas.jobs import JobState
from engine.errors import BackendUnavailable, Cancelled, LanternError, internal_error
from engine.explain import finish
from engine.methods.base import ScaledProgress
from engine.methods.perturbation import EvalStats, References, dump_plan, load_plan
from engine.objectives import Objective
from engine.quality.metrics import MetricsRequest
from jobs.leases import Heartbeat, LeaseLost, new_token
from jobs.runner import JobProgress, Prepared, Run, complete, prepare, resolved_objective
from jobs.runtime import Runtime
from jobs.store import JobRecord
from lantern import logs

log = logging.getLogger("lantern.split")

Ranges = list[tuple[int, int]]


class Splitter(Protocol):
    """Hands a split job's work to workers: a round's chunks, and the assembly."""

    def submit_round(self, job_id: str, ranges: Ranges) -> None: ...
    def submit_assemble(self, job_id: str) -> None: ...


def _item(job: Prepared) -> Any:
    if job.item is None:
        raise LanternError("A perturbation job needs an input; submit it with one.")
    return job.item


def ranges(start: int, stop: int, chunk: int) -> Ranges:
    return [(a, min(stop, a + chunk)) for a in range(start, stop, chunk)]


def start_split(
    rt: Runtime,
    job: Prepared,
    objective: Objective,
    logits: NDArray[np.float32] | None,
    splitter: Splitter,
) -> None:
    """Build the job's plan (once), score its references, store both and hand the sample
    ranges of the first round to ``splitter``."""
    builder = job.spec.plan
    assert builder is not None
    rec = job.rec
    plan = builder.build_plan(job.model, _item(job), objective, job.params)
    refs = builder.references(job.model, _item(job), objective, job.params, plan)
    rt.jobs.put_plan(rec.id, 0, dump_plan(plan))
    state = {
        "round": 0,
        "rounds": [plan.n_samples],
        "expected": builder.expected_samples(plan),
        "refs": [refs.f_x, refs.f_baseline, refs.forward_passes + (0 if logits is None else 1)],
        "chunk": rt.settings.split_chunk_samples,
        "round_chunks": len(ranges(0, plan.n_samples, rt.settings.split_chunk_samples)),
        "attempt": job.rec.attempts,
        # the output on the input, when resolving the objective ran it (for the target score)
        "logits": None if logits is None else np.asarray(logits, np.float64).ravel().tolist(),
    }
    rt.jobs.update_job(rec.id, split=state)
    splitter.submit_round(rec.id, ranges(0, plan.n_samples, rt.settings.split_chunk_samples))
    log.info("job %s split: %d samples in chunks of %d", rec.id, plan.n_samples, state["chunk"])


def run_chunk(
    rt: Runtime, job_id: str, start: int, stop: int, splitter: Splitter | None = None
) -> str:
    """Evaluate samples [start, stop) of the job's current plan under the chunk's lease and
    store their scores; the chunk that completes its round hands the job to the assembly."""
    logs.job_id.set(job_id)
    rec = rt.jobs.get_job(job_id)
    state = rt.jobs.split_state(job_id)
    if rec is None or state is None or rec.state != JobState.running.value:
        return "skipped"
    lease = rt.jobs.lease_key(job_id, f"c{start}")
    token = new_token()
    if not rt.jobs.acquire(lease, token, rt.settings.lease_s):
        return "leased"
    try:
        with Heartbeat(rt.jobs, lease, token, rt.settings.lease_s) as hb:
            completed = _chunk(rt, rec, state, start, stop, hb)
    except BackendUnavailable:
        return "store_unavailable"
    if completed and splitter is not None:
        rt.jobs.update_job(job_id, dispatched_at=time.time())  # the reconciler waits a lease
        splitter.submit_assemble(job_id)
    return "done"


def _chunk(
    rt: Runtime, rec: JobRecord, state: dict[str, Any], start: int, stop: int, hb: Heartbeat
) -> bool:
    job_id = rec.id
    try:
        job = prepare(rt, rec)
        builder = job.spec.plan
        assert builder is not None
        objective, _ = resolved_objective(rt, job)
        plan = load_plan(rt.jobs.get_plan(job_id, state["round"]) or b"")
        stats = EvalStats()
        expected = max(int(state["expected"]), 1)

        def progress(fraction: float) -> None:
            hb.check()
            if rt.jobs.get_state(job_id) == JobState.cancelled.value:
                raise Cancelled()

        scores = builder.evaluate(
            job.model, _item(job), objective, job.params, plan, start, stop, progress, stats
        )
    except (Cancelled, LeaseLost):
        return False
    except LanternError as e:
        rt.jobs.end_job(rec, state=JobState.failed.value, error=e.to_dict(),
                        finished_at=time.time())
        return False
    except Exception as e:
        log.exception("chunk %s[%d:%d] failed", job_id, start, stop)
        rt.jobs.end_job(rec, state=JobState.failed.value, error=internal_error(e),
                        finished_at=time.time())
        return False
    hb.check()
    completed = rt.jobs.put_chunk(job_id, int(state["round"]), start, scores,
                                  stats.forward_passes)
    finished = sum(b - a for a, b in _all(state) if rt.jobs.chunk_done(job_id, a))
    if rt.jobs.get_state(job_id) == JobState.running.value:
        rt.jobs.update_job(job_id, progress=round(min(0.99, finished / expected), 4))
    return completed


def pending_chunks(rt: Runtime, job_id: str) -> Ranges:
    """The current round's chunks with no scores yet (for the reconciler)."""
    state = rt.jobs.split_state(job_id)
    if state is None:
        return []
    n = int(state["rounds"][-1])
    first = int(state["rounds"][-2]) if len(state["rounds"]) > 1 else 0
    return [(a, b) for a, b in ranges(first, n, int(state["chunk"]))
            if not rt.jobs.chunk_done(job_id, a)]


def finish_round(rt: Runtime, job_id: str, splitter: Splitter) -> str:
    """After a round's last chunk: assemble, or refine and start the next round — under
    the job's lease, as a new attempt whose writes are fenced."""
    logs.job_id.set(job_id)
    rec = rt.jobs.get_job(job_id)
    if rec is None or rt.jobs.split_state(job_id) is None:
        return "missing"
    if rec.state != JobState.running.value:
        return rec.state
    token = new_token()
    lease = rt.jobs.lease_key(job_id)
    if not rt.jobs.acquire(lease, token, rt.settings.lease_s):
        return "leased"
    try:
        with Heartbeat(rt.jobs, lease, token, rt.settings.lease_s) as hb:
            run = Run(token, rt.jobs.start_attempt(job_id, token), hb)
            return _finish_round(rt, rec, run, splitter)
    except BackendUnavailable:
        return "store_unavailable"


def _finish_round(rt: Runtime, rec: JobRecord, run: Run, splitter: Splitter) -> str:
    job_id = rec.id
    state = rt.jobs.split_state(job_id)
    assert state is not None
    rec.attempts = run.attempt
    try:
        job = prepare(rt, rec)
        builder = job.spec.plan
        assert builder is not None
        objective, _ = resolved_objective(rt, job)
        n = int(state["rounds"][-1])
        parts: list[NDArray[np.float64]] = []
        for a, _b in _all(state):
            chunk = rt.jobs.get_chunk(job_id, a)
            if chunk is None:
                return "running"  # a chunk is still out: its own completion assembles
            parts.append(np.asarray(chunk, np.float64))
        scores = np.concatenate(parts)
        plan = load_plan(rt.jobs.get_plan(job_id, state["round"]) or b"")
        f_x, f_b, ref_passes = state["refs"]
        refs = References(f_x=f_x, f_baseline=f_b, forward_passes=int(ref_passes))
        item = _item(job)
        nxt = builder.refine(job.model, item, objective, job.params, plan, scores, refs)
        if nxt is not None:
            new = ranges(n, nxt.n_samples, int(state["chunk"]))
            state["round"] += 1
            state["rounds"].append(nxt.n_samples)
            state["round_chunks"] = len(new)
            rt.jobs.put_plan(job_id, state["round"], dump_plan(nxt))
            if not rt.jobs.fenced_update(job_id, run.token, run.attempt, split=state):
                return "superseded"
            splitter.submit_round(job_id, new)
            return "running"
        passes = rt.jobs.chunk_passes(job_id) + int(ref_passes)
        # a long assembly (an embedding's fit) honours cancel and the lease; the chunks
        # already brought the job's progress to 0.99
        progress = ScaledProgress(JobProgress(rt, job_id, run, rec.time_limit_s), 0.99, 0.01)
        result = builder.assemble(job.model, item, objective, job.params, plan, scores, refs,
                                  passes, progress)
        metrics = MetricsRequest.model_validate(rec.metrics) if rec.metrics else None
        logits = state.get("logits")
        explanation = finish(
            job.model, job.spec, item, objective, job.params, result,
            None if logits is None else np.asarray(logits, np.float32)[None],
            lambda f: run.heartbeat.check(), metrics,
        )
    except LeaseLost:
        return "superseded"
    except Cancelled:
        return JobState.cancelled.value
    except LanternError as e:
        rt.jobs.fenced_end(rec, run.token, run.attempt, state=JobState.failed.value,
                           error=e.to_dict(), finished_at=time.time())
        return JobState.failed.value
    return complete(rt, rec, explanation, run)


def _all(state: dict[str, Any]) -> Ranges:
    bounds = [0, *state["rounds"]]
    out: Ranges = []
    for a0, b0 in itertools.pairwise(bounds):
        out.extend(ranges(a0, b0, int(state["chunk"])))
    return out
