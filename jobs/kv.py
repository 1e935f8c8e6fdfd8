"""The storage operations the job store needs, on Redis or in memory (embedded mode).

Leases and fenced writes are single Redis operations (``SET NX PX`` and Lua scripts), so a
worker that lost its lease — paused past it, or cut off while Redis restarted — can write
nothing. Redis being unreachable raises :class:`~engine.errors.BackendUnavailable`.

The in-memory KV is bounded: past ``max_bytes`` it drops the least recently used keys that
have an expiry (finished jobs, results, inputs); a live job, which has none, is never dropped.
"""

from __future__ import annotations

import builtins
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar, cast

import redis

from engine.errors import BackendUnavailable

#: hset mapping (ARGV pairs) on KEYS[1] only while KEYS[2] holds ARGV[1] (the lease token)
#: and field "attempts" of KEYS[1] is ARGV[2]; ARGV[3]: expiry in s (0 = persist).
_FENCED_HSET = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
if redis.call('HGET', KEYS[1], 'attempts') ~= ARGV[2] then return 0 end
for i = 4, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
if tonumber(ARGV[3]) > 0 then redis.call('EXPIRE', KEYS[1], ARGV[3])
else redis.call('PERSIST', KEYS[1]) end
return 1
"""
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class KV(Protocol):
    def set(self, key: str, value: bytes, ttl: int | None) -> None: ...
    def get(self, key: str) -> bytes | None: ...
    def delete(self, key: str) -> None: ...
    def expire(self, key: str, ttl: int) -> None: ...
    def setnx(self, key: str, value: bytes, ttl: int) -> bool: ...
    def incr(self, key: str, ttl: int, amount: int = 1) -> int: ...
    def hsetnx(self, key: str, fld: str, value: str) -> bool: ...
    def hset(self, key: str, mapping: dict[str, str], ttl: int | None) -> None: ...
    def hget(self, key: str, fld: str) -> str | None: ...
    def hgetall(self, key: str) -> dict[str, str]: ...
    def hdel(self, key: str, fld: str) -> None: ...
    def hincrby(self, key: str, fld: str, amount: int = 1) -> int: ...
    def hincr(self, key: str, counts: dict[str, int]) -> None: ...
    def sadd(self, key: str, member: str) -> bool: ...
    def sadd_count(self, key: str, member: str, ttl: int) -> tuple[bool, int]: ...
    def srem(self, key: str, member: str) -> None: ...
    def smembers(self, key: str) -> builtins.set[str]: ...
    def lease_acquire(self, key: str, token: str, ttl_ms: int) -> bool: ...
    def lease_renew(self, key: str, token: str, ttl_ms: int) -> bool: ...
    def lease_release(self, key: str, token: str) -> None: ...
    def fenced_hset(
        self,
        key: str,
        lease: str,
        token: str,
        attempt: int,
        mapping: dict[str, str],
        ttl: int | None,
    ) -> bool: ...
    def llen(self, key: str) -> int: ...
    def ping(self) -> bool: ...


T = TypeVar("T")


def _unavailable(fn: Callable[..., T]) -> Callable[..., T]:
    def wrapped(*args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError) as e:
            raise BackendUnavailable(
                "The job backend (Redis) is unavailable. Retry in a few seconds."
            ) from e

    wrapped.__name__ = fn.__name__
    wrapped.__doc__ = fn.__doc__
    return wrapped


class RedisKV:
    def __init__(self, client: redis.Redis[bytes]) -> None:
        self.r = client
        self._fenced = client.register_script(_FENCED_HSET)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    @_unavailable
    def set(self, key: str, value: bytes, ttl: int | None) -> None:
        self.r.set(key, value, ex=ttl)

    @_unavailable
    def get(self, key: str) -> bytes | None:
        v = self.r.get(key)
        return bytes(v) if v is not None else None

    @_unavailable
    def delete(self, key: str) -> None:
        self.r.delete(key)

    @_unavailable
    def expire(self, key: str, ttl: int) -> None:
        self.r.expire(key, ttl)

    @_unavailable
    def setnx(self, key: str, value: bytes, ttl: int) -> bool:
        return bool(self.r.set(key, value, ex=ttl, nx=True))

    @_unavailable
    def incr(self, key: str, ttl: int, amount: int = 1) -> int:
        p = self.r.pipeline()
        p.incrby(key, amount)
        p.expire(key, ttl, nx=True)
        return int(p.execute()[0])

    @_unavailable
    def hsetnx(self, key: str, fld: str, value: str) -> bool:
        return bool(self.r.hsetnx(key, fld, value))

    @_unavailable
    def hset(self, key: str, mapping: dict[str, str], ttl: int | None) -> None:
        p = self.r.pipeline()
        p.hset(key, mapping=cast("dict[str | bytes, str]", mapping))
        if ttl is None:
            p.persist(key)
        else:
            p.expire(key, ttl)
        p.execute()

    @_unavailable
    def hget(self, key: str, fld: str) -> str | None:
        v = self.r.hget(key, fld)
        return v.decode() if isinstance(v, bytes) else None

    @_unavailable
    def hgetall(self, key: str) -> dict[str, str]:
        raw = self.r.hgetall(key)
        return {k.decode(): v.decode() for k, v in raw.items()}

    @_unavailable
    def hdel(self, key: str, fld: str) -> None:
        self.r.hdel(key, fld)

    @_unavailable
    def hincrby(self, key: str, fld: str, amount: int = 1) -> int:
        return int(self.r.hincrby(key, fld, amount))

    @_unavailable
    def hincr(self, key: str, counts: dict[str, int]) -> None:
        p = self.r.pipeline()
        for fld, amount in counts.items():
            p.hincrby(key, fld, amount)
        p.execute()

    @_unavailable
    def sadd(self, key: str, member: str) -> bool:
        return bool(self.r.sadd(key, member))

    @_unavailable
    def sadd_count(self, key: str, member: str, ttl: int) -> tuple[bool, int]:
        p = self.r.pipeline(transaction=True)
        p.sadd(key, member)
        p.scard(key)
        p.expire(key, ttl)
        added, count, _ = p.execute()
        return bool(added), int(count)

    @_unavailable
    def srem(self, key: str, member: str) -> None:
        self.r.srem(key, member)

    @_unavailable
    def smembers(self, key: str) -> builtins.set[str]:
        return {m.decode() for m in self.r.smembers(key)}

    @_unavailable
    def lease_acquire(self, key: str, token: str, ttl_ms: int) -> bool:
        return bool(self.r.set(key, token.encode(), px=ttl_ms, nx=True))

    @_unavailable
    def lease_renew(self, key: str, token: str, ttl_ms: int) -> bool:
        return bool(self._renew(keys=[key], args=[token, ttl_ms]))

    @_unavailable
    def lease_release(self, key: str, token: str) -> None:
        self._release(keys=[key], args=[token])

    @_unavailable
    def fenced_hset(
        self,
        key: str,
        lease: str,
        token: str,
        attempt: int,
        mapping: dict[str, str],
        ttl: int | None,
    ) -> bool:
        args: list[str | int] = [token, str(attempt), ttl or 0]
        for k, v in mapping.items():
            args += [k, v]
        return bool(self._fenced(keys=[key, lease], args=args))

    @_unavailable
    def llen(self, key: str) -> int:
        return int(self.r.llen(key))

    @_unavailable
    def ping(self) -> bool:
        return bool(self.r.ping())


def _size(value: Any) -> int:
    if isinstance(value, bytes):
        return len(value)
    if isinstance(value, dict):
        return sum(len(k) + len(str(v)) for k, v in value.items())
    if isinstance(value, set):
        return sum(len(m) for m in value)
    return 64


class MemoryKV:
    """An in-process KV with expiry and a size bound (LRU over expiring keys)."""

    def __init__(self, max_bytes: int = 512 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self._data: OrderedDict[str, tuple[float, Any]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    # -- internals (under the lock) ----------------------------------------------------
    def _live(self, key: str) -> Any:
        item = self._data.get(key)
        if item is None:
            return None
        if item[0] < time.time():
            self._drop(key)
            return None
        self._data.move_to_end(key)
        return item[1]

    def _drop(self, key: str) -> None:
        item = self._data.pop(key, None)
        if item is not None:
            self._bytes -= _size(item[1])

    def _put(self, key: str, expiry: float, value: Any) -> None:
        self._drop(key)
        self._data[key] = (expiry, value)
        self._bytes += _size(value)
        if self._bytes > self.max_bytes:
            self._evict(key)

    def _expiry(self, ttl: int | None) -> float:
        return float("inf") if ttl is None else time.time() + ttl

    def _hmerge(self, key: str, mapping: dict[str, str], expiry: float | None) -> dict[str, str]:
        """Fields written into the hash at ``key`` in place (created if absent), its size
        kept by the fields that changed; ``expiry`` None keeps the key's own (a new key:
        none). Writing a hash costs the fields written, not the whole hash (a job's record,
        the metrics counters)."""
        h = self._live(key)
        if not isinstance(h, dict):
            if h is not None:  # another type under the key: replaced, as Redis would refuse
                self._drop(key)
            h = {}
            self._data[key] = (float("inf") if expiry is None else expiry, h)
        elif expiry is not None:
            self._data[key] = (expiry, h)
        grown = 0
        for k, v in mapping.items():
            old = h.get(k)
            grown += len(v) - (len(old) if old is not None else -len(k))
            h[k] = v
        self._bytes += grown
        if grown > 0 and self._bytes > self.max_bytes:
            self._evict(key)
        return h

    def _evict(self, keep: str) -> None:
        for k in [k for k, (exp, _) in self._data.items() if exp != float("inf")]:
            if self._bytes <= self.max_bytes or k == keep:
                break
            self._drop(k)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with self._lock:
            yield

    # -- the KV --------------------------------------------------------------------------
    def set(self, key: str, value: bytes, ttl: int | None) -> None:
        with self._locked():
            self._put(key, self._expiry(ttl), value)

    def get(self, key: str) -> bytes | None:
        with self._locked():
            v = self._live(key)
            return v if isinstance(v, bytes) else None

    def delete(self, key: str) -> None:
        with self._locked():
            self._drop(key)

    def expire(self, key: str, ttl: int) -> None:
        with self._locked():
            v = self._live(key)
            if v is not None:
                self._put(key, time.time() + ttl, v)

    def setnx(self, key: str, value: bytes, ttl: int) -> bool:
        with self._locked():
            if self._live(key) is not None:
                return False
            self._put(key, time.time() + ttl, value)
            return True

    def incr(self, key: str, ttl: int, amount: int = 1) -> int:
        with self._locked():
            v = self._live(key)
            n = (int(v) if isinstance(v, bytes) else 0) + amount
            expiry = self._data[key][0] if v is not None else time.time() + ttl
            self._put(key, expiry, str(n).encode())  # as Redis keeps counters
            return n

    def hsetnx(self, key: str, fld: str, value: str) -> bool:
        with self._locked():
            h = self._live(key)
            if h is None:
                self._put(key, float("inf"), {fld: value})
                return True
            if fld in h:
                return False
            self._hmerge(key, {fld: value}, None)
            return True

    def hset(self, key: str, mapping: dict[str, str], ttl: int | None) -> None:
        with self._locked():
            self._hmerge(key, mapping, self._expiry(ttl))

    def hget(self, key: str, fld: str) -> str | None:
        with self._locked():
            h = self._live(key)
            return None if h is None else h.get(fld)

    def hgetall(self, key: str) -> dict[str, str]:
        with self._locked():
            h = self._live(key)
            return dict(h) if h else {}

    def hdel(self, key: str, fld: str) -> None:
        with self._locked():
            h = self._live(key)
            if isinstance(h, dict) and fld in h:
                self._bytes -= len(fld) + len(h.pop(fld))

    def _hincrby(self, key: str, fld: str, amount: int) -> int:
        h = self._live(key)
        n = int(h.get(fld, "0") if isinstance(h, dict) else "0") + amount
        self._hmerge(key, {fld: str(n)}, None)
        return n

    def hincrby(self, key: str, fld: str, amount: int = 1) -> int:
        with self._locked():
            return self._hincrby(key, fld, amount)

    def hincr(self, key: str, counts: dict[str, int]) -> None:
        with self._locked():
            for fld, amount in counts.items():
                self._hincrby(key, fld, amount)

    def sadd(self, key: str, member: str) -> bool:
        with self._locked():
            s = set(self._live(key) or set())
            added = member not in s
            s.add(member)
            self._put(key, float("inf") if key not in self._data else self._data[key][0], s)
            return added

    def sadd_count(self, key: str, member: str, ttl: int) -> tuple[bool, int]:
        with self._locked():
            s = set(self._live(key) or set())
            added = member not in s
            s.add(member)
            self._put(key, time.time() + ttl, s)
            return added, len(s)

    def srem(self, key: str, member: str) -> None:
        with self._locked():
            s = self._live(key)
            if isinstance(s, set) and member in s:
                s.discard(member)
                self._bytes -= len(member)

    def smembers(self, key: str) -> builtins.set[str]:
        with self._locked():
            return set(self._live(key) or set())

    def lease_acquire(self, key: str, token: str, ttl_ms: int) -> bool:
        with self._locked():
            if self._live(key) is not None:
                return False
            self._put(key, time.time() + ttl_ms / 1000.0, token.encode())
            return True

    def lease_renew(self, key: str, token: str, ttl_ms: int) -> bool:
        with self._locked():
            if self._live(key) != token.encode():
                return False
            self._put(key, time.time() + ttl_ms / 1000.0, token.encode())
            return True

    def lease_release(self, key: str, token: str) -> None:
        with self._locked():
            if self._live(key) == token.encode():
                self._drop(key)

    def fenced_hset(
        self,
        key: str,
        lease: str,
        token: str,
        attempt: int,
        mapping: dict[str, str],
        ttl: int | None,
    ) -> bool:
        with self._locked():
            if self._live(lease) != token.encode():
                return False
            h = self._live(key)
            if not isinstance(h, dict) or h.get("attempts") != str(attempt):
                return False
            self._hmerge(key, mapping, self._expiry(ttl))
            return True

    def llen(self, key: str) -> int:
        return 0

    def ping(self) -> bool:
        return True
