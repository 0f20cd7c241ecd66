"""A real ``redis-server`` for the Redis backend tests: loopback only, a free port, a temp dir.

Import the fixtures into a test module (``from redis_fixtures import redis_server, redis_url``).
Tests skip with a clear reason when the binary is missing; ``make test`` installs it.
``redis_cluster`` starts three ``--cluster-enabled`` masters and joins them with
``redis-cli --cluster create`` (``redis-tools``); ``any_redis_url`` runs a test once on a
single server and once on that cluster.
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
CLI_SKIP_REASON = "redis-cli not installed: apt-get install redis-tools (make test installs it)"


def redis_binary() -> str:
    path = shutil.which("redis-server")
    if path is None:
        pytest.skip(SKIP_REASON)
    return path


def redis_cli_binary() -> str:
    path = shutil.which("redis-cli")
    if path is None:
        pytest.skip(CLI_SKIP_REASON)
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """One redis-server process we started (and only ever stop by its own pid)."""

    def __init__(self, directory: Path, *, port: int | None = None, appendonly: bool = False,
                 appendfsync: str = "everysec", extra_args: tuple[str, ...] = ()) -> None:
        self.binary = redis_binary()
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self.extra_args = tuple(extra_args)
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
        args += list(self.extra_args)
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


class RedisCluster:
    """Three ``--cluster-enabled`` masters on free loopback ports (no replicas), joined by
    ``redis-cli --cluster create``; stopped only by their own pids."""

    def __init__(self, directory: Path, masters: int = 3, *, appendonly: bool = False,
                 node_timeout_ms: int = 2000) -> None:
        self.cli = redis_cli_binary()
        self.nodes = [RedisServer(Path(directory) / f"node{i}", appendonly=appendonly, appendfsync="always",
                                  extra_args=("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                                              "--cluster-port", str(free_port()),
                                              "--cluster-node-timeout", str(node_timeout_ms)))
                      for i in range(masters)]

    @property
    def url(self) -> str:
        """Any one node is enough: the client discovers the others."""
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}"

    def start(self, timeout_s: float = 20.0) -> "RedisCluster":
        try:
            for node in self.nodes:
                node.start()
            created = subprocess.run([self.cli, "--cluster", "create",
                                      *(f"127.0.0.1:{node.port}" for node in self.nodes),
                                      "--cluster-replicas", "0", "--cluster-yes"],
                                     capture_output=True, text=True, timeout=timeout_s)
            if created.returncode != 0:
                raise RuntimeError(f"redis-cli --cluster create failed: {created.stdout[-2000:]}{created.stderr[-2000:]}")
            self.wait_ok(timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ok(self, timeout_s: float = 20.0) -> None:
        """Until every node reports ``cluster_state:ok`` (after a node was restarted)."""
        deadline = time.monotonic() + timeout_s
        while not all(self.cluster_ok(node) for node in self.nodes):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the cluster did not reach cluster_state:ok within {timeout_s} s")
            time.sleep(0.02)

    def cluster_ok(self, node: RedisServer) -> bool:
        """``cluster_state:ok`` on ``node``, and every slot assigned in its view."""
        out = subprocess.run([self.cli, "-p", str(node.port), "cluster", "info"], capture_output=True, text=True,
                             timeout=5).stdout
        return "cluster_state:ok" in out and "cluster_slots_assigned:16384" in out

    def slot(self, key: str | bytes) -> int:
        """``CLUSTER KEYSLOT key``, asked of a node (not computed here)."""
        with self.nodes[0].client() as client:
            return int(client.execute_command("CLUSTER KEYSLOT", key))

    def node_of(self, key: str | bytes) -> RedisServer:
        """The master serving ``key``'s slot (CLUSTER KEYSLOT, then CLUSTER SLOTS)."""
        slot = self.slot(key)
        with self.nodes[0].client() as client:
            ranges = client.execute_command("CLUSTER SLOTS")
        for start, end, primary, *_ in ranges:
            if start <= slot <= end:
                return next(node for node in self.nodes if node.port == int(primary[1]))
        raise LookupError(f"slot {slot} is not served")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory):
    """A three-master Redis Cluster shared by the session (tests use their own prefixes).
    Provided by ``conftest.py``: do not import it into a test module (it would start one per module)."""
    redis_binary()
    cluster = RedisCluster(tmp_path_factory.mktemp("redis-cluster")).start()
    yield cluster
    cluster.stop()


@pytest.fixture
def start_cluster(tmp_path):
    """Factory for a private cluster (a test that kills nodes); stopped after the test."""
    started: list[RedisCluster] = []

    def start(**kw) -> RedisCluster:
        redis_binary()
        cluster = RedisCluster(tmp_path / f"cluster{len(started)}", **kw)
        started.append(cluster)
        return cluster.start()

    yield start
    for cluster in started:
        cluster.stop()


@pytest.fixture(params=["single", "cluster"])
def any_redis_url(request) -> str:
    """The test runs twice: on a single redis-server (``redis://``) and on the three-master
    cluster (``redis+cluster://``)."""
    if request.param == "single":
        return request.getfixturevalue("redis_server").url
    return request.getfixturevalue("redis_cluster").url


@pytest.fixture
def masters_of(request, any_redis_url):
    """``masters_of(keys)``: the ports of the masters serving ``keys`` (one port on a single server)."""
    if request.node.callspec.params["any_redis_url"] == "single":
        port = request.getfixturevalue("redis_server").port
        return lambda keys: {port}
    cluster = request.getfixturevalue("redis_cluster")
    return lambda keys: {cluster.node_of(key).port for key in keys}


def closed_port_url() -> str:
    """A URL on which nothing listens (for the start-up failure tests)."""
    return f"redis://:hunter2@127.0.0.1:{free_port()}/0"


os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def run_redis_benchmark(name: str, *args: str) -> dict:
    """Run ``benchmarks/<name>`` with ``args`` and ``--json`` (a small smoke run: the benchmarks
    start a redis-server of their own); its JSON, after checking it exited cleanly."""
    from benchmark_runs import run_benchmark

    redis_binary()
    redis_cli_binary()
    return run_benchmark(name, *args)
