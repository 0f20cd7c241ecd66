"""A real ``redis-server`` for the Redis backend tests: loopback only, a free port, a temp dir.

Import the fixtures into a test module (``from redis_fixtures import redis_server, redis_url``).
Tests skip with a clear reason when the binary is missing; ``make test`` installs it.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest

SKIP_REASON = "redis-server not installed: apt-get install redis-server (make test installs it)"


def redis_binary() -> str:
    path = shutil.which("redis-server")
    if path is None:
        pytest.skip(SKIP_REASON)
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """One redis-server process we started (and only ever stop by its own pid)."""

    def __init__(self, directory: Path, *, port: int | None = None, appendonly: bool = False,
                 appendfsync: str = "everysec") -> None:
        self.binary = redis_binary()
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> "RedisServer":
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
                "--save", "", "--daemonize", "no", "--protected-mode", "yes",
                "--logfile", str(self.dir / "redis.log"), "--databases", "2"]
        if self.appendonly:
            args += ["--appendonly", "yes", "--appendfsync", self.appendfsync]
        else:
            args += ["--appendonly", "no"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log = (self.dir / "redis.log").read_text(errors="replace")[-2000:] if (self.dir / "redis.log").exists() else ""
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}: {log}")
            if self.ping():
                return self
            time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"redis-server did not answer on port {self.port} within {timeout_s} s")

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def client(self):
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5, retry=Retry(NoBackoff(), 0))

    def kill(self) -> None:
        """SIGKILL: a crash, no chance to flush anything."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def shutdown(self) -> None:
        """A clean ``SHUTDOWN`` (the AOF is flushed and fsynced), then wait for the process."""
        if self.proc is None:
            return
        try:  # a raw socket: redis-py's shutdown() retries with backoff once the server is gone
            with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
                s.sendall(b"SHUTDOWN\r\n" if self.appendonly else b"SHUTDOWN NOSAVE\r\n")
                s.recv(64)
        except OSError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()
        self.proc = None

    def restart(self) -> "RedisServer":
        self.shutdown()
        return self.start()

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()
        self.proc = None


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    """A redis-server for the whole module (no persistence); tests use their own prefixes."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server) -> str:
    return redis_server.url


@pytest.fixture
def prefix() -> str:
    """A key prefix unique to the test, so tests sharing a server never see each other's keys."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def start_redis(tmp_path):
    """Factory for a private server (``appendonly=True`` for persistence tests); stopped after the test."""
    started: list[RedisServer] = []

    def start(**kw) -> RedisServer:
        server = RedisServer(tmp_path / f"redis{len(started)}", **kw).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def closed_port_url() -> str:
    """A URL on which nothing listens (for the start-up failure tests)."""
    return f"redis://:hunter2@127.0.0.1:{free_port()}/0"


os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
