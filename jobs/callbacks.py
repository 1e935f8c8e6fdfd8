"""Completion callbacks: when a job ends (succeeded, failed or cancelled) Lantern POSTs its
status to the ``callback_url`` its request carried, signed, retried with backoff for a
bounded time, at least once (framework-free: the job store and httpx).

Nothing accepted is lost. The records, in the job store's KV:

* ``cb:urls:{job}``  the callback URLs registered on a job (hash url -> when), kept while
  the job lives; a job with URLs is also in the ``cb:watch`` set;
* ``cb:d:{id}``      one **delivery** per (job, the attempt it ended in, URL): the status
  body as it was when the job ended, the owner whose secret signs it, tries, next try,
  deadline and outcome; pending ones are in the ``cb:due`` hash (id -> next try), so a
  round reads one hash and then only the deliveries that are due.

A delivery is recorded by the store right after the write that ends the job (its
``end_job`` / ``fenced_end``, :func:`job_ended`) — every path that ends a job goes through
one of them (a run that completes or fails, a split's failure, a cancel, a reaped job). The
end is one Redis write (a Lua script for a fenced end) and the record a few more, so a
process can die between the two: the deliverer's sweep over ``cb:watch`` then finds the job
ended with URLs and no delivery, and records it. Recording is idempotent (the delivery's id
is its job, attempt and URL, and its state is written last, once: ``HSETNX``), so the hook
and the sweep may both run it, and one that dies half way is completed by the next.

The **deliverer** (a thread in each API process) claims due deliveries under a lease, POSTs
them, and records the outcome; a 2xx is delivered, anything else (or no answer) is tried
again after ``callback_backoff_s`` doubling up to ``callback_max_backoff_s``, until
``callback_retry_s`` after the job ended, then given up. A process that dies mid-POST
leaves the delivery pending: it is sent again (at least once; receivers deduplicate on
``X-Lantern-Delivery``).

Signature (docs/CALLBACKS.md): ``X-Lantern-Signature: t=<unix ts>,v1=<hex HMAC-SHA256 of
"<ts>.<body>" under the owner's secret>``; ``X-Lantern-Delivery: <job id>:<attempt>``.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from api_schemas.jobs import JobState
from engine.errors import BackendUnavailable, CallbackNotAllowed

if TYPE_CHECKING:
    from jobs.store import JobRecord, JobStore
    from lantern.settings import Settings

log = logging.getLogger("lantern.callbacks")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[str]]

MAX_URL_CHARS = 2048
SIGNATURE_HEADER = "X-Lantern-Signature"
DELIVERY_HEADER = "X-Lantern-Delivery"
_SECRET_CONTEXT = b"lantern-callback-secret:"
_DEFAULT_PORTS = {"http": 80, "https": 443}

#: Set when a delivery is recorded in this process: its deliverer looks at once.
WAKE = threading.Event()


# -- the allowlist ------------------------------------------------------------------------
@dataclass(frozen=True)
class HostRule:
    host: str  # lower case; "*.example.com" matches its subdomains
    port: int | None  # None: any port

    def matches(self, host: str, port: int) -> bool:
        if self.port is not None and self.port != port:
            return False
        if self.host.startswith("*."):
            return host.endswith(self.host[1:]) and len(host) > len(self.host) - 1
        return host == self.host


@dataclass(frozen=True)
class NetRule:
    net: IPNetwork
    port: int | None

    def matches(self, addr: IPAddress, port: int) -> bool:
        return (self.port is None or self.port == port) and addr in self.net


@dataclass(frozen=True)
class Allowlist:
    hosts: tuple[HostRule, ...]
    nets: tuple[NetRule, ...]

    @property
    def empty(self) -> bool:
        return not self.hosts and not self.nets


def _port(text: str, entry: str) -> int | None:
    if text in ("", "*"):
        return None
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"LANTERN_CALLBACK_HOSTS entry {entry!r}: {text!r} is not a port.")
    return int(text)


def parse_allowlist(entries: Sequence[str]) -> Allowlist:
    """LANTERN_CALLBACK_HOSTS: ``host``, ``*.domain``, ``host:port``, an address
    (``127.0.0.1``, ``[::1]:8080``) or a range (``10.0.0.0/8``); a port ``*`` or none: any."""
    hosts: list[HostRule] = []
    nets: list[NetRule] = []
    for raw in entries:
        entry = raw.strip().lower()
        if not entry:
            continue
        if entry.startswith("["):
            addr, _, rest = entry[1:].partition("]")
            host, port = addr, _port(rest.removeprefix(":"), raw)
        elif entry.count(":") == 1:
            host, _, p = entry.partition(":")
            port = _port(p, raw)
        else:
            host, port = entry, None
        try:
            nets.append(NetRule(ipaddress.ip_network(host, strict=False), port))
            continue
        except ValueError:
            pass
        label = host.removeprefix("*.")
        if not label or any(
            not part or not all(c.isalnum() or c == "-" for c in part)
            for part in label.split(".")
        ):
            raise ValueError(
                f"LANTERN_CALLBACK_HOSTS entry {raw!r} is not a host name, host:port, "
                "address or address range."
            )
        hosts.append(HostRule(host, port))
    return Allowlist(tuple(hosts), tuple(nets))


@functools.lru_cache(maxsize=8)
def _allowlist(entries: tuple[str, ...]) -> Allowlist:
    return parse_allowlist(entries)


def allowlist(settings: Settings) -> Allowlist:
    """The settings' allowlist (parsed once)."""
    return _allowlist(tuple(settings.callback_hosts))


