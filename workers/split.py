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
import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from api_schemas.jobs import JobState
from engine.errors import Cancelled, LanternError, internal_error
from engine.explain import Explanation
from engine.methods.base import MethodSpec
from engine.methods.perturbation import (
    EvalStats,
    References,
    dump_plan,
    load_plan,
    plan_builder,
)
from engine.methods.registry import get_method
from engine.modalities.image import ImageInput, decode_image, prepare_image
from engine.models.runtime import LoadedModel, softmax
from engine.quality.metrics import MetricsRequest, compute_metrics
from engine.targets import resolve_target
from lantern import logs
from workers.runtime import Runtime
from workers.store import JobRecord, array_from_bytes, array_to_bytes

log = logging.getLogger("lantern.split")

Ranges = list[tuple[int, int]]


class Splitter(Protocol):
    def submit_round(self, job_id: str, ranges: Ranges) -> None: ...


@dataclass
class Loaded:
    rec: JobRecord
    spec: MethodSpec[Any]
    params: Any
    model: LoadedModel
    image: ImageInput


def _load(rt: Runtime, rec: JobRecord) -> Loaded:
    data = rt.jobs.get_input(rec.input_key)
    if data is None:
        raise LanternError("The job's input expired before it ran. Submit the request again.")
    spec = get_method(rec.method)
    params = spec.parse_params(rec.params)
    model = rt.load(rec.model, rec.version)
    image = prepare_image(decode_image(data, rt.settings.max_pixels), model.manifest)
    return Loaded(rec, spec, params, model, image)


def ranges(start: int, stop: int, chunk: int) -> Ranges:
    return [(a, min(stop, a + chunk)) for a in range(start, stop, chunk)]


def _key(rt: Runtime, kind: str, job_id: str, part: int | str = "") -> str:
    return f"{rt.jobs.prefix}:{kind}:{job_id}:{part}"


def try_split(rt: Runtime, rec: JobRecord, splitter: Splitter) -> bool:
    """Start ``rec`` as a split job if its method has a plan and enough samples."""
    builder = plan_builder(rec.method)
    if builder is None:
        return False
    job = _load(rt, rec)
    logits = job.model.scores(job.image.pixels[None])[0]
    target = resolve_target(rec.target, job.model.labels, logits)
    plan = builder.build_plan(job.model, job.image, target, job.params)
    expected = builder.expected_samples(plan)
    if expected < rt.settings.split_min_samples:
        return False
    refs = builder.references(job.model, job.image, target, job.params, plan)
    rt.jobs.kv.set(_key(rt, "plan", rec.id, 0), dump_plan(plan), rt.jobs.ttl)
    state = {
        "round": 0,
        "rounds": [plan.n_samples],
        "expected": expected,
        "target": target,
        "target_score": float(softmax(logits[None])[0, target]),
        "refs": [refs.f_x, refs.f_baseline, refs.forward_passes],
        "chunk": rt.settings.split_chunk_samples,
    }
    rt.jobs.update_job(rec.id, split=state)
    splitter.submit_round(rec.id, ranges(0, plan.n_samples, rt.settings.split_chunk_samples))
    log.info("job %s split: %d samples in chunks of %d", rec.id, plan.n_samples, state["chunk"])
    return True


def _split_state(rt: Runtime, job_id: str) -> dict[str, Any] | None:
    raw = rt.jobs.kv.hget(f"{rt.jobs.prefix}:job:{job_id}", "split")
    return None if raw is None else dict(json.loads(raw))


