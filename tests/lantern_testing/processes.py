"""Real processes for tests: a private redis-server on a free port, and helpers to wait."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: object, timeout: float, what: str, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():  # type: ignore[operator]
                return
        except Exception:
            pass
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout} s waiting for {what}")


class RedisServer:
    """A private redis-server that a test can stop and start again on the same port and
    directory (with appendonly, what was accepted survives)."""

    def __init__(self, workdir: Path, *, appendonly: bool = True) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not installed (.ci/run installs it)")
        self.exe = exe
        self.workdir = workdir
        self.appendonly = appendonly
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                self.exe,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes" if self.appendonly else "no",
                "--appendfsync",
                "always",  # every accepted write is on disk: a kill -9 loses nothing
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url)
        wait_for(client.ping, 10, "redis-server")

    def kill(self) -> None:
        """kill -9: no shutdown, no last flush."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: redis flushes the append-only file and exits
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@contextmanager
def redis_server(workdir: Path, *, appendonly: bool = False) -> Iterator[str]:
    """Start a private redis-server on a free port; yield its URL; stop it."""
    exe = shutil.which("redis-server")
    if exe is None:
        raise RuntimeError("redis-server is not installed (.ci/run installs it)")
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [
            exe,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "yes" if appendonly else "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(url)
        wait_for(client.ping, 10, "redis-server")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


LANTERN = [sys.executable, "-m", "lantern.cli"]


class Proc:
    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self.fh = log.open("wb")
        self.p = subprocess.Popen(
            args, env=env, stdout=self.fh, stderr=subprocess.STDOUT, start_new_session=True
        )

    def stop(self) -> None:
        if self.p.poll() is None:
            os.killpg(self.p.pid, signal.SIGTERM)
            try:
                self.p.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.p.pid, signal.SIGKILL)
                self.p.wait(5)
        self.fh.close()

    def signal_group(self, sig: int) -> None:
        """Signal the whole process group (a worker's master and its pool)."""
        os.killpg(self.p.pid, sig)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


@contextmanager
def embedded_api(root: Path, **env_overrides: str) -> Iterator[str]:
    """`lantern serve` in embedded mode (no Redis) on a free port; yields its base URL."""
    import httpx

    root.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "LANTERN_DATA_DIR": str(root / "data"), "LANTERN_ORT_THREADS": "1"}
    env.pop("LANTERN_REDIS_URL", None)
    env.update(env_overrides)
    port = free_port()
    api = Proc([*LANTERN, "serve", "--port", str(port)], env, root / "api.log")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: httpx.get(f"{base}/readyz").status_code == 200, 120, "the API")
        yield base
    except Exception:
        print(api.tail())
        raise
    finally:
        api.stop()
