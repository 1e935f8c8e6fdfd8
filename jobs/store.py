"""Jobs, inputs and results, kept in Redis (or in memory in embedded mode) with a TTL.

A job is a hash of JSON-encoded fields, so the API (cancel) and a worker (progress,
state) update different fields without overwriting each other. Inputs are stored once
by content hash; tasks carry only the job id.
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, cast

import numpy as np
import redis
from numpy.typing import NDArray

from api_schemas.jobs import JobState


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

    @property
    def input_key(self) -> str | None:
        return None if self.input is None else str(self.input["key"])

    def to_fields(self) -> dict[str, str]:
        return {k: json.dumps(v) for k, v in asdict(self).items()}

    @classmethod
    def from_fields(cls, raw: dict[str, str]) -> JobRecord:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: json.loads(v) for k, v in raw.items() if k in known})


class KV(Protocol):
    """The few storage operations the job store needs."""

    def set(self, key: str, value: bytes, ttl: int) -> None: ...
    def get(self, key: str) -> bytes | None: ...
    def hsetnx(self, key: str, fld: str, value: str) -> bool: ...
    def hset(self, key: str, mapping: dict[str, str], ttl: int) -> None: ...
    def hget(self, key: str, fld: str) -> str | None: ...
    def hgetall(self, key: str) -> dict[str, str]: ...
    def incr(self, key: str, ttl: int, amount: int = 1) -> int: ...
    def setnx(self, key: str, value: bytes, ttl: int) -> bool: ...
    def hincr(self, key: str, counts: dict[str, int]) -> None: ...
    def llen(self, key: str) -> int: ...
    def ping(self) -> bool: ...


class RedisKV:
    def __init__(self, client: redis.Redis[bytes]) -> None:
        self.r = client

    def set(self, key: str, value: bytes, ttl: int) -> None:
        self.r.set(key, value, ex=ttl)

    def get(self, key: str) -> bytes | None:
        v = self.r.get(key)
        return bytes(v) if v is not None else None

    def hsetnx(self, key: str, fld: str, value: str) -> bool:
        return bool(self.r.hsetnx(key, fld, value))

    def hset(self, key: str, mapping: dict[str, str], ttl: int) -> None:
        p = self.r.pipeline()
        p.hset(key, mapping=cast("dict[str | bytes, str]", mapping))
        p.expire(key, ttl)
        p.execute()

    def hget(self, key: str, fld: str) -> str | None:
        v = self.r.hget(key, fld)
        return v.decode() if isinstance(v, bytes) else None

    def hgetall(self, key: str) -> dict[str, str]:
        raw = self.r.hgetall(key)
        return {k.decode(): v.decode() for k, v in raw.items()}

    def incr(self, key: str, ttl: int, amount: int = 1) -> int:
        p = self.r.pipeline()
        p.incrby(key, amount)
        p.expire(key, ttl, nx=True)
        return int(p.execute()[0])

    def setnx(self, key: str, value: bytes, ttl: int) -> bool:
        return bool(self.r.set(key, value, ex=ttl, nx=True))

    def hincr(self, key: str, counts: dict[str, int]) -> None:
        p = self.r.pipeline()
        for fld, amount in counts.items():
            p.hincrby(key, fld, amount)
        p.execute()

    def llen(self, key: str) -> int:
        return int(self.r.llen(key))

    def ping(self) -> bool:
        return bool(self.r.ping())


class MemoryKV:
    """An in-process KV with expiry, for embedded mode (one process, no Redis)."""

    def __init__(self) -> None:
        self._data: dict[str, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def _live(self, key: str) -> Any:
        item = self._data.get(key)
        if item is None:
            return None
        if item[0] < time.time():
            del self._data[key]
            return None
        return item[1]

    def set(self, key: str, value: bytes, ttl: int) -> None:
        with self._lock:
            self._data[key] = (time.time() + ttl, value)

    def get(self, key: str) -> bytes | None:
        with self._lock:
            v = self._live(key)
            return v if isinstance(v, bytes) else None

    def hsetnx(self, key: str, fld: str, value: str) -> bool:
        with self._lock:
            h = self._live(key)
            if h is None:
                self._data[key] = (time.time() + 3600, {fld: value})
                return True
            if fld in h:
                return False
            h[fld] = value
            return True

    def hset(self, key: str, mapping: dict[str, str], ttl: int) -> None:
        with self._lock:
            h = self._live(key) or {}
            h.update(mapping)
            self._data[key] = (time.time() + ttl, h)

    def hget(self, key: str, fld: str) -> str | None:
        with self._lock:
            h = self._live(key)
            return None if h is None else h.get(fld)

    def hgetall(self, key: str) -> dict[str, str]:
        with self._lock:
            h = self._live(key)
            return dict(h) if h else {}

    def incr(self, key: str, ttl: int, amount: int = 1) -> int:
        with self._lock:
            v = self._live(key)
            n = (int(v) if isinstance(v, bytes) else 0) + amount
            expiry = self._data[key][0] if v is not None else time.time() + ttl
            self._data[key] = (expiry, str(n).encode())  # as Redis keeps counters
            return n

    def setnx(self, key: str, value: bytes, ttl: int) -> bool:
        with self._lock:
            if self._live(key) is not None:
                return False
            self._data[key] = (time.time() + ttl, value)
            return True

    def hincr(self, key: str, counts: dict[str, int]) -> None:
        with self._lock:
            h = self._live(key) or {}
            for fld, amount in counts.items():
                h[fld] = str(int(h.get(fld, "0")) + amount)
            self._data[key] = (float("inf"), h)

    def llen(self, key: str) -> int:
        return 0

    def ping(self) -> bool:
        return True


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
    def put_input(self, data: bytes) -> str:
        key = hashlib.sha256(data).hexdigest()
        self.kv.set(self._k("input", key), data, self.ttl)
        return key

    def get_input(self, key: str) -> bytes | None:
        return self.kv.get(self._k("input", key))

    # jobs ---------------------------------------------------------------------------
    def create_job(self, rec: JobRecord) -> tuple[JobRecord, bool]:
        """Store a new job, or return the live one with the same id (same request).

        A failed or cancelled job with the same id is reset and counts as new.
        """
        key = self._k("job", rec.id)
        if self.kv.hsetnx(key, "id", json.dumps(rec.id)):
            self.kv.hset(key, rec.to_fields(), self.ttl)
            return rec, True
        existing = self.get_job(rec.id)
        if existing is None:  # expired between the two calls
            self.kv.hset(key, rec.to_fields(), self.ttl)
            return rec, True
        if existing.state in (JobState.failed.value, JobState.cancelled.value):
            rec.attempts = existing.attempts
            self.kv.hset(key, rec.to_fields(), self.ttl)
            return rec, True
        return existing, False

    def get_job(self, job_id: str) -> JobRecord | None:
        raw = self.kv.hgetall(self._k("job", job_id))
        if "method" not in raw or "objective" not in raw:
            return None
        return JobRecord.from_fields(raw)

    def update_job(self, job_id: str, **fields: Any) -> None:
        self.kv.hset(
            self._k("job", job_id), {k: json.dumps(v) for k, v in fields.items()}, self.ttl
        )

    def get_state(self, job_id: str) -> str | None:
        v = self.kv.hget(self._k("job", job_id), "state")
        return None if v is None else str(json.loads(v))

    # results ------------------------------------------------------------------------
    def put_artifacts(self, job_id: str, packed: bytes) -> None:
        """The result's artifacts (engine.artifacts.pack)."""
        self.kv.set(self._k("artifacts", job_id), packed, self.ttl)

    def get_artifacts(self, job_id: str) -> bytes | None:
        return self.kv.get(self._k("artifacts", job_id))

    # split jobs: the plan of each round, each chunk's scores and passes -----------------
    def put_plan(self, job_id: str, round_: int, plan: bytes) -> None:
        self.kv.set(self._k("plan", f"{job_id}:{round_}"), plan, self.ttl)

    def get_plan(self, job_id: str, round_: int) -> bytes | None:
        return self.kv.get(self._k("plan", f"{job_id}:{round_}"))

    def split_state(self, job_id: str) -> dict[str, Any] | None:
        raw = self.kv.hget(self._k("job", job_id), "split")
        return None if raw is None else dict(json.loads(raw))

    def put_chunk(self, job_id: str, start: int, scores: NDArray[Any], passes: int) -> None:
        """A chunk's scores; a redelivered chunk rewrites the same scores and its passes
        are counted once."""
        self.kv.set(self._k("chunk", f"{job_id}:{start}"), array_to_bytes(scores), self.ttl)
        if self.kv.setnx(self._k("done", f"{job_id}:{start}"), b"1", self.ttl):
            self.kv.incr(self._k("passes", job_id), self.ttl, passes)

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
