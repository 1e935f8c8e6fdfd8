"""Runs one explanation job: the code a Celery task and the embedded worker share.

One path for a job's stages, shared with the chunked split (:mod:`jobs.split`):

    prepare  — the method, its params, the model, the decoded input (once per process)
    resolve  — the objective (a "top1" class runs the input once); stored on the record,
               so chunks and the assembly never resolve it again
    run      — the method here, or — when it has a plan and costs enough — a split
    finish   — the target's score, the quality metrics, the artifacts stored
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydantic import TypeAdapter

from api_schemas.jobs import JobState
from api_schemas.objectives import ObjectiveRequest
from engine.artifacts import Artifact, Result, pack
from engine.errors import (
    BackendUnavailable,
    Cancelled,
    InputExpired,
    LanternError,
    TimeLimitExceeded,
    internal_error,
)
from engine.explain import Explanation, finish, resolve
from engine.methods.base import MethodSpec, ScaledProgress
from engine.methods.registry import get_method
from engine.models.runtime import LoadedModel
from engine.objectives import Objective, ScoreKind, resolve_objective
from engine.quality.metrics import MetricsRequest
from jobs.leases import Heartbeat, LeaseLost, new_token
from jobs.runtime import Runtime
from jobs.store import JobRecord, JobStore
from lantern import logs

log = logging.getLogger("lantern.worker")

_TERMINAL = {JobState.succeeded.value, JobState.failed.value, JobState.cancelled.value}
OBJECTIVE = TypeAdapter[ObjectiveRequest](ObjectiveRequest)


class JobProgress:
    """Writes progress at most every ``interval`` s (fenced: a superseded run stops), and
    honours cancel and the time limit."""

    def __init__(
        self,
        rt: Runtime,
        job_id: str,
        run: Run | None = None,
        time_limit_s: float = 900.0,
        interval: float = 0.2,
    ) -> None:
        self.rt = rt
        self.job_id = job_id
        self.run = run
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
        if self.run is not None:
            self.run.heartbeat.check()
        if now - self._last < self.interval and fraction < 1.0:
            return
        self._last = now
        value = round(min(max(fraction, 0.0), 1.0), 4)
        try:
            if self.rt.jobs.get_state(self.job_id) == JobState.cancelled.value:
                raise Cancelled()
            if self.run is None:
                self.rt.jobs.update_job(self.job_id, progress=value)
            elif not self.rt.jobs.fenced_update(
                self.job_id, self.run.token, self.run.attempt, progress=value
            ):
                raise LeaseLost()
        except BackendUnavailable:
            pass  # Redis restarting: keep computing; the heartbeat decides

    def preview(self, artifacts: list[Artifact]) -> None:
        """Artifacts readable while the job runs (replaced by the result at its end)."""
        if self.run is not None:
            self.run.heartbeat.check()
        infos = [a.info() for a in artifacts]
        try:
            self.rt.jobs.put_preview(self.job_id, pack(artifacts))
            if self.run is None:
                self.rt.jobs.update_job(self.job_id, preview=infos)
            elif not self.rt.jobs.fenced_update(
                self.job_id, self.run.token, self.run.attempt, preview=infos
            ):
                raise LeaseLost()
        except BackendUnavailable:
            pass


@dataclass
class Run:
    """One attempt at a job, under its lease."""

    token: str
    attempt: int
    heartbeat: Heartbeat


class SharedHeartbeat(Heartbeat):
    """A run's heartbeat renewed by the process's one renewer thread (:data:`RENEWER`)
    instead of a thread of its own: the same lease, renewed every third of it, and the same
    ``lost`` / ``held_until`` / :meth:`check`, with no thread started and joined per run
    (the sync lane's in-process runs, a few ms each)."""

    def __init__(self, store: JobStore, lease: str, token: str, lease_s: float) -> None:
        self.store = store
        self.lease = lease
        self.token = token
        self.lease_s = lease_s
        self.lost = False
        self.held_until = time.monotonic() + lease_s
        self.interval = lease_s / 3.0
        self.next_at = time.monotonic() + self.interval
        self.stopped = False
        self._lock = threading.Lock()

    def __enter__(self) -> SharedHeartbeat:
        RENEWER.add(self)
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:  # waits for a renewal in flight: none lands after the release
            self.stopped = True
        RENEWER.remove(self)
        try:
            self.store.release(self.lease, self.token)
        except BackendUnavailable:
            pass  # it lapses by itself

    def renew(self) -> None:
        """One renewal (on the renewer's thread), as Heartbeat's thread does it."""
        with self._lock:
            if self.stopped or self.lost:
                return
            started = time.monotonic()
            try:
                if self.store.renew(self.lease, self.token, self.lease_s):
                    self.held_until = started + self.lease_s
                else:
                    self.lost = True
                    log.warning("lease %s lost: another worker runs it now", self.lease)
            except BackendUnavailable:
                pass  # Redis restarting: keep computing, try again at the next interval


class _Renewer:
    """The thread that renews every :class:`SharedHeartbeat` of this process (started on
    first use, and again in a forked child)."""

    def __init__(self) -> None:
        self._beats: dict[int, SharedHeartbeat] = {}
        self._cond = threading.Condition()
        self._pid = 0

    def add(self, hb: SharedHeartbeat) -> None:
        with self._cond:
            if self._pid != os.getpid():
                self._beats.clear()  # a forked child: the parent's runs are not its own
                self._pid = os.getpid()
                threading.Thread(target=self._run, name="lantern-renewer", daemon=True).start()
            self._beats[id(hb)] = hb
            self._cond.notify()

    def remove(self, hb: SharedHeartbeat) -> None:
        with self._cond:
            self._beats.pop(id(hb), None)

    def _run(self) -> None:
        pid = os.getpid()
        while True:
            with self._cond:
                if self._pid != pid:
                    return
                now = time.monotonic()
                due = [hb for hb in self._beats.values() if hb.next_at <= now]
                if not due:
                    nxt = min((hb.next_at for hb in self._beats.values()), default=None)
                    self._cond.wait(None if nxt is None else nxt - now)
                    continue
                for hb in due:
                    hb.next_at = now + hb.interval
            for hb in due:
                hb.renew()


RENEWER = _Renewer()


@dataclass
class Prepared:
    """A job ready to run: its method, params, model and decoded input."""

    rec: JobRecord
    spec: MethodSpec[Any]
    params: Any
    model: LoadedModel
    item: Any  # the codec's decoded item (None for methods that take no input)


class _Items:
    """Decoded inputs by (input key, model version): each decoded once per process."""

    def __init__(self, capacity: int = 8) -> None:
        self.capacity = capacity
        self._items: OrderedDict[tuple[str, str], Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, rt: Runtime, rec: JobRecord, model: LoadedModel) -> Any:
        key = rec.input_key
        if key is None:
            return None
        with self._lock:
            item = self._items.get((key, model.version))
            if item is not None:
                self._items.move_to_end((key, model.version))
                return item
        data = rt.jobs.get_input(key)
        if data is None:
            raise InputExpired(
                "The job's input expired before it ran. Submit the request again.",
                details={"part": "input"},
            )
        item = model.codec.decode(data)
        self.put(key, model.version, item)
        return item

    def cached(self, key: str, version: str) -> Any:
        """The input with these bytes (its key) decoded for this model already, if still
        held (else None): the same bytes need not be decoded, nor checked, again."""
        with self._lock:
            item = self._items.get((key, version))
            if item is not None:
                self._items.move_to_end((key, version))
            return item

    def put(self, key: str, version: str, item: Any) -> None:
        """An input decoded already (the API's check at submit: the sync lane reuses it)."""
        with self._lock:
            self._items[(key, version)] = item
            self._items.move_to_end((key, version))
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)