def run_chunk(rt: Runtime, job_id: str, start: int, stop: int) -> None:
    """Evaluate samples [start, stop) of the job's current plan and store their scores."""
    logs.job_id.set(job_id)
    rec = rt.jobs.get_job(job_id)
    state = _split_state(rt, job_id)
    if rec is None or state is None or rec.state != JobState.running.value:
        return
    builder = plan_builder(rec.method)
    assert builder is not None
    try:
        job = _load(rt, rec)
        plan = load_plan(rt.jobs.kv.get(_key(rt, "plan", job_id, state["round"])) or b"")
        stats = EvalStats()
        expected = max(int(state["expected"]), 1)

        def progress(fraction: float) -> None:
            if rt.jobs.get_state(job_id) == JobState.cancelled.value:
                raise Cancelled()

        scores = builder.evaluate(
            job.model, job.image, state["target"], job.params, plan, start, stop, progress, stats
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
    rt.jobs.kv.set(_key(rt, "chunk", job_id, start), array_to_bytes(scores), rt.jobs.ttl)
    # a redelivered chunk rewrites the same scores and is counted once
    if rt.jobs.kv.setnx(_key(rt, "done", job_id, start), b"1", rt.jobs.ttl):
        rt.jobs.kv.incr(_key(rt, "passes", job_id), rt.jobs.ttl, stats.forward_passes)
    finished = _samples_finished(rt, job_id, state)
    if rt.jobs.get_state(job_id) == JobState.running.value:
        rt.jobs.update_job(job_id, progress=round(min(0.99, finished / expected), 4))


def _samples_finished(rt: Runtime, job_id: str, state: dict[str, Any]) -> int:
    return sum(
        b - a for a, b in _all(state) if rt.jobs.kv.get(_key(rt, "done", job_id, a)) is not None
    )


def finish_round(rt: Runtime, job_id: str, splitter: Splitter) -> str:
    """The chord callback: assemble, or refine and start the next round."""
    logs.job_id.set(job_id)
    rec = rt.jobs.get_job(job_id)
    state = _split_state(rt, job_id)
    if rec is None or state is None:
        return "missing"
    if rec.state != JobState.running.value:
        return rec.state
    builder = plan_builder(rec.method)
    assert builder is not None
    try:
        job = _load(rt, rec)
        n = int(state["rounds"][-1])
        parts: list[NDArray[np.float64]] = []
        for a, _b in _all(state):
            raw = rt.jobs.kv.get(_key(rt, "chunk", job_id, a))
            if raw is None:
                raise LanternError("A chunk of this job is missing its scores; submit it again.")
            parts.append(np.asarray(array_from_bytes(raw), np.float64))
        scores = np.concatenate(parts)
        plan = load_plan(rt.jobs.kv.get(_key(rt, "plan", job_id, state["round"])) or b"")
        f_x, f_b, ref_passes = state["refs"]
        refs = References(f_x=f_x, f_baseline=f_b, forward_passes=int(ref_passes))
        nxt = builder.refine(job.model, job.image, state["target"], job.params, plan, scores, refs)
        if nxt is not None:
            state["round"] += 1
            state["rounds"].append(nxt.n_samples)
            rt.jobs.kv.set(_key(rt, "plan", job_id, state["round"]), dump_plan(nxt), rt.jobs.ttl)
            rt.jobs.update_job(job_id, split=state)
            splitter.submit_round(job_id, ranges(n, nxt.n_samples, int(state["chunk"])))
            return "running"
        passes_raw = rt.jobs.kv.get(_key(rt, "passes", job_id))
        passes = int(passes_raw or b"0") + int(ref_passes)
        attr = builder.assemble(
            job.model, job.image, state["target"], job.params, plan, scores, refs, passes
        )
    except LanternError as e:
        rt.jobs.update_job(
            job_id, state=JobState.failed.value, error=e.to_dict(), finished_at=time.time()
        )
        return JobState.failed.value
    from workers.runner import complete  # runner imports this module

    target = int(state["target"])
    result = Explanation(
        attribution=attr,
        target_index=target,
        target_label=job.model.labels[target],
        target_score=float(state["target_score"]),
        model_calls=1 + attr.model_calls,
    )
    if rec.metrics:
        result.metrics = compute_metrics(
            MetricsRequest.model_validate(rec.metrics),
            job.model,
            job.image,
            target,
            attr.values,
            job.spec,
            job.params,
        )
    return complete(rt, rec, result)


def _all(state: dict[str, Any]) -> Ranges:
    bounds = [0, *state["rounds"]]
    out: Ranges = []
    for a0, b0 in itertools.pairwise(bounds):
        out.extend(ranges(a0, b0, int(state["chunk"])))
    return out
