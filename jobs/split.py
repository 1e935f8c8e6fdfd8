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
from engine.errors import Cancelled, LanternError, internal_error
from engine.explain import finish
from engine.methods.perturbation import EvalStats, References, dump_plan, load_plan
from engine.modalities.image import ImageInput
from engine.objectives import Objective
from engine.quality.metrics import MetricsRequest
from jobs.runner import Prepared, complete, prepare, resolved_objective
from jobs.runtime import Runtime
from lantern import logs

log = logging.getLogger("lantern.split")

Ranges = list[tuple[int, int]]


class Splitter(Protocol):
    def submit_round(self, job_id: str, ranges: Ranges) -> None: ...


def _item(job: Prepared) -> ImageInput:
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
        # the output on the input, when resolving the objective ran it (for the target score)
        "logits": None if logits is None else np.asarray(logits, np.float64).ravel().tolist(),
    }
    rt.jobs.update_job(rec.id, split=state)
    splitter.submit_round(rec.id, ranges(0, plan.n_samples, rt.settings.split_chunk_samples))
    log.info("job %s split: %d samples in chunks of %d", rec.id, plan.n_samples, state["chunk"])


def run_chunk(rt: Runtime, job_id: str, start: int, stop: int) -> None:
    """Evaluate samples [start, stop) of the job's current plan and store their scores."""
    logs.job_id.set(job_id)
    rec = rt.jobs.get_job(job_id)
    state = rt.jobs.split_state(job_id)
    if rec is None or state is None or rec.state != JobState.running.value:
        return
    try:
        job = prepare(rt, rec)
        builder = job.spec.plan
        assert builder is not None
        objective, _ = resolved_objective(rt, job)
        plan = load_plan(rt.jobs.get_plan(job_id, state["round"]) or b"")
        stats = EvalStats()
        expected = max(int(state["expected"]), 1)

        def progress(fraction: float) -> None:
            if rt.jobs.get_state(job_id) == JobState.cancelled.value:
                raise Cancelled()

        scores = builder.evaluate(
            job.model, _item(job), objective, job.params, plan, start, stop, progress, stats
        )
    except Cancelled:
        return
    except LanternError as e:
        rt.jobs.update_job(
            job_id, state=JobState.failed.value, error=e.to_dict(), finished_at=time.time()
        )
        return
    except Exception as e:
        log.exception("chunk %s[%d:%d] failed", job_id, start, stop)
        rt.jobs.update_job(
            job_id, state=JobState.failed.value, error=internal_error(e), finished_at=time.time()
        )
        return
    rt.jobs.put_chunk(job_id, start, scores, stats.forward_passes)
    finished = sum(b - a for a, b in _all(state) if rt.jobs.chunk_done(job_id, a))
    if rt.jobs.get_state(job_id) == JobState.running.value:
        rt.jobs.update_job(job_id, progress=round(min(0.99, finished / expected), 4))


def finish_round(rt: Runtime, job_id: str, splitter: Splitter) -> str:
    """The chord callback: assemble, or refine and start the next round."""
    logs.job_id.set(job_id)
    rec = rt.jobs.get_job(job_id)
    state = rt.jobs.split_state(job_id)
    if rec is None or state is None:
        return "missing"
    if rec.state != JobState.running.value:
        return rec.state
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
                raise LanternError("A chunk of this job is missing its scores; submit it again.")
            parts.append(np.asarray(chunk, np.float64))
        scores = np.concatenate(parts)
        plan = load_plan(rt.jobs.get_plan(job_id, state["round"]) or b"")
        f_x, f_b, ref_passes = state["refs"]
        refs = References(f_x=f_x, f_baseline=f_b, forward_passes=int(ref_passes))
        nxt = builder.refine(job.model, _item(job), objective, job.params, plan, scores, refs)
        if nxt is not None:
            state["round"] += 1
            state["rounds"].append(nxt.n_samples)
            rt.jobs.put_plan(job_id, state["round"], dump_plan(nxt))
            rt.jobs.update_job(job_id, split=state)
            splitter.submit_round(job_id, ranges(n, nxt.n_samples, int(state["chunk"])))
            return "running"
        passes = rt.jobs.chunk_passes(job_id) + int(ref_passes)
        result = builder.assemble(
            job.model, _item(job), objective, job.params, plan, scores, refs, passes
        )
        metrics = MetricsRequest.model_validate(rec.metrics) if rec.metrics else None
        logits = state.get("logits")
        explanation = finish(
            job.model, job.spec, job.item, objective, job.params, result,
            None if logits is None else np.asarray(logits, np.float32)[None],
            lambda f: None, metrics,
        )
    except LanternError as e:
        rt.jobs.update_job(
            job_id, state=JobState.failed.value, error=e.to_dict(), finished_at=time.time()
        )
        return JobState.failed.value
    return complete(rt, rec, explanation)


def _all(state: dict[str, Any]) -> Ranges:
    bounds = [0, *state["rounds"]]
    out: Ranges = []
    for a0, b0 in itertools.pairwise(bounds):
        out.extend(ranges(a0, b0, int(state["chunk"])))
    return out