ITEMS = _Items()


def prepare(rt: Runtime, rec: JobRecord) -> Prepared:
    model = rt.load(rec.model, rec.version)
    spec = get_method(rec.method, model.manifest.modality)
    params = spec.parse_params(rec.params)
    if rec.dataset is not None:  # a dataset analysis: its item is the dataset's reader
        reader = rt.datasets.reader(rec.dataset["name"], rec.dataset["version"])
        return Prepared(rec, spec, params, model, reader)
    return Prepared(rec, spec, params, model, ITEMS.get(rt, rec, model))


def resolved_objective(rt: Runtime, job: Prepared) -> tuple[Objective, NDArray[np.float32] | None]:
    """The job's objective: resolved once and stored on the record (then rebuilt from it
    with no forward pass), with the model's output when resolving needed it."""
    rec = job.rec
    score: ScoreKind = getattr(job.params, "score", "logit")
    if rec.resolved is not None:
        return resolve_objective(OBJECTIVE.validate_python(rec.resolved), job.model, score), None
    objective, logits = resolve(
        job.model, job.spec, job.item, OBJECTIVE.validate_python(rec.objective), job.params
    )
    rec.resolved = objective.as_request()
    rt.jobs.update_job(rec.id, resolved=rec.resolved)
    return objective, logits


