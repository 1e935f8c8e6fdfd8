"""Runs one explanation job: the code a Celery task and the embedded worker share."""

from __future__ import annotations

import logging
import time
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded

from api_schemas.jobs import JobState
from engine.errors import Cancelled, LanternError, TimeLimitExceeded, internal_error
from engine.explain import Explanation, explain
from engine.methods.registry import get_method
from engine.modalities.image import decode_image
from engine.quality.metrics import MetricsRequest
from lantern import logs
from workers.runtime import Runtime
from workers.split import Splitter, try_split
from workers.store import JobRecord

log = logging.getLogger("lantern.worker")

_TERMINAL = {JobState.succeeded.value, JobState.failed.value, JobState.cancelled.value}


class JobProgress:
    """Writes progress to the store at most every ``interval`` s and honours cancel."""

    def __init__(
        self, rt: Runtime, job_id: str, time_limit_s: float = 900.0, interval: float = 0.2
    ) -> None:
        self.rt = rt
        self.job_id = job_id
        self.interval = interval
        self.time_limit_s = time_limit_s
        self._deadline = time.monotonic() + time_limit_s
        self._last = 0.0

    def __call__(self, fraction: float) -> None:
        now = time.monotonic()
        if now > self._deadline and fraction < 1.0:
            raise TimeLimitExceeded(
                f"The job ran past its time limit of {self.time_limit_s:.0f} s. "
                "Ask for fewer samples or steps.",
                details={"time_limit_s": self.time_limit_s},
            )
        if now - self._last < self.interval and fraction < 1.0:
            return
        self._last = now
        if self.rt.jobs.get_state(self.job_id) == JobState.cancelled.value:
            raise Cancelled()
        self.rt.jobs.update_job(self.job_id, progress=round(min(max(fraction, 0.0), 1.0), 4))


def _fail(rt: Runtime, job_id: str, error: dict[str, Any]) -> None:
    rt.jobs.update_job(job_id, state=JobState.failed.value, error=error, finished_at=time.time())
    rec = rt.jobs.get_job(job_id)
    if rec is not None:
        rt.jobs.record_job(rec.method, JobState.failed.value, 0.0, 0)


def run_job(rt: Runtime, job_id: str, splitter: Splitter | None = None) -> str:
    """Run the job if it still needs running; returns its state.

    With a ``splitter`` (Celery), a large perturbation job is split into chunks for
    several workers and this returns "running"; the chord's callback completes it.
    """
    logs.job_id.set(job_id)
    rec = rt.jobs.get_job(job_id)
    if rec is None:
        log.warning("job %s expired before it ran", job_id)
        return "missing"
    if rec.state in _TERMINAL:
        return rec.state
    started = time.time()
    rt.jobs.update_job(
        job_id, state=JobState.running.value, started_at=started, attempts=rec.attempts + 1
    )
    rec.started_at = started
    try:
        data = rt.jobs.get_input(rec.input_key)
        if data is None:
            _fail(
                rt,
                job_id,
                {
                    "code": "input_expired",
                    "message": "The job's input expired before it ran. Submit the request again.",
                    "details": {},
                },
            )
            return JobState.failed.value
        if splitter is not None and try_split(rt, rec, splitter):
            return JobState.running.value
        spec = get_method(rec.method)
        params = spec.parse_params(rec.params)
        model = rt.load(rec.model, rec.version)
        image = decode_image(data, rt.settings.max_pixels)
        progress = JobProgress(rt, job_id, rec.time_limit_s)
        metrics = MetricsRequest.model_validate(rec.metrics) if rec.metrics else None
        result = explain(model, image, spec, params, rec.target, progress, metrics)
    except Cancelled:
        return JobState.cancelled.value
    except SoftTimeLimitExceeded:
        _fail(
            rt,
            job_id,
            TimeLimitExceeded(
                f"The job ran past its time limit of {rec.time_limit_s:.0f} s. "
                "Ask for fewer samples or steps.",
                details={"time_limit_s": rec.time_limit_s},
            ).to_dict(),
        )
        return JobState.failed.value
    except LanternError as e:
        _fail(rt, job_id, e.to_dict())
        return JobState.failed.value
    except Exception as e:
        log.exception("job %s failed", job_id)
        _fail(rt, job_id, internal_error(e))
        return JobState.failed.value
    return complete(rt, rec, result)


def complete(rt: Runtime, rec: JobRecord, result: Explanation) -> str:
    """Store the result and mark the job succeeded (unless it was cancelled meanwhile)."""
    job_id = rec.id
    attribution = result.attribution
    model_calls = result.cost["forward_passes"]
    if rt.jobs.get_state(job_id) == JobState.cancelled.value:
        return JobState.cancelled.value
    finished = time.time()
    rt.jobs.put_result(job_id, attribution.values, attribution.arrays)
    started = rec.started_at or finished
    compute_ms = round((finished - started) * 1000.0, 2)
    summary = {
        "target": {
            "index": result.target_index,
            "label": result.target_label,
            "score": result.target_score,
        },
        "shape": list(attribution.values.shape),
        "extras": attribution.extras,
        "metrics": result.metrics,
        "cost": result.cost,
        "timings": {
            "queued_ms": round((started - rec.created_at) * 1000.0, 2),
            "compute_ms": compute_ms,
        },
    }
    rt.jobs.update_job(
        job_id,
        state=JobState.succeeded.value,
        progress=1.0,
        finished_at=finished,
        model_calls=model_calls,
        summary=summary,
    )
    rt.jobs.record_job(rec.method, JobState.succeeded.value, finished - started, model_calls)
    log.info(
        "job succeeded",
        extra={"method": rec.method, "model_calls": model_calls, "compute_ms": compute_ms},
    )
    return JobState.succeeded.value
