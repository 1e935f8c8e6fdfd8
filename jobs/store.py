"""Jobs, inputs and results, kept in Redis (or in memory in embedded mode).

A job is a hash of JSON-encoded fields, so the API (cancel) and a worker (progress,
state) update different fields without overwriting each other. Inputs are stored once
by content hash; tasks carry only the job id.

Nothing accepted is lost:

* a live job (queued or running) has no expiry — its TTL counts from its end, not its
  submission — and is listed in the ``active`` set that the reconciler walks;
* a worker runs a job (or a chunk) under a **lease** it renews with a heartbeat, and each run
  is an **attempt** with a number; every write of a run is **fenced**: it lands only while
  the run holds the lease and its attempt is the job's current one, so a worker paused past
  its lease, or cut off during a Redis restart, writes nothing.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
from numpy.typing import NDArray

from api_schemas.jobs import JobState
from jobs import callbacks
from jobs.kv import KV, MemoryKV, RedisKV

__all__ = ["KV", "JobRecord", "JobStore", "MemoryKV", "RedisKV"]


@dataclass
class JobRecord:
    id: str
    model: str
    version: str
    method: str
    params: dict[str, Any]
    #: The objective as requested (api_schemas.objectives, JSON), then as resolved.
    objective: dict[str, Any]
    #: The input: {"modality": "image", "key": sha256 of the bytes}, or None (no input).
    input: dict[str, Any] | None
    state: str = JobState.queued.value
    progress: float = 0.0
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    model_calls: int | None = None
    error: dict[str, Any] | None = None
    summary: dict[str, Any] | None = None
    attempts: int = 0
    owner: str = "anonymous"
    time_limit_s: float = 900.0
    metrics: dict[str, Any] | None = None
    #: The objective once resolved (a class index instead of "top1"): chunks reuse it.
    resolved: dict[str, Any] | None = None
    #: The forward passes the request was estimated at (the per-key cap counts them).
    cost: int = 0
    #: When the job was last handed to the queue (the reconciler re-queues lost messages).
    dispatched_at: float | None = None
    #: Successful completions (1 for a succeeded job: never more).
    completions: int = 0
    #: The artifacts a running job published so far (name, type, shape, ...).
    preview: list[dict[str, Any]] | None = None
    #: A dataset analysis's dataset: {"name", "version", "images"} (None: not one).
    dataset: dict[str, Any] | None = None

    @property
    def input_key(self) -> str | None:
        return None if self.input is None else str(self.input["key"])

    def to_fields(self) -> dict[str, str]:
        # each field as JSON; no deep copy first (dataclasses.asdict), json reads it as is
        return {k: json.dumps(getattr(self, k)) for k in _RECORD_FIELDS}

    @classmethod
    def from_fields(cls, raw: dict[str, str]) -> JobRecord:
        return cls(**{k: json.loads(v) for k, v in raw.items() if k in _KNOWN_FIELDS})


_RECORD_FIELDS = tuple(f.name for f in fields(JobRecord))
_KNOWN_FIELDS = frozenset(_RECORD_FIELDS)


DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


def array_to_bytes(a: NDArray[Any]) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()


def array_from_bytes(b: bytes) -> NDArray[Any]:
    arr: NDArray[Any] = np.load(io.BytesIO(b), allow_pickle=False)
    return arr


class JobStore:
    def __init__(self, kv: KV, ttl_s: int, prefix: str = "lantern") -> None:
        self.kv = kv
        self.ttl = ttl_s
        self.prefix = prefix

    def _k(self, kind: str, key: str) -> str:
        return f"{self.prefix}:{kind}:{key}"

    # inputs -------------------------------------------------------------------------
    @staticmethod
    def input_key(data: bytes) -> str:
        """The key an input is stored under: the sha256 of its bytes."""
        return hashlib.sha256(data).hexdigest()

    def put_input(self, data: bytes, key: str | None = None) -> str:
        """Store an input (``key``: its :meth:`input_key`, when known already)."""
        key = key or self.input_key(data)
        self.kv.set(self._k("input", key), data, self.ttl)
        return key

    def get_input(self, key: str) -> bytes | None:
        return self.kv.get(self._k("input", key))

    def touch_input(self, key: str) -> None:
        """An input lives as long as a result made from it."""
        self.kv.expire(self._k("input", key), self.ttl)

    # jobs ---------------------------------------------------------------------------
    def _job(self, job_id: str) -> str:
        return self._k("job", job_id)

    def lease_key(self, job_id: str, part: str = "") -> str:
        return self._k("lease", f"{job_id}:{part}" if part else job_id)

    def create_job(self, rec: JobRecord) -> tuple[JobRecord, bool]:
        """Store a new job, or return the live one with the same id (same request).

        A failed or cancelled job with the same id is reset and counts as new. A new job
        has no expiry until it ends, and is listed as active.
        """
        key = self._job(rec.id)
        if self.kv.hsetnx(key, "id", json.dumps(rec.id)):
            self.kv.hset(key, rec.to_fields(), None)
            self._activate(rec)
            return rec, True
        existing = self.get_job(rec.id)
        if existing is None:  # expired between the two calls
            self.kv.hset(key, rec.to_fields(), None)
            self._activate(rec)
            return rec, True
        if existing.state in (JobState.failed.value, JobState.cancelled.value):
            rec.attempts = existing.attempts
            callbacks.forget_urls(self, rec.id)  # the ended run's callbacks recorded first
            self.kv.hset(key, rec.to_fields(), None)
            self._activate(rec)
            return rec, True
        return existing, False

    def _activate(self, rec: JobRecord) -> None:
        self.kv.sadd(self._k("active", "jobs"), rec.id)
        self.kv.hset(self._k("cost", rec.owner), {rec.id: str(rec.cost)}, None)

    def _deactivate(self, rec: JobRecord) -> None:
        self.kv.srem(self._k("active", "jobs"), rec.id)
        self.kv.hdel(self._k("cost", rec.owner), rec.id)

    def forget(self, job_id: str, rec: JobRecord | None) -> None:
        """Drop a finished or vanished job from the active set (and its cost)."""
        self.kv.srem(self._k("active", "jobs"), job_id)
        if rec is not None:
            self.kv.hdel(self._k("cost", rec.owner), job_id)

    def active_jobs(self) -> set[str]:
        return self.kv.smembers(self._k("active", "jobs"))

    def active_cost(self, owner: str) -> int:
        """Forward passes of the owner's queued and running jobs (their estimates)."""
        return sum(int(v) for v in self.kv.hgetall(self._k("cost", owner)).values())

    def get_job(self, job_id: str) -> JobRecord | None:
        raw = self.kv.hgetall(self._job(job_id))
        if "method" not in raw or "objective" not in raw:
            return None
        return JobRecord.from_fields(raw)

    def update_job(self, job_id: str, **fields: Any) -> None:
        """Unfenced fields of a live job (the API's and the reconciler's writes)."""
        self.kv.hset(self._job(job_id), {k: json.dumps(v) for k, v in fields.items()}, None)

    def end_job(self, rec: JobRecord, **fields: Any) -> None:
        """Unfenced end of a job (cancel, or a job failed before any run): its TTL starts."""
        self.kv.hset(
            self._job(rec.id), {k: json.dumps(v) for k, v in fields.items()}, self.ttl
        )
        self._deactivate(rec)
        callbacks.job_ended(self, rec.id)  # its callbacks' deliveries, right after the end

    def get_state(self, job_id: str) -> str | None:
        v = self.kv.hget(self._job(job_id), "state")
        return None if v is None else str(json.loads(v))

    # runs: leases, attempts, fenced writes ---------------------------------------------
    def acquire(self, lease: str, token: str, lease_s: float) -> bool:
        return self.kv.lease_acquire(lease, token, int(lease_s * 1000))

    def renew(self, lease: str, token: str, lease_s: float) -> bool:
        return self.kv.lease_renew(lease, token, int(lease_s * 1000))

    def release(self, lease: str, token: str) -> None:
        self.kv.lease_release(lease, token)

    def leased(self, lease: str) -> bool:
        return self.kv.get(lease) is not None

    def start_attempt(self, job_id: str, token: str) -> int:
        """A new attempt of a job whose lease ``token`` holds: its number."""
        return self.kv.hincrby(self._job(job_id), "attempts", 1)

    def fenced_update(self, job_id: str, token: str, attempt: int, **fields: Any) -> bool:
        """Fields written only while this run holds the job's lease and is its current
        attempt; False: the run was superseded (write nothing more)."""
        return self.kv.fenced_hset(
            self._job(job_id),
            self.lease_key(job_id),
            token,
            attempt,
            {k: json.dumps(v) for k, v in fields.items()},
            None,
        )

    def fenced_end(
        self, rec: JobRecord, token: str, attempt: int, **fields: Any
    ) -> bool:
        """The end of a run's job (succeeded or failed), fenced; its TTL starts."""
        ok = self.kv.fenced_hset(
            self._job(rec.id),
            self.lease_key(rec.id),
            token,
            attempt,
            {k: json.dumps(v) for k, v in fields.items()},
            self.ttl,
        )
        if ok:
            if fields.get("state") == JobState.succeeded.value:
                self.kv.hincrby(self._job(rec.id), "completions", 1)
            self._deactivate(rec)
            if rec.input_key is not None:
                self.touch_input(rec.input_key)
            callbacks.job_ended(self, rec.id)  # its callbacks' deliveries, right after the end
        return ok

    # results ------------------------------------------------------------------------
    def put_artifacts(self, job_id: str, packed: bytes) -> None:
        """The result's artifacts (engine.artifacts.pack)."""
        self.kv.set(self._k("artifacts", job_id), packed, self.ttl)

    def get_artifacts(self, job_id: str) -> bytes | None:
        return self.kv.get(self._k("artifacts", job_id))

    def put_preview(self, job_id: str, packed: bytes) -> None:
        """Artifacts a running job publishes (previews), readable before its result."""
        self.kv.set(self._k("preview", job_id), packed, self.ttl)

    def get_preview(self, job_id: str) -> bytes | None:
        return self.kv.get(self._k("preview", job_id))

    # split jobs: the plan of each round, each chunk's scores and passes -----------------
    def put_plan(self, job_id: str, round_: int, plan: bytes) -> None:
        self.kv.set(self._k("plan", f"{job_id}:{round_}"), plan, self.ttl)

    def get_plan(self, job_id: str, round_: int) -> bytes | None:
        return self.kv.get(self._k("plan", f"{job_id}:{round_}"))

    def split_state(self, job_id: str) -> dict[str, Any] | None:
        raw = self.kv.hget(self._k("job", job_id), "split")
        return None if raw is None else dict(json.loads(raw))

    def put_chunk(
        self, job_id: str, round_: int, start: int, scores: NDArray[Any], passes: int
    ) -> bool:
        """A chunk's scores; a redelivered chunk rewrites the same scores and its passes
        are counted once. True when this chunk completed its round (exactly one caller)."""
        self.kv.set(self._k("chunk", f"{job_id}:{start}"), array_to_bytes(scores), self.ttl)
        if self.kv.setnx(self._k("done", f"{job_id}:{start}"), b"1", self.ttl):
            self.kv.incr(self._k("passes", job_id), self.ttl, passes)
        state = self.split_state(job_id) or {}
        total = int(state.get("round_chunks", 0))
        added, count = self.kv.sadd_count(
            self._k("round", f"{job_id}:{round_}"), str(start), self.ttl
        )
        return added and total > 0 and count >= total

    def get_chunk(self, job_id: str, start: int) -> NDArray[Any] | None:
        raw = self.kv.get(self._k("chunk", f"{job_id}:{start}"))
        return None if raw is None else array_from_bytes(raw)

    def chunk_done(self, job_id: str, start: int) -> bool:
        return self.kv.get(self._k("done", f"{job_id}:{start}")) is not None

    def chunk_passes(self, job_id: str) -> int:
        return int(self.kv.get(self._k("passes", job_id)) or b"0")

    # rate limits ----------------------------------------------------------------------
    def count_request(self, who: str, window: int, ttl_s: int = 120) -> int:
        """Count one request of ``who`` in time window ``window``; the count so far."""
        return self.kv.incr(self._k("rate", f"{who}:{window}"), ttl_s)

    def queue_length(self, queue: str) -> int:
        return self.kv.llen(queue)

    # metrics ------------------------------------------------------------------------
    def record_job(self, method: str, state: str, seconds: float, model_calls: int) -> None:
        """Counters every process adds to, read by the API's /metrics."""
        counts = {f"{method}|{state}|count": 1}
        if state == JobState.succeeded.value:
            counts[f"{method}|ms_sum"] = round(seconds * 1000)
            counts[f"{method}|passes_sum"] = model_calls
            for le in DURATION_BUCKETS:
                if seconds <= le:
                    counts[f"{method}|le|{le}"] = 1
        self.kv.hincr(f"{self.prefix}:metrics", counts)

    def job_metrics(self) -> dict[str, str]:
        return self.kv.hgetall(f"{self.prefix}:metrics")

    def ping(self) -> bool:
        return self.kv.ping()