def _fail(rt: Runtime, rec: JobRecord, run: Run, error: dict[str, Any]) -> None:
    if rt.jobs.fenced_end(
        rec, run.token, run.attempt, state=JobState.failed.value, error=error,
        finished_at=time.time(),
    ):
        rt.jobs.record_job(rec.method, JobState.failed.value, 0.0, 0)


def _time_limit(rec: JobRecord) -> dict[str, Any]:
    return TimeLimitExceeded(
        f"The job ran past its time limit of {rec.time_limit_s:.0f} s. "
        "Ask for fewer samples or steps.",
        details={"time_limit_s": rec.time_limit_s},
    ).to_dict()


def run_job(
    rt: Runtime,
    job_id: str,
    splitter: Any = None,
    time_limit_errors: tuple[type[BaseException], ...] = (),
) -> str:
    """Run the job if it still needs running, under its lease; returns its state.

    A job whose lease another worker holds is not run again ("leased"); a run that loses
    its lease stops and writes nothing ("superseded"); a run that cannot reach the store
    gives up ("store_unavailable") and the reconciler re-queues it once its lease lapses.
    With a ``splitter`` (Celery), a perturbation job that costs at least
    ``split_min_samples`` passes is split into chunks for several workers and this returns
    "running"; the last round's assembly completes it. ``time_limit_errors``: what the
    shell raises at a soft time limit (Celery's SoftTimeLimitExceeded).
    """
    logs.job_id.set(job_id)
    rec = rt.jobs.get_job(job_id)
    if rec is None:
        log.warning("job %s expired before it ran", job_id)
        return "missing"
    if rec.state in _TERMINAL:
        return rec.state
    return _leased_run(rt, rec, splitter, time_limit_errors, Heartbeat).state


@dataclass
class Outcome:
    """How a run here ended: its state (as :func:`run_job` answers it), the record as this
    run left it, and — when it succeeded — the artifacts it stored, still in memory."""

    state: str
    rec: JobRecord
    artifacts: list[Artifact] | None = None
    views: dict[str, str] = field(default_factory=dict)


def run_here(rt: Runtime, rec: JobRecord) -> Outcome:
    """Run a job this process has just created, in this thread (the sync lane): the same
    lease, attempt and fenced writes as :func:`run_job`, and the result stored the same
    way, but from the record in hand (its state read back, not the whole record), its lease
    renewed by the process's renewer thread, and the artifacts handed back in memory, so the
    caller answers with them instead of reading the result back.

    On success ``rec`` is updated as stored (state, progress, times, model calls, summary);
    otherwise read the job again for what happened (its error, or another run's state).
    """
    logs.job_id.set(rec.id)
    ended = _ended(rt, rec)
    if ended is not None:
        return ended
    return _leased_run(rt, rec, None, (), SharedHeartbeat)


def _ended(rt: Runtime, rec: JobRecord) -> Outcome | None:
    """Why a job created here will not run (expired, or already ended), else None."""
    state = rt.jobs.get_state(rec.id)
    if state is None:
        log.warning("job %s expired before it ran", rec.id)
        return Outcome("missing", rec)
    if state in _TERMINAL:
        return Outcome(state, rec)
    return None


