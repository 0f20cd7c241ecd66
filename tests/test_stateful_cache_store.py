"""Model-based (stateful) test of the exact-cache store: hypothesis drives put / get (with and
without ``allow_stale``) / clear (one tenant's, or all) / time passing against a reference written
here: a dict of (tenant, key) → (value, written_at) and a list in recency order.

What :mod:`llmlab.cache.store` promises, checked at every step: an entry is fresh while its age
(from the write: a hit never extends it) is below ``ttl_s``; a stale one is served only with
``allow_stale`` (the last resort) — in memory until evicted, in Redis until ``stale_grace_s``
more has passed; the least recently used entry goes first past ``capacity`` (memory; Redis has
none); a tenant never reads another's entry, whatever their names; ``clear`` drops one tenant's
entries or all.  The hit, miss and stale counters count what the reference counts.  The Redis
store runs the same machine in ``tests/test_redis_stateful.py``.
"""
from __future__ import annotations

import math

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from llmlab.cache.store import MemoryStore

START = 1_700_000_000.0
TTL = 100.0
# names that a careless key layout would mix up: a tenant "a:b" and tenant "a" with key "b:…",
# percent-escapes, glob characters (Redis' clear() matches a pattern)
TENANTS = ["a", "a:b", "a%3Ab", "*", "b"]
KEYS = ["k", "b:k", "*", "k?"]

SETTINGS = settings(max_examples=60, stateful_step_count=40, derandomize=True, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck))


class StoreMachine(RuleBasedStateMachine):
    """``make_store()`` under test; ``capacity`` None (no LRU) and ``grace`` (inf: stale until evicted)
    say which contract it keeps."""

    make_store = staticmethod(lambda: MemoryStore(capacity=4, ttl_s=TTL))
    capacity: int | None = 4
    grace = math.inf

    def __init__(self) -> None:
        super().__init__()
        self.store = self.make_store()
        self.now = START
        self.entries: dict[tuple[str, str], tuple[str, float]] = {}
        self.recency: list[tuple[str, str]] = []  # least recently used first
        self.counts = {"hits": 0, "misses": 0, "stale_served": 0}
        self.writes = 0

    def touch(self, k: tuple[str, str]) -> None:
        if k in self.recency:
            self.recency.remove(k)
        self.recency.append(k)

    @rule(seconds=st.sampled_from([0.0, 0.5, 1.0, 49.5, 50.0, 99.5, 100.0]))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds

    @rule(tenant=st.sampled_from(TENANTS), key=st.sampled_from(KEYS))
    def put(self, tenant: str, key: str) -> None:
        self.writes += 1
        value = f"v{self.writes}:{tenant}:{key}"  # says whose it is: a hit of another's would show
        self.store.put(tenant, key, value, self.now)
        self.entries[(tenant, key)] = (value, self.now)
        self.touch((tenant, key))
        while self.capacity is not None and len(self.entries) > self.capacity:
            del self.entries[self.recency.pop(0)]

    @rule(tenant=st.sampled_from(TENANTS), key=st.sampled_from(KEYS), allow_stale=st.booleans())
    def get(self, tenant: str, key: str, allow_stale: bool) -> None:
        got = self.store.get(tenant, key, self.now, allow_stale=allow_stale)
        entry = self.entries.get((tenant, key))
        age = None if entry is None else self.now - entry[1]
        if entry is None or (age >= TTL and not allow_stale) or age >= TTL + self.grace:
            assert got is None, (tenant, key, age, got)
            self.counts["misses"] += not allow_stale
            return
        assert got is not None, (tenant, key, age)
        assert (got.value, got.age_s, got.stale) == (entry[0], age, age >= TTL)
        self.touch((tenant, key))
        if got.stale:
            self.counts["stale_served"] += 1
        elif not allow_stale:
            self.counts["hits"] += 1

    @rule(tenant=st.none() | st.sampled_from(TENANTS))
    def clear(self, tenant: str | None) -> None:
        doomed = [k for k in self.entries if tenant is None or k[0] == tenant]
        assert self.store.clear(tenant) == len(doomed)
        for k in doomed:
            del self.entries[k]
            self.recency.remove(k)

    @invariant()
    def counters_agree(self) -> None:
        stats = self.store.stats
        assert {name: stats[name] for name in self.counts} == self.counts


def test_memory_store_against_a_reference_model():
    run_state_machine_as_test(StoreMachine, settings=SETTINGS)
