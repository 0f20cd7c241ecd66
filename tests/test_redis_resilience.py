"""Redis killed and restarted under a running gateway: answers continue, the client reconnects, and
every entry the store reported as stored is still there after a clean restart (appendonly)."""
from __future__ import annotations

import logging
import time

import pytest

from llmlab import CacheOutcome, Deployment, FixedRouter, Gateway, OutcomeKind
from llmlab.backends import from_url
from llmlab.scripted import FakeClock, ScriptedDriver
from redis_fixtures import start_redis  # noqa: F401

pytestmark = pytest.mark.redis


class Recording:
    """Wraps the store to remember which writes it *reported* as stored."""

    def __init__(self, store):
        self.store = store
        self.stored: set[tuple[str, str]] = set()
        self.dropped = 0

    def get(self, *a, **kw):
        return self.store.get(*a, **kw)

    def put(self, namespace, key, value, now):
        ok = self.store.put(namespace, key, value, now)
        if ok:
            self.stored.add((namespace, key))
        else:
            self.dropped += 1
        return ok


def test_kill_restart_reconnect_and_persist(start_redis, caplog):
    server = start_redis(appendonly=True, appendfsync="always")
    clock = FakeClock()
    backends = from_url(server.url, "res", retry_interval_s=0.05, log_interval_s=60)
    store = Recording(backends.cache_store)
    gw = Gateway([Deployment("gpt-4o", "gpt-4o")], router=FixedRouter("gpt-4o"), fallbacks={}, clock=clock,
                 driver=ScriptedDriver(clock=clock), seed=0, cache_store=store)

    def ask(i: int, tenant: str = "t"):
        out = gw.complete(f"question number {i}", tenant=tenant)
        assert out.ok and out.kind in (OutcomeKind.MODEL, OutcomeKind.CACHE)
        return out

    with caplog.at_level(logging.WARNING, "llmlab"):
        # phase 1: healthy — fill, then hit
        assert all(ask(i).cache is CacheOutcome.MISS for i in range(20))
        assert all(ask(i).cache is CacheOutcome.EXACT_HIT for i in range(20))
        before_kill = set(store.stored)
        assert len(before_kill) == 20

        # phase 2: Redis crashes (SIGKILL); every request is still answered, as a miss
        server.kill()
        during = [ask(i) for i in range(100)]
        assert all(o.cache is CacheOutcome.MISS and o.kind is OutcomeKind.MODEL for o in during)
        assert store.dropped == 100 and not backends.link.healthy

        # phase 3: Redis is back (same dir, same port): the link reconnects, hits resume
        server.start()
        time.sleep(0.06)
        assert ask(0).cache is CacheOutcome.EXACT_HIT  # survived the crash: appendfsync always
        assert backends.link.healthy and backends.link.reconnects == 1
        assert all(ask(i).cache is CacheOutcome.MISS for i in range(100, 110))
        assert all(ask(i).cache is CacheOutcome.EXACT_HIT for i in range(100, 110))

    # warnings were rate-limited: one "unreachable", one "dropped", one "reconnected" — not 100 of each
    messages = [r.getMessage() for r in caplog.records if r.name == "llmlab.backends"]
    assert 2 <= len(messages) <= 5, messages
    assert not [r for r in caplog.records if r.name == "llmlab.gateway" and r.levelno >= logging.ERROR]

    # phase 4: a clean SHUTDOWN and restart from the same directory keeps every reported write
    server.shutdown()
    server.start()
    fresh = from_url(server.url, "res").cache_store
    missing = [k for k in store.stored if fresh.get(*k, clock()) is None]
    assert len(store.stored) == 30 and not missing


def test_a_hung_redis_costs_one_timeout_per_retry_interval(start_redis):
    """SIGSTOP: the socket stays open but nothing answers — the worst case for a sync client."""
    import os
    import signal

    server = start_redis()
    clock = FakeClock()
    backends = from_url(server.url, "hang", socket_timeout_s=0.2, retry_interval_s=10)
    gw = Gateway([Deployment("gpt-4o", "gpt-4o")], router=FixedRouter("gpt-4o"), fallbacks={}, clock=clock,
                 driver=ScriptedDriver(clock=clock), seed=0, **backends.gateway_kwargs())
    assert gw.complete("warm").ok
    os.kill(server.proc.pid, signal.SIGSTOP)
    try:
        started = time.perf_counter()
        outs = [gw.complete(f"q{i}") for i in range(50)]
        elapsed = time.perf_counter() - started
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)
    assert all(o.ok for o in outs)
    assert elapsed < 1.0  # one 0.2 s timeout, then fast misses until the next probe
