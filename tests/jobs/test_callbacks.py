"""Completion callbacks (jobs/callbacks.py): the allowlist, signatures, the records the
store writes when a job ends, and the deliverer against a real local HTTP receiver; then
the API in embedded mode (its deliverer thread, the request check, the secret endpoint)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from api_schemas.jobs import JobState
from engine.errors import CallbackNotAllowed
from jobs import callbacks
from jobs.callbacks import Deliverer, check_url, parse_allowlist, sign, verify
from jobs.store import JobRecord, JobStore, MemoryKV, RedisKV
from lantern.settings import ApiKey, Settings
from lantern_testing.api import register_tiny
from lantern_testing.images import png_bytes, solid
from lantern_testing.processes import wait_for
from service.app import create_app
from service.auth import hash_key

SECRET = "s3cret-s3cret-s3cret"


class Receiver:
    """A real HTTP server on a free local port that records every POST; the first
    ``fail`` answers are ``fail_status``."""

    def __init__(self, fail: int = 0, fail_status: int = 500) -> None:
        self.calls: list[dict[str, Any]] = []
        self.fail = fail
        self.fail_status = fail_status
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.calls.append({"headers": dict(self.headers), "body": body,
                                    "path": self.path})
                failing = len(outer.calls) <= outer.fail
                self.send_response(outer.fail_status if failing else 204)
                if failing and 300 <= outer.fail_status < 400:
                    self.send_header("Location", "http://10.0.0.1/")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}/hook?x=1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def settings(**kw: Any) -> Settings:
    base: dict[str, Any] = {
        "callback_hosts": ["127.0.0.1"],
        "callback_secret": SECRET,
        "callback_backoff_s": 0.05,
        "builtin_model": False,
    }
    return Settings(**{**base, **kw})


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest, redis_url: str) -> Iterator[JobStore]:
    if request.param == "memory":
        yield JobStore(MemoryKV(), 3600)
        return
    client = redis.Redis.from_url(redis_url)
    prefix = f"t{time.time_ns()}"
    yield JobStore(RedisKV(client), 3600, prefix=prefix)
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)


def job(store: JobStore, job_id: str = "j1", owner: str = "anonymous") -> JobRecord:
    rec = JobRecord(id=job_id, model="m", version="v", method="occlusion", params={},
                    objective={}, input=None, owner=owner)
    store.create_job(rec)
    return rec


def deliver_all(d: Deliverer, store: JobStore, job_id: str) -> list[dict[str, Any]]:
    """Run the deliverer until every delivery of the job is finished."""
    def done() -> bool:
        d.run_once()
        out = callbacks.deliveries_of(store, job_id)
        return bool(out) and all(x["state"] != "pending" for x in out)

    wait_for(done, 60, "the deliveries", interval=0.02)
    return callbacks.deliveries_of(store, job_id)


# -- the allowlist --------------------------------------------------------------------
def test_an_empty_allowlist_refuses_every_callback() -> None:
    with pytest.raises(CallbackNotAllowed) as e:
        check_url("https://hooks.example.com/x", parse_allowlist([]))
    assert e.value.code == "callback_not_allowed" and e.value.status == 422
    assert "LANTERN_CALLBACK_HOSTS" in e.value.message


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("ftp://127.0.0.1/x", "http or https"),
        ("file:///etc/passwd", "http or https"),
        ("http://user:pw@127.0.0.1/x", "credentials"),
        ("http://10.0.0.7/x", "not in LANTERN_CALLBACK_HOSTS"),
        ("http://169.254.169.254/latest/meta-data", "not in LANTERN_CALLBACK_HOSTS"),
        ("http://[::1]:8080/x", "not in LANTERN_CALLBACK_HOSTS"),
        ("http://evil.example.org/x", "not in LANTERN_CALLBACK_HOSTS"),
        ("http://localhost/x", "loopback"),  # allowed by name, resolves to 127.0.0.1
        ("http://127.0.0.1:1/x", "not in LANTERN_CALLBACK_HOSTS"),  # port not allowed
        ("http://[::ffff:127.0.0.2]/x", "not in LANTERN_CALLBACK_HOSTS"),
        ("http://127.0.0.1:99999/x", "valid URL"),
    ],
)
def test_refused_urls_say_why(url: str, words: str) -> None:
    allow = parse_allowlist(["127.0.0.1:8080", "localhost", "*.example.com"])
    with pytest.raises(CallbackNotAllowed) as e:
        check_url(url, allow)
    assert words in e.value.message, e.value.message
    assert e.value.details["field"] == "callback_url"


def test_allowed_urls() -> None:
    allow = parse_allowlist(["127.0.0.1:8080", "10.0.0.0/8", "localhost", "[::1]"])
    t = check_url("http://127.0.0.1:8080/a/b?c=d", allow)
    assert (t.host, t.port, t.path, t.addresses) == ("127.0.0.1", 8080, "/a/b?c=d", ("127.0.0.1",))
    assert check_url("https://10.1.2.3/x", allow).port == 443
    assert check_url("http://[::1]:9/x", allow).addresses == ("::1",)
    # a private host name is allowed when its address is listed too
    allow = parse_allowlist(["localhost", "127.0.0.0/8"])
    assert "127.0.0.1" in check_url("http://localhost:8000/", allow).addresses


def test_wildcards_match_subdomains_only() -> None:
    rule = parse_allowlist(["*.example.com"]).hosts[0]
    assert rule.matches("a.example.com", 443) and rule.matches("b.a.example.com", 80)
    assert not rule.matches("example.com", 443) and not rule.matches("badexample.com", 443)


def test_malformed_allowlist_entries_are_refused_at_start() -> None:
    with pytest.raises(ValueError, match="not a port"):
        Settings(callback_hosts=["host:http"], callback_secret=SECRET)
    with pytest.raises(ValueError, match="not a host name"):
        Settings(callback_hosts=["host/path"], callback_secret=SECRET)
    with pytest.raises(ValueError, match="LANTERN_CALLBACK_SECRET"):
        Settings(callback_hosts=["127.0.0.1"])


# -- secrets and signatures -------------------------------------------------------------
def test_signature_is_hmac_of_timestamp_dot_body() -> None:
    body = b'{"id":"j"}'
    header = sign("k", body, 1700000000)
    mac = hmac.new(b"k", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={mac}"
    assert verify("k", body, header, now=1700000010)
    assert not verify("k", body + b" ", header, now=1700000010)
    assert not verify("other", body, header, now=1700000010)
    assert not verify("k", body, header, now=1700000000 + 301)  # a replayed old one


def test_the_secret_is_per_key_with_auth_and_the_setting_without() -> None:
    assert callbacks.owner_secret(settings(), "anonymous") == SECRET
    keyed = settings(api_keys=[ApiKey(name="alice", role="user", sha256="0" * 64)])
    alice = callbacks.owner_secret(keyed, "alice")
    assert alice == hmac.new(SECRET.encode(), b"lantern-callback-secret:alice",
                             hashlib.sha256).hexdigest()
    assert alice != callbacks.owner_secret(keyed, "bob")


# -- records and the deliverer -----------------------------------------------------------
def test_delivery_signed_body_and_headers(store: JobStore, receiver: Receiver) -> None:
    rec = job(store)
    callbacks.register(store, rec.id, receiver.url, fresh=True)
    assert callbacks.deliveries_of(store, rec.id) == []  # nothing until it ends
    store.end_job(rec, state=JobState.cancelled.value, finished_at=time.time())
    (d,) = deliver_all(Deliverer(store, settings()), store, rec.id)
    assert d["state"] == "delivered" and d["tries"] == 1 and d["last_status"] == 204
    (call,) = receiver.calls
    assert call["path"] == "/hook?x=1"
    h = call["headers"]
    assert h["X-Lantern-Delivery"] == f"{rec.id}:0"
    assert h["Content-Type"] == "application/json"
    assert verify(SECRET, call["body"], h["X-Lantern-Signature"], now=time.time())
    body = json.loads(call["body"])
    assert body["id"] == rec.id and body["state"] == "cancelled" and body["attempt"] == 0
    assert body["links"]["self"] == f"/v1/jobs/{rec.id}"
    assert {"error", "timings", "finished_at", "model", "method"} <= set(body)


def test_retries_after_the_receiver_fails_twice(store: JobStore) -> None:
    recv = Receiver(fail=2)
    try:
        rec = job(store)
        callbacks.register(store, rec.id, recv.url, fresh=True)
        store.end_job(rec, state=JobState.failed.value, error={"code": "x", "message": "m",
                                                               "details": {}})
        (d,) = deliver_all(Deliverer(store, settings()), store, rec.id)
        assert d["state"] == "delivered" and d["tries"] == 3
        assert len(recv.calls) == 3
        # the same delivery, body and id each time (receivers deduplicate on the id)
        assert len({c["body"] for c in recv.calls}) == 1
        assert {c["headers"]["X-Lantern-Delivery"] for c in recv.calls} == {f"{rec.id}:0"}
        for c in recv.calls:
            assert verify(SECRET, c["body"], c["headers"]["X-Lantern-Signature"], time.time())
    finally:
        recv.close()


def test_a_redirect_is_a_failure_not_followed(store: JobStore) -> None:
    recv = Receiver(fail=1, fail_status=302)
    try:
        rec = job(store)
        callbacks.register(store, rec.id, recv.url, fresh=True)
        store.end_job(rec, state=JobState.cancelled.value)
        (d,) = deliver_all(Deliverer(store, settings()), store, rec.id)
        assert d["tries"] == 2 and d["state"] == "delivered"
        assert len(recv.calls) == 2  # both to the receiver, none to the Location
    finally:
        recv.close()


def test_given_up_after_the_retry_time(store: JobStore) -> None:
    recv = Receiver(fail=10**6)
    try:
        rec = job(store)
        callbacks.register(store, rec.id, recv.url, fresh=True)
        store.end_job(rec, state=JobState.cancelled.value)
        s = settings(callback_retry_s=0.5, callback_backoff_s=0.05, callback_max_backoff_s=0.1)
        (d,) = deliver_all(Deliverer(store, s), store, rec.id)
        assert d["state"] == "gave_up" and d["last_status"] == 500 and d["tries"] >= 2
        assert len(recv.calls) == d["tries"]
    finally:
        recv.close()


def test_a_crash_between_the_end_and_the_record_loses_nothing(
    store: JobStore, receiver: Receiver
) -> None:
    rec = job(store)
    callbacks.register(store, rec.id, receiver.url, fresh=True)
    # the job ends and its process dies before the hook runs: only the end's write lands
    store.kv.hset(store._job(rec.id), {"state": json.dumps("succeeded")}, 3600)
    assert callbacks.deliveries_of(store, rec.id) == []
    (d,) = deliver_all(Deliverer(store, settings(), sweep_every_s=0), store, rec.id)
    assert d["state"] == "delivered"
    assert json.loads(receiver.calls[0]["body"])["state"] == "succeeded"


def test_a_recorder_that_died_half_way_is_completed_by_the_next(
    store: JobStore, receiver: Receiver
) -> None:
    rec = job(store)
    callbacks.register(store, rec.id, receiver.url, fresh=True)
    store.kv.hset(store._job(rec.id), {"state": json.dumps("failed")}, 3600)
    did = callbacks.delivery_id(rec.id, 0, receiver.url)
    # its first fields written, no state, no due entry: then the process died
    store.kv.hset(f"{store.prefix}:cb:d:{did}", {"id": json.dumps(did),
                                                 "url": json.dumps(receiver.url)}, None)
    assert callbacks.get_delivery(store, did) is None
    (d,) = deliver_all(Deliverer(store, settings(), sweep_every_s=0), store, rec.id)
    assert d["state"] == "delivered" and len(receiver.calls) == 1
    # and one that died after the state, before the due entry, is due again when swept
    rec2 = job(store, "j2")
    callbacks.register(store, rec2.id, receiver.url, fresh=True)
    store.end_job(rec2, state=JobState.cancelled.value)
    did2 = callbacks.delivery_id(rec2.id, 0, receiver.url)
    store.kv.hdel(f"{store.prefix}:cb:due", did2)
    store.kv.sadd(f"{store.prefix}:cb:watch", rec2.id)
    (d2,) = deliver_all(Deliverer(store, settings(), sweep_every_s=0), store, rec2.id)
    assert d2["state"] == "delivered" and len(receiver.calls) == 2


def test_recording_is_idempotent_and_a_late_joiner_is_called_at_once(
    store: JobStore, receiver: Receiver
) -> None:
    rec = job(store)
    callbacks.register(store, rec.id, receiver.url, fresh=True)
    store.end_job(rec, state=JobState.cancelled.value)
    assert callbacks.record_ending(store, rec.id) == []  # recorded once already
    # the same request again, with another URL, after the job ended: recorded at once
    other = receiver.url.replace("/hook", "/other")
    callbacks.register(store, rec.id, other, fresh=False)
    callbacks.register(store, rec.id, receiver.url, fresh=False)  # same URL: no second
    out = deliver_all(Deliverer(store, settings()), store, rec.id)
    assert sorted(d["url"] for d in out) == sorted([receiver.url, other])
    assert sorted(c["path"] for c in receiver.calls) == ["/hook?x=1", "/other?x=1"]


def test_a_resubmitted_job_drops_its_old_urls(store: JobStore, receiver: Receiver) -> None:
    rec = job(store)
    callbacks.register(store, rec.id, receiver.url, fresh=True)
    store.end_job(rec, state=JobState.cancelled.value)
    job(store)  # the same request again, without callback_url: a new run of the job
    rec2 = store.get_job(rec.id)
    assert rec2 is not None and rec2.state == "queued"
    store.end_job(rec2, state=JobState.cancelled.value)
    out = deliver_all(Deliverer(store, settings()), store, rec.id)
    assert len(out) == 1 and len(receiver.calls) == 1  # only the first ending's


def test_a_host_removed_from_the_allowlist_is_not_called(
    store: JobStore, receiver: Receiver
) -> None:
    rec = job(store)
    callbacks.register(store, rec.id, receiver.url, fresh=True)
    store.end_job(rec, state=JobState.cancelled.value)
    s = settings(callback_hosts=["hooks.example.com"], callback_retry_s=0.2)
    (d,) = deliver_all(Deliverer(store, s), store, rec.id)
    assert d["state"] == "gave_up" and d["last_error"].startswith("refused")
    assert receiver.calls == []


# -- the API, embedded -------------------------------------------------------------------
def tiny_image() -> str:
    return base64.b64encode(png_bytes(solid(8, (200, 10, 10)))).decode()


def test_the_api_delivers_and_refuses(tmp_path: Path, receiver: Receiver) -> None:
    s = settings(data_dir=tmp_path)
    with TestClient(create_app(s)) as c:
        register_tiny(c)
        body = {"model": "tiny", "method": "saliency", "image": tiny_image(),
                "callback_url": receiver.url}
        r = c.post("/v1/explanations?wait=10", json=body)
        assert r.status_code == 200, r.text
        job_id = r.json()["job"]
        wait_for(lambda: len(receiver.calls) == 1, 60, "the callback")
        call = receiver.calls[0]
        assert json.loads(call["body"])["state"] == "succeeded"
        secret = c.get("/v1/keys/me/callback-secret").json()
        assert secret["key"] == "anonymous" and secret["secret"] == SECRET
        assert verify(secret["secret"], call["body"], call["headers"]["X-Lantern-Signature"],
                      time.time())
        assert call["headers"]["X-Lantern-Delivery"] == f"{job_id}:1"
        for url in ("http://10.0.0.1/x", "gopher://127.0.0.1/", "http://localhost/x"):
            r = c.post("/v1/explanations", json={**body, "callback_url": url})
            assert r.status_code == 422, r.text
            assert r.json()["code"] == "callback_not_allowed"
            assert r.json()["details"]["field"] == "callback_url"


def test_callbacks_off_by_default(tmp_path: Path) -> None:
    with TestClient(create_app(Settings(data_dir=tmp_path, builtin_model=False))) as c:
        register_tiny(c)
        r = c.post("/v1/explanations", json={"model": "tiny", "method": "saliency",
                                             "image": tiny_image(),
                                             "callback_url": "https://hooks.example.com/"})
        assert r.status_code == 422 and r.json()["code"] == "callback_not_allowed"
        r = c.get("/v1/keys/me/callback-secret")
        assert r.status_code == 422 and r.json()["code"] == "callback_not_allowed"


def test_each_key_reads_its_own_secret(tmp_path: Path) -> None:
    keys = [ApiKey(name=n, role="user", sha256=hash_key(f"key-{n}")) for n in ("alice", "bob")]
    with TestClient(create_app(settings(data_dir=tmp_path, api_keys=keys))) as c:
        a = c.get("/v1/keys/me/callback-secret", headers={"X-API-Key": "key-alice"}).json()
        b = c.get("/v1/keys/me/callback-secret", headers={"X-API-Key": "key-bob"}).json()
        assert a["key"] == "alice" and b["key"] == "bob"
        assert a["secret"] == callbacks.owner_secret(c.app.state.lantern.rt.settings, "alice")
        assert a["secret"] != b["secret"] and SECRET not in (a["secret"], b["secret"])
        assert c.get("/v1/keys/me/callback-secret").status_code == 401