def _leased_run(
    rt: Runtime,
    rec: JobRecord,
    splitter: Any,
    time_limit_errors: tuple[type[BaseException], ...],
    heartbeat: type[Heartbeat],
) -> Outcome:
    job_id = rec.id
    token = new_token()
    lease = rt.jobs.lease_key(job_id)
    if not rt.jobs.acquire(lease, token, rt.settings.lease_s):
        log.info("job %s is leased by another worker; not run twice", job_id)
        return Outcome("leased", rec)
    try:
        with heartbeat(rt.jobs, lease, token, rt.settings.lease_s) as hb:
            run = Run(token, rt.jobs.start_attempt(job_id, token), hb)
            return _run(rt, rec, run, splitter, time_limit_errors)
    except BackendUnavailable:
        log.warning("job %s: the store is unavailable; it is re-queued later", job_id)
        return Outcome("store_unavailable", rec)


def _run(
    rt: Runtime,
    rec: JobRecord,
    run: Run,
    splitter: Any,
    time_limit_errors: tuple[type[BaseException], ...],
) -> Outcome:
    from jobs.split import start_split  # split imports this module

    if not _mark_running(rt, rec, run):
        return Outcome("superseded", rec)
    try:
        st = _begin(rt, rec, run)
        job = st.job
        if (
            splitter is not None
            and job.spec.plan is not None
            and (rec.cost if rec.dataset is not None else job.spec.cost(job.params, job.model))
            >= rt.settings.split_min_samples
        ):
            start_split(rt, job, st.objective, st.logits, splitter)
            return Outcome(JobState.running.value, rec)
        result = job.spec.fn(job.model, job.item, st.objective, job.params, st.method_progress())
        explanation = _finish(st, result)
    except BaseException as e:
        return _failure(rt, rec, run, e, time_limit_errors)
    return _completed(rt, rec, run, explanation)


def _mark_running(rt: Runtime, rec: JobRecord, run: Run) -> bool:
    """The job marked running by this run (False: superseded)."""
    started = time.time()
    if not rt.jobs.fenced_update(
        rec.id, run.token, run.attempt, state=JobState.running.value, started_at=started
    ):
        return False
    rec.started_at = started
    rec.attempts = run.attempt
    return True


@dataclass
class _Started:
    """A job prepared, its objective resolved, ready for its method."""

    job: Prepared
    objective: Objective
    logits: NDArray[np.float32] | None
    progress: JobProgress
    metrics: MetricsRequest | None

    @property
    def share(self) -> float:
        """The method's share of the progress (the rest: the quality metrics)."""
        return 0.6 if self.metrics is not None and bool(self.metrics.names) else 1.0

    def method_progress(self) -> ScaledProgress:
        return ScaledProgress(self.progress, 0.0, self.share)


def _begin(rt: Runtime, rec: JobRecord, run: Run) -> _Started:
    job = prepare(rt, rec)
    objective, logits = resolved_objective(rt, job)
    progress = JobProgress(rt, rec.id, run, rec.time_limit_s)
    metrics = MetricsRequest.model_validate(rec.metrics) if rec.metrics else None
    return _Started(job, objective, logits, progress, metrics)


def _finish(st: _Started, result: Result) -> Explanation:
    job = st.job
    return finish(
        job.model,
        job.spec,
        job.item,
        st.objective,
        job.params,
        result,
        st.logits,
        ScaledProgress(st.progress, st.share, 1.0 - st.share),
        st.metrics,
        extra_calls=0 if st.logits is None else 1,
    )


def _failure(
    rt: Runtime,
    rec: JobRecord,
    run: Run,
    e: BaseException,
    time_limit_errors: tuple[type[BaseException], ...],
) -> Outcome:
    """How a run that raised ``e`` ends (the failure stored); BackendUnavailable and
    what is not an error (KeyboardInterrupt, ...) propagate."""
    if isinstance(e, Cancelled):
        return Outcome(JobState.cancelled.value, rec)
    if isinstance(e, LeaseLost):
        return Outcome("superseded", rec)
    if isinstance(e, BackendUnavailable):
        raise e
    if isinstance(e, time_limit_errors):
        _fail(rt, rec, run, _time_limit(rec))
        return Outcome(JobState.failed.value, rec)
    if isinstance(e, LanternError):
        _fail(rt, rec, run, e.to_dict())
        return Outcome(JobState.failed.value, rec)
    if isinstance(e, Exception):
        log.error("job %s failed", rec.id, exc_info=e)
        _fail(rt, rec, run, internal_error(e))
        return Outcome(JobState.failed.value, rec)
    raise e


