"""Which workers are up and what they run models on: each worker keeps a short-lived record
in the job store (renewed by a thread), and the API's /readyz lists them.

A record lives ``3 * interval`` seconds: a worker that stops renewing it (gone, or cut off
from Redis) drops off the list by itself.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from typing import Any

import onnxruntime as ort
import redis

from engine.errors import BackendUnavailable
from engine.models.runtime import session_providers
from jobs.store import JobStore, RedisKV
from lantern.settings import Settings

log = logging.getLogger("lantern.presence")

INTERVAL_S = 10.0


def _set(store: JobStore) -> str:
    return f"{store.prefix}:workers"


def _key(store: JobStore, name: str) -> str:
    return f"{store.prefix}:worker:{name}"


def worker_record(name: str, providers: tuple[str, ...], queue: str) -> dict[str, Any]:
    return {
        "name": name,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "queue": queue,
        "onnxruntime": ort.__version__,
        "providers": session_providers(providers),
    }


def announce(store: JobStore, record: dict[str, Any], ttl_s: int) -> None:
    """Write (or renew) a worker's record."""
    name = str(record["name"])
    fields = {k: json.dumps(v) for k, v in {**record, "seen_at": time.time()}.items()}
    store.kv.hset(_key(store, name), fields, ttl_s)
    store.kv.sadd(_set(store), name)


def withdraw(store: JobStore, name: str) -> None:
    store.kv.delete(_key(store, name))
    store.kv.srem(_set(store), name)


def workers(store: JobStore) -> list[dict[str, Any]]:
    """The live workers' records, by name (expired ones are dropped from the list)."""
    out = []
    for name in sorted(store.kv.smembers(_set(store))):
        raw = store.kv.hgetall(_key(store, name))
        if not raw:
            store.kv.srem(_set(store), name)
            continue
        out.append({k: json.loads(v) for k, v in raw.items()})
    return out


class Presence:
    """A worker's record, renewed every ``interval`` seconds by a daemon thread."""

    def __init__(
        self, store: JobStore, record: dict[str, Any], interval: float = INTERVAL_S
    ) -> None:
        self.store = store
        self.record = record
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lantern-presence", daemon=True)

    def start(self) -> Presence:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        try:
            withdraw(self.store, str(self.record["name"]))
        except BackendUnavailable:
            pass  # it expires by itself

    def _run(self) -> None:
        ttl = max(1, round(3 * self.interval))
        while True:
            try:
                announce(self.store, self.record, ttl)
            except BackendUnavailable:
                pass  # Redis away: try again
            except Exception:
                log.exception("worker record not written")
            if self._stop.wait(self.interval):
                return


def start_for(settings: Settings, name: str) -> Presence | None:
    """A worker process's presence (Redis mode; None without Redis)."""
    if not settings.redis_url:
        return None
    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=5, socket_timeout=10)
    store = JobStore(RedisKV(client), settings.result_ttl_s)
    record = worker_record(name, tuple(settings.ort_providers), settings.queue)
    return Presence(store, record).start()