def _address(text: str) -> IPAddress | None:
    try:
        addr = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


@dataclass(frozen=True)
class Target:
    """A callback URL as checked: where to connect (the addresses its host resolved to,
    every one allowed) and how to ask for it there."""

    url: str
    scheme: str
    host: str
    port: int
    path: str
    addresses: tuple[str, ...]


def _refuse(message: str, url: str, **details: Any) -> CallbackNotAllowed:
    return CallbackNotAllowed(message, details={"field": "callback_url", "url": url, **details})


def check_url(url: str, allow: Allowlist, resolver: Resolver = system_resolver) -> Target:
    """The callback URL, if this server may call it; else CallbackNotAllowed (422) saying
    what to change. Its host must match an entry of LANTERN_CALLBACK_HOSTS, and every
    address it resolves to must be public, or inside an address entry of the list (private,
    loopback, link-local and reserved addresses are allowed only so)."""
    if allow.empty:
        raise _refuse(
            "This server sends no callbacks (LANTERN_CALLBACK_HOSTS is empty): drop "
            "callback_url and poll GET /v1/jobs/{job}, or ask the operator to allow your host.",
            url,
        )
    if len(url) > MAX_URL_CHARS:
        raise _refuse(f"callback_url is longer than {MAX_URL_CHARS} characters.", url[:64])
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise _refuse("callback_url is not a valid URL.", url) from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise _refuse(
            f"callback_url must be an http or https URL, not {scheme or 'scheme-less'}.", url
        )
    if parts.username is not None or parts.password is not None:
        raise _refuse("callback_url may not carry credentials (user:password@).", url)
    host = (parts.hostname or "").lower().rstrip(".")
    if not host:
        raise _refuse("callback_url has no host.", url)
    port = port or _DEFAULT_PORTS[scheme]
    literal = _address(host)
    if literal is not None:
        if not any(r.matches(literal, port) for r in allow.nets):
            raise _refuse(
                f"The address {host} (port {port}) is not in LANTERN_CALLBACK_HOSTS: use an "
                "allowed host, or ask the operator to allow it.",
                url,
                host=host,
            )
        resolved = [str(literal)]
    else:
        if not any(r.matches(host, port) for r in allow.hosts):
            raise _refuse(
                f"The host {host} (port {port}) is not in LANTERN_CALLBACK_HOSTS: use an "
                "allowed host, or ask the operator to allow it.",
                url,
                host=host,
            )
        try:
            resolved = resolver(host, port)
        except OSError:
            resolved = []
        if not resolved:
            raise _refuse(f"The host {host} does not resolve: check callback_url.", url, host=host)
    for text in resolved:
        addr = _address(text)
        if addr is None:
            raise _refuse(f"The host {host} resolved to {text!r}, not an address.", url)
        if not addr.is_global and not any(r.matches(addr, port) for r in allow.nets):
            raise _refuse(
                f"The host {host} resolves to {addr}, a private, loopback, link-local or "
                "reserved address, which callbacks may not reach unless the operator lists "
                "it (or its range) in LANTERN_CALLBACK_HOSTS.",
                url,
                host=host,
                address=str(addr),
            )
    path = urlunsplit(("", "", parts.path or "/", parts.query, ""))
    return Target(url, scheme, host, port, path, tuple(resolved))