def _completed(rt: Runtime, rec: JobRecord, run: Run, explanation: Explanation) -> Outcome:
    artifacts = explanation.artifacts
    state = complete(rt, rec, explanation, run, artifacts)
    if state != JobState.succeeded.value:
        return Outcome(state, rec)
    return Outcome(state, rec, artifacts, dict(explanation.result.views))


def run_here_batch(rt: Runtime, recs: list[JobRecord]) -> list[Outcome]:
    """:func:`run_here` for several jobs this process has just created, their methods run
    as one batch where they can be (see :func:`run_here_batched`); the outcomes in order."""
    outcomes = dict(run_here_batched(rt, recs))
    return [outcomes[i] for i in range(len(recs))]


def run_here_batched(rt: Runtime, recs: list[JobRecord]) -> Iterator[tuple[int, Outcome]]:
    """:func:`run_here` for several jobs this process has just created, their methods run
    as one batch where they can be: each job keeps its own lease, attempt, fenced writes,
    result and outcome; jobs of the same method, model version and params whose method has
    a ``batch_fn`` share one call of it (one forward or VJP over the stacked inputs). A
    batch call that raises is retried one job at a time, so a failing job fails alone with
    its own error. Yields ``(index, outcome)`` as each job ends (its lease released), so
    a caller answers the first before the last is stored."""
    stacks: dict[int, ExitStack] = {}
    try:
        runs: dict[int, Run] = {}
        for i, rec in enumerate(recs):
            logs.job_id.set(rec.id)
            stack = ExitStack()
            try:
                got = _enter_here(rt, rec, stack)
            except BackendUnavailable:
                log.warning("job %s: the store is unavailable; it is re-queued later", rec.id)
                got = Outcome("store_unavailable", rec)
            if isinstance(got, Outcome):
                stack.close()
                yield i, got
            else:
                stacks[i] = stack
                runs[i] = got
        started: dict[int, _Started] = {}
        for i, run in runs.items():
            rec = recs[i]
            logs.job_id.set(rec.id)
            try:
                if _mark_running(rt, rec, run):
                    started[i] = _begin(rt, rec, run)
                    continue
                out = Outcome("superseded", rec)
            except BaseException as e:
                out = _guarded_failure(rt, rec, run, e)
            stacks.pop(i).close()
            yield i, out
        groups: dict[tuple[int, str, str], list[int]] = {}
        for i, st in started.items():
            key = (id(st.job.spec), st.job.model.version, st.job.params.model_dump_json())
            groups.setdefault(key, []).append(i)
        for idxs in groups.values():
            results = _batched(started, idxs)
            for i in idxs:
                st, rec, run = started[i], recs[i], runs[i]
                logs.job_id.set(rec.id)
                try:
                    if results is not None:
                        result = results[i]
                        st.method_progress()(1.0)  # cancel and the time limit, as a method
                    else:
                        job = st.job
                        result = job.spec.fn(
                            job.model, job.item, st.objective, job.params, st.method_progress()
                        )
                    explanation = _finish(st, result)
                    out = _completed(rt, rec, run, explanation)
                except BaseException as e:
                    out = _guarded_failure(rt, rec, run, e)
                stacks.pop(i).close()
                yield i, out
    finally:
        for stack in stacks.values():  # a caller that stopped early: release the rest
            stack.close()


def _enter_here(rt: Runtime, rec: JobRecord, stack: ExitStack) -> Run | Outcome:
    """:func:`run_here`'s checks and lease for one job of a batch, its heartbeat entered
    on ``stack`` (released when the batch is done)."""
    ended = _ended(rt, rec)
    if ended is not None:
        return ended
    token = new_token()
    lease = rt.jobs.lease_key(rec.id)
    if not rt.jobs.acquire(lease, token, rt.settings.lease_s):
        log.info("job %s is leased by another worker; not run twice", rec.id)
        return Outcome("leased", rec)
    hb = stack.enter_context(SharedHeartbeat(rt.jobs, lease, token, rt.settings.lease_s))
    return Run(token, rt.jobs.start_attempt(rec.id, token), hb)


def _guarded_failure(rt: Runtime, rec: JobRecord, run: Run, e: BaseException) -> Outcome:
    """:func:`_failure` for one job of a batch: the store unavailable ends this job alone."""
    try:
        return _failure(rt, rec, run, e, ())
    except BackendUnavailable:
        log.warning("job %s: the store is unavailable; it is re-queued later", rec.id)
        return Outcome("store_unavailable", rec)


def _batched(started: dict[int, _Started], idxs: list[int]) -> dict[int, Result] | None:
    """The results of one batch call for these jobs (same method, model, params), or None
    when the method has no batch entry point, there is one job, or the call raised (then
    each job runs alone, and fails alone)."""
    first = started[idxs[0]].job
    batch_fn = first.spec.batch_fn
    if batch_fn is None or len(idxs) < 2:
        return None
    try:
        results = batch_fn(
            first.model,
            [started[i].job.item for i in idxs],
            [started[i].objective for i in idxs],
            first.params,
        )
    except Exception:
        log.info("a batch of %d %s jobs failed; running them one by one", len(idxs),
                 first.spec.name, exc_info=True)
        return None
    if len(results) != len(idxs):
        return None
    return dict(zip(idxs, results, strict=True))


def _until_held(run: Run, fn: Any) -> Any:
    """``fn()``, retried while Redis restarts, as long as the run still holds its lease."""
    while True:
        try:
            return fn()
        except BackendUnavailable:
            if time.monotonic() > run.heartbeat.held_until:
                raise
            time.sleep(0.25)


def complete(
    rt: Runtime,
    rec: JobRecord,
    result: Explanation,
    run: Run,
    artifacts: list[Artifact] | None = None,
) -> str:
    """Store the artifacts (``result.artifacts`` unless given) and mark the job succeeded,
    fenced: exactly one run completes a job (unless it was cancelled meanwhile). On success
    ``rec`` holds what was stored."""
    job_id = rec.id
    model_calls = result.cost["forward_passes"]
    if _until_held(run, lambda: rt.jobs.get_state(job_id)) == JobState.cancelled.value:
        return JobState.cancelled.value
    run.heartbeat.check()
    finished = time.time()
    if artifacts is None:
        artifacts = result.artifacts
    packed = pack(artifacts, result.result.views)
    _until_held(run, lambda: rt.jobs.put_artifacts(job_id, packed))
    started = rec.started_at or finished
    compute_ms = round((finished - started) * 1000.0, 2)
    primary = result.result.primary
    summary = {
        "target": result.target_info(),
        "objective": result.objective.describe(),
        "shape": primary.shape,
        "extras": result.result.extras,
        "metrics": result.metrics,
        "cost": result.cost,
        "artifacts": [a.info() for a in artifacts],
        "views": {fmt: result.result.view(fmt) for fmt in ("png", "overlay")},
        "timings": {
            "queued_ms": round((started - rec.created_at) * 1000.0, 2),
            "compute_ms": compute_ms,
        },
    }
    ended = _until_held(
        run,
        lambda: rt.jobs.fenced_end(
            rec,
            run.token,
            run.attempt,
            state=JobState.succeeded.value,
            progress=1.0,
            finished_at=finished,
            model_calls=model_calls,
            summary=summary,
        ),
    )
    if not ended:
        log.warning("job %s: superseded before it could complete; wrote nothing", job_id)
        return "superseded"
    rec.state, rec.progress, rec.finished_at = JobState.succeeded.value, 1.0, finished
    rec.model_calls, rec.summary = model_calls, summary
    rec.completions += 1
    rt.jobs.record_job(rec.method, JobState.succeeded.value, finished - started, model_calls)
    log.info(
        "job succeeded",
        extra={"method": rec.method, "model_calls": model_calls, "compute_ms": compute_ms},
    )
    return JobState.succeeded.value