# -- secrets and signatures ----------------------------------------------------------------
def owner_secret(settings: Settings, owner: str) -> str:
    """The secret that signs ``owner``'s callbacks: with API keys, HMAC-SHA256 of the key's
    name under LANTERN_CALLBACK_SECRET (hex; its owner reads it at
    GET /v1/keys/me/callback-secret); without keys, LANTERN_CALLBACK_SECRET itself."""
    server = settings.callback_secret
    if not server:
        raise CallbackNotAllowed(
            "This server signs no callbacks (LANTERN_CALLBACK_SECRET is not set).",
            details={"setting": "LANTERN_CALLBACK_SECRET"},
        )
    if not settings.api_keys:
        return server
    return hmac.new(server.encode(), _SECRET_CONTEXT + owner.encode(), hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The X-Lantern-Signature value of ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(secret: str, body: bytes, header: str, now: float, tolerance_s: float = 300) -> bool:
    """A receiver's check (the recipe of docs/CALLBACKS.md): the signature is ``secret``'s
    and was made within ``tolerance_s`` of ``now``."""
    fields = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        ts = int(fields["t"])
    except (KeyError, ValueError):
        return False
    expected = sign(secret, body, ts).split("v1=", 1)[1]
    return abs(now - ts) <= tolerance_s and hmac.compare_digest(expected, fields.get("v1", ""))


# -- the records ---------------------------------------------------------------------------
def _k(store: JobStore, kind: str, key: str = "") -> str:
    return f"{store.prefix}:cb:{kind}:{key}" if key else f"{store.prefix}:cb:{kind}"


def delivery_id(job_id: str, attempt: int, url: str) -> str:
    return f"{job_id}:{attempt}:{hashlib.sha256(url.encode()).hexdigest()[:12]}"


def status_body(rec: JobRecord) -> dict[str, Any]:
    """The job's status as GET /v1/jobs/{job} answers it (its result summary and previews
    left out: follow ``links``), with the attempt it ended in."""
    timings: dict[str, float] = {}
    if rec.started_at is not None:
        timings["queued_ms"] = round((rec.started_at - rec.created_at) * 1000.0, 2)
        if rec.finished_at is not None:
            timings["compute_ms"] = round((rec.finished_at - rec.started_at) * 1000.0, 2)
    base = f"/v1/jobs/{rec.id}"
    return {
        "id": rec.id,
        "state": rec.state,
        "attempt": rec.attempts,
        "progress": rec.progress,
        "model": rec.model,
        "version": rec.version,
        "method": rec.method,
        "created_at": rec.created_at,
        "started_at": rec.started_at,
        "finished_at": rec.finished_at,
        "timings": timings,
        "model_calls": rec.model_calls,
        "error": rec.error,
        "links": {
            "self": base,
            "result": f"{base}/result?format=json",
            "png": f"{base}/result?format=png",
            "overlay": f"{base}/result?format=overlay",
            "npy": f"{base}/result?format=npy",
        },
    }


def register(store: JobStore, job_id: str, url: str, *, fresh: bool) -> None:
    """Ask for a callback to ``url`` when the job ends (a request that created the job, or
    joined it: its URL is added). ``fresh``: a new job, whose earlier URLs (of a failed or
    cancelled run of the same request) no longer apply. A job that has ended already (the
    request joined a finished one) gets its delivery at once."""
    key = _k(store, "urls", job_id)
    if fresh:
        store.kv.delete(key)
    store.kv.hset(key, {url: json.dumps(time.time())}, None)
    store.kv.sadd(_k(store, "watch"), job_id)
    state = store.get_state(job_id)
    if state is not None and JobState(state).terminal:
        record_ending(store, job_id)


def forget_urls(store: JobStore, job_id: str) -> None:
    """A job created afresh (the request submitted again after it failed or was cancelled):
    its earlier URLs are recorded for the ending they were asked for, then dropped."""
    job_ended(store, job_id)
    store.kv.delete(_k(store, "urls", job_id))


def job_ended(store: JobStore, job_id: str) -> None:
    """The store's hook, right after a write that ended a job: its deliveries recorded.
    Never raises (the end happened; the deliverer's sweep records what this could not)."""
    try:
        record_ending(store, job_id)
    except BackendUnavailable:
        log.warning("job %s: callback not recorded yet (Redis away); the sweep will", job_id)
    except Exception:
        log.exception("job %s: recording its callbacks failed; the sweep tries again", job_id)


def record_ending(store: JobStore, job_id: str) -> list[str]:
    """Record a delivery per callback URL of an ended job (idempotent); their ids."""
    urls = store.kv.hgetall(_k(store, "urls", job_id))
    if not urls:
        return []
    rec = store.get_job(job_id)
    if rec is None:
        store.kv.srem(_k(store, "watch"), job_id)
        return []
    if not JobState(rec.state).terminal:
        return []
    body = json.dumps(status_body(rec), sort_keys=True, separators=(",", ":"))
    now = time.time()
    out = []
    for url in sorted(urls):
        did = delivery_id(job_id, rec.attempts, url)
        key = _k(store, "d", did)
        raw = store.kv.hgetall(key)
        if "state" in raw:  # recorded already (by the hook, or the sweep)
            if json.loads(raw["state"]) == "pending" and "next_at" in raw:
                # due again, in case a recorder died between the record and the due entry
                store.kv.hset(_k(store, "due"), {did: raw["next_at"]}, None)
            continue
        fields = {
            "id": did,
            "job": job_id,
            "attempt": rec.attempts,
            "url": url,
            "owner": rec.owner,
            "body": body,
            "created_at": now,
            "next_at": now,
            "tries": 0,
            "last_error": None,
            "last_status": None,
        }
        # the fields, then the state last and once: a recorder that dies half way leaves a
        # record without a state, which the next one writes again
        store.kv.hset(key, {k: json.dumps(v) for k, v in fields.items()}, None)
        if store.kv.hsetnx(key, "state", json.dumps("pending")):
            store.kv.hset(_k(store, "due"), {did: json.dumps(now)}, None)
            store.kv.sadd_count(_k(store, "of", job_id), did, store.ttl)
            out.append(did)
    store.kv.srem(_k(store, "watch"), job_id)
    store.kv.expire(_k(store, "urls", job_id), store.ttl)
    if out:
        WAKE.set()
    return out


def get_delivery(store: JobStore, did: str) -> dict[str, Any] | None:
    raw = store.kv.hgetall(_k(store, "d", did))
    if "url" not in raw or "state" not in raw:  # none, or one a dead recorder left half way
        return None
    return {k: json.loads(v) for k, v in raw.items()}


def deliveries_of(store: JobStore, job_id: str) -> list[dict[str, Any]]:
    """The job's deliveries still in the store (pending ones, and finished ones until
    they expire), oldest first — for tests and operators."""
    out = []
    for did in store.kv.smembers(_k(store, "of", job_id)):
        d = get_delivery(store, did)
        if d is not None:
            out.append(d)
    return sorted(out, key=lambda d: float(d["created_at"]))


# -- the deliverer -------------------------------------------------------------------------
class Deliverer:
    """Claims due deliveries from the store and POSTs them (a thread per API process;
    several processes share the work through the deliveries' leases)."""

    def __init__(
        self,
        store: JobStore,
        settings: Settings,
        *,
        resolver: Resolver = system_resolver,
        transport: httpx.BaseTransport | None = None,
        sweep_every_s: float | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.allow = allowlist(settings)
        self.resolver = resolver
        self.client = httpx.Client(
            timeout=settings.callback_timeout_s,
            follow_redirects=False,  # a redirect could point anywhere: it is a failure
            transport=transport,
            trust_env=False,  # no proxy from the environment: the allowlist is the rule
        )
        self.sweep_every_s = (
            settings.reconcile_interval_s if sweep_every_s is None else sweep_every_s
        )
        self._last_sweep = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # one round ----------------------------------------------------------------------
    def sweep(self) -> list[str]:
        """Ended jobs whose deliveries were not recorded (their process died between the
        end and the record): recorded now."""
        out: list[str] = []
        for job_id in sorted(self.store.kv.smembers(_k(self.store, "watch"))):
            state = self.store.get_state(job_id)
            if state is None or JobState(state).terminal:  # a live job: one read, nothing more
                out += record_ending(self.store, job_id)
        return out

    def run_once(self, now: float | None = None) -> list[str]:
        """Sweep when due, then try every due delivery once; the ids tried."""
        now = time.time() if now is None else now
        if time.monotonic() - self._last_sweep >= self.sweep_every_s:
            self._last_sweep = time.monotonic()
            self.sweep()
        tried = []
        due = self.store.kv.hgetall(_k(self.store, "due"))  # id -> its next try
        for did in sorted(did for did, at in due.items() if float(json.loads(at)) <= now):
            d = get_delivery(self.store, did)
            if d is None or d["state"] != "pending":
                self.store.kv.hdel(_k(self.store, "due"), did)
                continue
            if float(d["next_at"]) > now:
                continue
            lease = self.store.lease_key(f"cb:{did}")
            token = f"deliverer:{id(self)}:{time.time_ns()}"
            if not self.store.acquire(lease, token, self.settings.callback_timeout_s + 10):
                continue  # another process sends it
            try:
                self._attempt(did, d)
                tried.append(did)
            finally:
                self.store.release(lease, token)
        return tried

    def _attempt(self, did: str, d: dict[str, Any]) -> None:
        key = _k(self.store, "d", did)
        deadline = float(d["created_at"]) + self.settings.callback_retry_s
        body = str(d["body"]).encode()
        status: int | None = None
        try:
            target = check_url(str(d["url"]), self.allow, self.resolver)
            secret = owner_secret(self.settings, str(d["owner"]))
            status = self._post(target, body, secret, f"{d['job']}:{d['attempt']}")
            error = None if 200 <= status < 300 else f"HTTP {status}"
        except CallbackNotAllowed as e:
            error = f"refused: {e.message}"
        except httpx.HTTPError as e:
            error = f"{type(e).__name__}: {e}"[:300]
        tries = int(d["tries"]) + 1
        now = time.time()
        fields: dict[str, Any] = {"tries": tries, "last_status": status, "last_error": error}
        if error is None:
            fields.update(state="delivered", delivered_at=now)
            log.info("callback %s delivered (try %d)", did, tries)
        elif now >= deadline:
            fields.update(state="gave_up", gave_up_at=now)
            log.warning("callback %s given up after %d tries: %s", did, tries, error)
        else:
            delay = min(
                self.settings.callback_backoff_s * 2 ** min(tries - 1, 30),
                self.settings.callback_max_backoff_s,
            )
            fields["next_at"] = min(now + delay, deadline)
            log.info("callback %s failed (try %d: %s); next in %.1f s", did, tries, error, delay)
        final = fields.get("state") in ("delivered", "gave_up")
        self.store.kv.hset(
            key, {k: json.dumps(v) for k, v in fields.items()}, self.store.ttl if final else None
        )
        if final:
            self.store.kv.hdel(_k(self.store, "due"), did)
        else:
            self.store.kv.hset(_k(self.store, "due"), {did: json.dumps(fields["next_at"])}, None)

    def _post(self, target: Target, body: bytes, secret: str, delivery: str) -> int:
        """POST to an address the check allowed (not the name again: a second lookup could
        answer another address), with the host's name as Host and TLS server name."""
        addr = target.addresses[0]
        netloc = f"[{addr}]" if ":" in addr else addr
        url = f"{target.scheme}://{netloc}:{target.port}{target.path}"
        default = _DEFAULT_PORTS[target.scheme] == target.port
        headers = {
            "Host": target.host if default else f"{target.host}:{target.port}",
            "Content-Type": "application/json",
            "User-Agent": "Lantern-Callbacks/1",
            SIGNATURE_HEADER: sign(secret, body, int(time.time())),
            DELIVERY_HEADER: delivery,
        }
        extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
        r = self.client.post(url, content=body, headers=headers, extensions=extensions)
        return r.status_code

    # the thread -----------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="lantern-callbacks", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        WAKE.set()
        if self._thread is not None:
            self._thread.join(timeout=self.settings.callback_timeout_s + 5)
        self.client.close()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except BackendUnavailable:
                pass  # Redis away: next round
            except Exception:
                log.exception("callback round failed")
            WAKE.wait(self.settings.callback_poll_s)
            WAKE.clear()
