"""Redis Cluster (``redis+cluster://``) on a real three-master cluster, and the single-node layout
it must leave alone.

The behaviour shared with one Redis (caps held by two gateway processes, rate limits, exact and
semantic cache, isolation) runs on both through ``any_redis_url`` in the other test_redis_*
modules; here is what only a cluster has: key slots, masters, a master dying, its URLs.
"""
from __future__ import annotations

import logging
import time
from contextlib import contextmanager

import numpy as np
import pytest

from llmlab import (BudgetPolicy, BudgetUnavailable, CachedAnswer, CacheOutcome, ConfigError, Deployment, FixedRouter,
                    Gateway, RateLimit)
from llmlab.backends import RedisUnavailable, from_url
from llmlab.backends.redis_link import RedisLink
from llmlab.budgets import month_of
from llmlab.scripted import FakeClock, ScriptedDriver
from redis_fixtures import any_redis_url, free_port, prefix, redis_server, start_cluster  # noqa: F401

pytestmark = pytest.mark.redis
NOW = 1_700_000_000.0  # 2023-11-14: the previous month is 2023-10


@contextmanager
def _unreachable(link):
    """Every command through ``link`` fails as when Redis is gone, for the duration."""
    def down(what, fn, key=None):
        raise RedisUnavailable(link.url, "ConnectionError: simulated")

    link.call = down
    try:
        yield
    finally:
        del link.call  # the method again


def _semantic():
    from llmlab.cache.embedders import HashedNgramEmbedder
    from llmlab.cache.semantic import SemanticCache

    return SemanticCache(HashedNgramEmbedder(), threshold=0.6, guard=None)


def test_every_key_name_is_pinned_and_unchanged_on_a_single_redis(any_redis_url, prefix):
    """The names every backend writes, read back from Redis.  On one Redis they are byte for byte
    those of earlier releases (a renamed budget hash would restart every tenant's month at zero
    spend on upgrade); on a cluster only the budget keys differ: the tenant is their hash tag."""
    backends = from_url(any_redis_url, prefix, semantic_cache=_semantic(), default_limit=None,
                        per_tenant={"a:b": RateLimit(rpm=5)})
    budgets = backends.budgets
    budgets.settle(budgets.try_reserve("a:b", 0.01, 1.0, NOW), 0.005)
    budgets.try_reserve("a:b", 0.01, 1.0, NOW + 40 * 86_400)  # December: gives November's keys their TTL
    assert backends.rate_limiter.acquire("a:b", "free", 1, NOW) is None
    assert backends.cache_store.put("a:b", "k/1", {"x": 1}, NOW)
    embedder = backends.semantic_cache.embedder
    assert backends.semantic_cache.store("a:b|ctx", "hello", embedder.embed(["hello"])[0], "hi", NOW)
    client = backends.client
    written = sorted(k.decode() for k in client.scan_iter(match=f"{prefix}:*", count=1000))
    tenant = "{a%3Ab}" if any_redis_url.startswith("redis+cluster") else "a%3Ab"
    assert written == sorted([
        f"{prefix}:budget:{tenant}:2023-11", f"{prefix}:budget:{tenant}:2023-11:open",
        f"{prefix}:budget:{tenant}:2023-12", f"{prefix}:budget:{tenant}:2023-12:open",
        f"{prefix}:cache:a%3Ab:k%2F1", f"{prefix}:ratelimit:a%3Ab", f"{prefix}:semantic:a%3Ab%7Cctx"])
    assert budgets.keys("a:b", "2023-11", tagged=False) == (f"{prefix}:budget:a%3Ab:2023-11",
                                                             f"{prefix}:budget:a%3Ab:2023-11:open")
    assert budgets.keys("a:b", "2023-11", tagged=True)[0] == f"{prefix}:budget:{{a%3Ab}}:2023-11"


def test_a_tenants_budget_keys_share_a_slot_and_tenants_spread_over_the_masters(redis_cluster, prefix):
    """The reserve script touches this month's hash and lease set and the previous month's two:
    one slot per tenant (CLUSTER KEYSLOT, asked of the cluster), whatever the tenant's name."""
    budgets = from_url(redis_cluster.url, prefix).budgets
    tenants = ["acme", "globex", "a:b", "{x}", "ü", "t" * 300, *(f"t{i}" for i in range(30))]
    masters = set()
    for tenant in tenants:
        keys = [*budgets.keys(tenant, month_of(NOW)), *budgets.keys(tenant, "2023-10")]
        assert len({redis_cluster.slot(key) for key in keys}) == 1, tenant
        masters.add(redis_cluster.node_of(keys[0]).port)
        assert budgets.try_reserve(tenant, 0.01, 1.0, NOW) is not None  # no CROSSSLOT
    assert masters == {node.port for node in redis_cluster.nodes}


def test_clear_reaches_every_master(redis_cluster, prefix):
    """clear() SCANs every master (a SCAN of one node found a third of the entries); one tenant's
    entries spread over the masters too (their names carry no tag)."""
    store = from_url(redis_cluster.url, prefix).cache_store
    for tenant in ("t1", "t2", "t3"):
        for i in range(20):
            assert store.put(tenant, f"k{i}", {"i": i}, NOW)
    by_tenant = {t: [store.redis_key(t, f"k{i}") for i in range(20)] for t in ("t1", "t2", "t3")}
    assert {redis_cluster.node_of(k).port for k in by_tenant["t1"]} == {n.port for n in redis_cluster.nodes}
    assert store.clear("t1") == 20
    assert store.clear() == 40
    for node in redis_cluster.nodes:  # asked of each node itself, not through the cluster client
        with node.client() as client:
            assert list(client.scan_iter(match=f"{prefix}:*")) == []


def test_budget_writes_queued_in_an_outage_are_replayed_in_one_pipeline_per_master(redis_cluster, prefix):
    """A cluster pipeline refuses scripts: the replay sends each master's share of a batch in one
    plain pipeline to that master, so it takes a few round trips, not one per settlement."""
    backends = from_url(redis_cluster.url, prefix, budgets_on_error="open")
    budgets, link = backends.budgets, backends.link
    tenants = [f"t{i}" for i in range(6)]
    assert len({redis_cluster.node_of(budgets.keys(t, month_of(NOW))[0]).port for t in tenants}) == 3
    held = [budgets.try_reserve(tenants[i % 6], 0.001, 100.0, NOW) for i in range(600)]
    with _unreachable(link):
        for i, reservation in enumerate(held):
            budgets.settle(reservation, 0.000_25 * (1 + i % 4))
        budgets.charge("t0", 0.5, NOW)
    assert budgets.pending == 601
    calls = []
    real_call = link.call
    link.call = lambda what, fn, key=None: calls.append(what) or real_call(what, fn, key=key)
    assert budgets.spent("t0", NOW) == pytest.approx(0.5 + sum(0.000_25 * (1 + i % 4) for i in range(0, 600, 6)))
    assert budgets.pending == 0 and len(calls) <= 2 * 3 + 1, calls  # 2 batches of 3 masters, then the read
    for i, tenant in enumerate(tenants):
        assert budgets.reserved(tenant, NOW) == 0
    assert budgets.dropped_settlements == budgets.lost_holds == 0 and budgets.overshoot_usd == 0


def test_a_queued_write_whose_slot_has_no_master_stays_queued_and_holds_up_no_one(redis_cluster, prefix,
                                                                                monkeypatch):
    """Settlements queued in an outage, one of them for a tenant whose slot the client's table
    gives no master (its master lost, the table refreshed): the replay applies the others and
    keeps that one queued, and the reservation the replay runs before goes through — the slot
    table's error failed the whole replay and refused that request.  Once the slot has a master
    again, the queued settlement is applied, once."""
    from redis import exceptions as rx

    backends = from_url(redis_cluster.url, prefix)
    budgets, link = backends.budgets, backends.link
    lost, kept = f"lost-{prefix}", f"kept-{prefix}"
    held = {t: budgets.try_reserve(t, 0.5, 1.0, NOW) for t in (lost, kept)}
    with _unreachable(link):
        for tenant, reservation in held.items():
            budgets.settle(reservation, 0.2)
    assert budgets.pending == 2
    lost_hash = budgets.keys(lost, month_of(NOW))[0]
    table = link.client.get_node_from_key

    def without_lost(key, replica=False):
        if key == lost_hash:
            raise rx.SlotNotCoveredError(f'Slot "{link.client.keyslot(key)}" is not covered by the cluster.')
        return table(key, replica)

    monkeypatch.setattr(link.client, "get_node_from_key", without_lost)
    assert budgets.try_reserve(kept, 0.1, 1.0, NOW) is not None  # the replay ran first, and did not refuse it
    assert budgets.pending == 1 and link.healthy
    assert budgets.spent(kept, NOW) == pytest.approx(0.2)
    monkeypatch.setattr(link.client, "get_node_from_key", table)
    assert budgets.spent(lost, NOW) == pytest.approx(0.2) and budgets.pending == 0
    assert budgets.reserved(lost, NOW) == 0 and budgets.lost_holds == 0


def test_a_queued_budget_write_whose_slot_moved_follows_the_redirection(redis_cluster, prefix):
    """A slot moves to another master (resharding) while a settlement waits in the queue: the
    replay's pipeline goes to the master the client's slot table still names, which answers
    MOVED; that settlement is replayed alone through the cluster client, which follows it."""
    backends = from_url(redis_cluster.url, prefix)
    budgets, link = backends.budgets, backends.link
    tenant = f"moving-{prefix}"
    h, z = budgets.keys(tenant, month_of(NOW))
    held = budgets.try_reserve(tenant, 0.5, 1.0, NOW)
    with _unreachable(link):
        budgets.settle(held, 0.3)
    assert budgets.pending == 1

    slot, source = redis_cluster.slot(h), redis_cluster.node_of(h)
    target = next(node for node in redis_cluster.nodes if node is not source)
    ids = {}
    for node in redis_cluster.nodes:
        with node.client() as c:
            ids[node.port] = c.execute_command("CLUSTER MYID").decode()
    with target.client() as t, source.client() as s:
        t.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", ids[source.port])
        s.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", ids[target.port])
        keys = s.execute_command("CLUSTER GETKEYSINSLOT", slot, 100)
        assert {k if isinstance(k, str) else k.decode() for k in keys} >= {h, z}
        s.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys)
    for node in [target, source, *(n for n in redis_cluster.nodes if n not in (target, source))]:
        with node.client() as c:
            c.execute_command("CLUSTER SETSLOT", slot, "NODE", ids[target.port])
    assert redis_cluster.node_of(h) is target

    assert budgets.spent(tenant, NOW) == pytest.approx(0.3)  # replays the queue first
    assert budgets.pending == 0 and budgets.dropped_settlements == 0 and budgets.lost_holds == 0
    assert budgets.reserved(tenant, NOW) == 0
    with target.client() as t:
        assert t.exists(h)


def test_a_hung_then_dead_master_fails_budgets_closed_and_the_cache_misses_then_recovers(start_cluster, caplog):
    """SIGSTOP one master: one socket timeout per retry interval, not one per request.  Then
    SIGKILL it: nothing raises out of the gateway, its tenant's budget fails closed
    (BudgetUnavailable), the cache misses, a settlement made meanwhile is queued; once the master
    is back (appendonly: with its data) the link reconnects and the queued spend is counted once."""
    import os
    import signal

    cluster = start_cluster(appendonly=True, node_timeout_ms=500)
    backends = from_url(cluster.url, "dead", retry_interval_s=0.05, log_interval_s=60)
    budgets = backends.budgets
    victim = cluster.node_of(budgets.keys("acme", month_of(NOW))[0])

    hung = from_url(cluster.url, "hung", socket_timeout_s=0.2, retry_interval_s=10).budgets
    os.kill(victim.proc.pid, signal.SIGSTOP)
    try:
        started = time.perf_counter()
        assert [hung.try_reserve("acme", 0.01, 1.0, NOW) for _ in range(50)] == [None] * 50
        elapsed = time.perf_counter() - started
    finally:
        os.kill(victim.proc.pid, signal.SIGCONT)
    assert elapsed < 1.0 and hung.refused_unavailable == 50
    clock = FakeClock(NOW)
    gw = Gateway([Deployment("gpt-4o", "gpt-4o")], router=FixedRouter("gpt-4o"), fallbacks={}, clock=clock,
                 driver=ScriptedDriver(clock=clock), seed=0, budget=BudgetPolicy(default_cap=1.0),
                 **backends.gateway_kwargs())
    assert gw.complete("warm", tenant="acme").cache is CacheOutcome.MISS
    assert gw.complete("warm", tenant="acme").cache is CacheOutcome.EXACT_HIT
    spent_before = budgets.spent("acme", NOW)
    held = budgets.try_reserve("acme", 0.2, 1.0, NOW)

    with caplog.at_level(logging.WARNING, "llmlab"):
        victim.kill()
        outs = [gw.complete(f"q{i}", tenant="acme") for i in range(20)] + [gw.complete("warm", tenant="acme")]
        assert all(isinstance(o.error, BudgetUnavailable) for o in outs)  # fail closed, typed, not raised
        assert backends.cache_store.get("acme", "anything", NOW) is None and backends.cache_store.errors > 0
        budgets.settle(held, 0.15)
        assert budgets.pending == 1  # gone, not refused: kept for replay

        victim.start()
        cluster.wait_ok()
        time.sleep(0.06)  # past retry_interval_s: the next command probes
        assert gw.complete("warm", tenant="acme").cache is CacheOutcome.EXACT_HIT  # its data survived
        assert backends.link.healthy and backends.link.reconnects >= 1
        assert budgets.pending == 1  # a cache hit reserves nothing: nothing replayed yet
        assert budgets.spent("acme", NOW) == pytest.approx(spent_before + 0.15) and budgets.pending == 0
        assert budgets.reserved("acme", NOW) == 0 and budgets.lost_holds == 0
    assert not [r for r in caplog.records if r.name == "llmlab.gateway" and r.levelno >= logging.ERROR]


def test_a_dead_master_degrades_only_the_tenants_whose_keys_it_serves(start_cluster, caplog):
    """SIGKILL the master of one tenant's budget: that tenant's requests fail closed
    (BudgetUnavailable) and its settlement is queued, while a tenant whose budget lives on
    another master is served and its spend counted — one link for the whole cluster refused both
    until the probe, for all of ``cluster-node-timeout`` (15 s by default) before a replica takes
    over, and the queued settlement's failing replay refused the other tenant too.  Once the
    master is back, its tenant is served again and the queued spend is counted once."""
    cluster = start_cluster(appendonly=True, node_timeout_ms=30_000)  # the cluster stays "ok" meanwhile
    backends = from_url(cluster.url, "pernode", retry_interval_s=2.0, log_interval_s=60,
                        socket_timeout_s=5.0)  # a live master slow under load is no dead one
    budgets = backends.budgets
    home = {t: cluster.node_of(budgets.keys(t, month_of(NOW))[0]) for t in (f"t{i}" for i in range(12))}
    victim_tenant = "t0"
    other = next(t for t, node in home.items() if node is not home[victim_tenant])
    clock = FakeClock(NOW)
    gw = Gateway([Deployment("gpt-4o", "gpt-4o")], router=FixedRouter("gpt-4o"), fallbacks={}, clock=clock,
                 driver=ScriptedDriver(clock=clock), seed=0, budget=BudgetPolicy(default_cap=1.0),
                 **backends.gateway_kwargs())
    assert gw.complete("warm", tenant=victim_tenant).ok and gw.complete("warm", tenant=other).ok
    before, victim_before = budgets.spent(other, NOW), budgets.spent(victim_tenant, NOW)
    held = budgets.try_reserve(victim_tenant, 0.2, 1.0, NOW)  # a request in flight when its master dies
    streaming = budgets.try_reserve(victim_tenant, 0.1, 1.0, NOW)  # one that outlives the outage
    long_one = budgets.try_reserve(other, 0.1, 1.0, NOW)  # a long request of the other tenant

    with caplog.at_level(logging.WARNING, "llmlab"):
        home[victim_tenant].kill()
        budgets.settle(held, 0.1)
        assert budgets.pending == 1
        for keyless in (backends.cache_store.clear, lambda: budgets.expire_past_months(NOW)):
            with pytest.raises(RedisUnavailable):  # a scan meets the dead master: raised to its caller and
                keyless()  # nothing marked down (a link-wide down state refused the other tenant below)
        first = gw.complete("q0", tenant=victim_tenant)
        served = [gw.complete(f"q{i}", tenant=other) for i in range(1, 6)]
        again = gw.complete("q6", tenant=victim_tenant)
        assert budgets.renew_leases() == 1  # the other master's lease, though the dead one's set sorts first
    assert isinstance(first.error, BudgetUnavailable) and isinstance(again.error, BudgetUnavailable)
    assert all(o.ok for o in served), [o.error for o in served]
    assert budgets.spent(other, NOW) == pytest.approx(before + sum(o.cost_usd for o in served))
    assert not backends.link.healthy
    assert any(f"master {home[victim_tenant].port}" in r.getMessage() or
               f":{home[victim_tenant].port} of" in r.getMessage() for r in caplog.records)

    home[victim_tenant].start()
    cluster.wait_ok()
    link_clock = backends.link.clock
    backends.link.clock = lambda: link_clock() + 2.1  # past retry_interval_s: the next command about its keys probes
    back = gw.complete("q7", tenant=victim_tenant)
    assert back.ok and budgets.pending == 0
    budgets.settle(streaming, 0.0)
    budgets.settle(long_one, 0.0)
    assert budgets.reserved(victim_tenant, NOW) == 0 and budgets.reserved(other, NOW) == 0
    assert budgets.spent(victim_tenant, NOW) == pytest.approx(victim_before + 0.1 + back.cost_usd)
    assert backends.link.healthy and backends.link.reconnects >= 1


def test_a_master_replaced_by_its_replica_is_forgotten_by_the_link():
    """Per-master state on a client stand-in: a key on a master that failed fails fast, a key on
    another master goes through, and once the topology no longer lists the dead master (its
    replica was promoted under its own name) the link is healthy again."""
    from redis import exceptions as rx

    def refused(r):
        raise rx.ConnectionError("Connection refused")

    client = _StandInCluster()
    link = _cluster_link(client, retry_interval_s=60)
    with pytest.raises(RedisUnavailable):
        link.call("test", refused, key="a1")
    assert not link.healthy
    with pytest.raises(RedisUnavailable, match="Connection refused"):
        link.call("test", lambda r: pytest.fail("sent to a master known gone"), key="a2")
    assert link.call("test", lambda r: "ok", key="b1") == "ok"
    client.masters = [_StandInCluster.Node("10.0.0.3:6379"), client.masters[1]]  # the replica took over
    assert link.healthy
    assert link.call("test", lambda r: "ok", key="a3") == "ok"


def test_cluster_urls_refused_with_the_field_named_and_the_password_hidden(redis_cluster, redis_server, prefix):
    """Settings no wait fixes are ConfigErrors even under on_unavailable='degrade'."""
    node = f"127.0.0.1:{redis_cluster.nodes[0].port}"
    user = f"u{prefix[-8:]}"
    cases = {
        f"redis+cluster://{node}/1": "only database 0",
        f"redis://{node}/0": "this Redis is a cluster node",
        f"redis+cluster://127.0.0.1:{redis_server.port}": "runs without cluster mode",
        f"redis+cluster://nobody:hunter2@{node}": "Redis answered",  # a wrong password
        f"redis+cluster://{user}:hunter2@{node}": "NoPermissionError",  # an ACL that denies the topology
    }
    with redis_cluster.nodes[0].client() as admin:
        admin.execute_command("ACL", "SETUSER", user, "on", ">hunter2", "~*", "-@all", "+ping")
        try:
            for url, why in cases.items():
                for mode in ("raise", "degrade"):
                    with pytest.raises(ConfigError) as info:
                        from_url(url, on_unavailable=mode)
                    assert info.value.field == "url" and why in str(info.value), (url, str(info.value))
                    assert "hunter2" not in str(info.value)
        finally:
            admin.execute_command("ACL", "DELUSER", user)
    with pytest.raises(ConfigError) as info:
        from_url(f"redis+cluster://{node}", prefix="a{b}")
    assert info.value.field == "prefix"
    with pytest.raises(ConfigError):
        from_url(f"unix+cluster://{node}")


def test_an_unreachable_cluster_is_an_outage_raised_or_degraded(caplog):
    url = f"rediss+cluster://:hunter2@127.0.0.1:{free_port()}"
    with pytest.raises(RedisUnavailable) as info:
        from_url(url, connect_timeout_s=0.2)
    assert "rediss+cluster://:***@127.0.0.1" in str(info.value) and "hunter2" not in str(info.value)
    with caplog.at_level(logging.WARNING, "llmlab.backends"):
        backends = from_url(url.replace("rediss", "redis"), on_unavailable="degrade", connect_timeout_s=0.2)
    assert backends.degraded and backends.link is None
    assert not any("hunter2" in r.getMessage() for r in caplog.records)


def test_an_evicting_master_is_warned_about_whichever_it_is(redis_cluster, caplog):
    """maxmemory-policy is per node: every master's INFO is read, not one node's."""
    last = redis_cluster.nodes[-1]
    with last.client() as admin:
        before = admin.config_get("maxmemory*")
        admin.config_set("maxmemory", 1 << 30)
        admin.config_set("maxmemory-policy", "allkeys-lru")
        try:
            with caplog.at_level(logging.WARNING, "llmlab.backends"):
                from_url(redis_cluster.url, "evict").close()
        finally:
            admin.config_set("maxmemory", before["maxmemory"])
            admin.config_set("maxmemory-policy", before["maxmemory-policy"])
    assert sum("allkeys-lru" in r.getMessage() for r in caplog.records) == 1


class _StandInCluster:
    """A cluster client stand-in with two masters: keys starting with "a" are on the first, the
    rest on the second; ``uncovered`` keys have no master in its slot table."""

    class Node:
        def __init__(self, name):
            self.name, self.redis_connection = name, None

    def __init__(self, exc=None):
        self.exc = exc
        self.masters = [self.Node("10.0.0.1:6379"), self.Node("10.0.0.2:6379")]

    def fail(self):
        raise self.exc

    def keyslot(self, key):
        return 1000 + len(key)

    def get_node_from_key(self, key):
        from redis import exceptions as rx

        if key.startswith("uncovered"):
            raise rx.SlotNotCoveredError(f'Slot "{self.keyslot(key)}" is not covered by the cluster.')
        return self.masters[0] if key.startswith("a") else self.masters[1]

    def get_primaries(self):
        return self.masters

    def get_node(self, node_name=None):
        return next((n for n in self.masters if n.name == node_name), None)


def _cluster_link(client, **kwargs):
    link = RedisLink(client, "redis+cluster://10.0.0.1:6379", **kwargs)
    link.cluster = True
    return link


def test_which_cluster_errors_take_a_master_down():
    """CLUSTERDOWN, TRYAGAIN and an unreachable cluster are outages (budget writes are queued):
    a command about a key takes that key's master down; a command the client refuses to send
    (keys in two slots) is not an outage (queueing it would retry it for ever).  A command about
    no one key (a scan over every master) raises with the same verdict but marks nothing down:
    there is no master to blame, and one link-wide down state refused every tenant for a probe
    interval when a monthly ``expire_past_months`` or a ``clear()`` met one dead master."""
    from redis import exceptions as rx

    for exc, gone in [(rx.ClusterDownError("CLUSTERDOWN The cluster is down"), True),
                      (rx.TryAgainError("TRYAGAIN"), True),
                      (rx.RedisClusterException("Redis Cluster cannot be connected. Please provide ..."), True),
                      (rx.SlotNotCoveredError("Slot 7 not covered"), True),
                      (rx.RedisClusterException("EVALSHA - all keys must map to the same key slot"), False),
                      (rx.ResponseError("CROSSSLOT Keys in request don't hash to the same slot"), False)]:
        link = _cluster_link(_StandInCluster(exc), retry_interval_s=60)
        with pytest.raises(RedisUnavailable) as info:
            link.call("scan", lambda r: r.fail())
        assert info.value.gone is gone and link.healthy, exc
        assert link.call("test", lambda r: "ok", key="a1") == "ok"
        with pytest.raises(RedisUnavailable) as info:
            link.call("test", lambda r: r.fail(), key="a2")
        assert info.value.gone is gone and link.healthy is not gone, exc
        assert link.call("test", lambda r: "ok", key="b1") == "ok"  # the other master's keys go on
        if gone:
            with pytest.raises(RedisUnavailable):
                link.call("test", lambda r: pytest.fail("sent to a master known gone"), key="a3")


def test_a_key_whose_slot_has_no_master_fails_fast_alone():
    """A key whose slot the client's table gives no master: its slot is down (a fast failure for
    its next commands, until the probe), every other key is served — a link-wide down state
    refused every tenant."""
    from redis import exceptions as rx

    clock = FakeClock(0.0)
    link = _cluster_link(_StandInCluster(), retry_interval_s=5, clock=clock)

    def uncovered(r):
        raise rx.SlotNotCoveredError('Slot "1010" is not covered by the cluster.')

    with pytest.raises(RedisUnavailable) as info:
        link.call("test", uncovered, key="uncovered1")
    assert info.value.gone and not link.healthy
    with pytest.raises(RedisUnavailable, match="not covered"):
        link.call("test", lambda r: pytest.fail("sent while its slot is known down"), key="uncovered1")
    assert link.call("test", lambda r: "ok", key="uncovered22") == "ok"  # another slot
    assert link.call("test", lambda r: "ok", key="a1") == "ok" and link.call("test", lambda r: "ok", key="b1") == "ok"
    assert not link.healthy  # its slot's entry stays though no master is named so: the topology cannot prune it
    clock.advance(5.0)
    assert link.call("test", lambda r: "ok", key="uncovered1") == "ok"  # the probe: served again
    assert link.healthy and link.reconnects == 1


def test_semantic_streams_of_one_tenant_spread_and_replicate(redis_cluster, prefix):
    """Each namespace is one stream, untagged: one tenant's conversations spread over the masters,
    and another replica still reads every one of them."""
    one = from_url(redis_cluster.url, prefix, semantic_cache=_semantic()).semantic_cache
    two = from_url(redis_cluster.url, prefix, semantic_cache=_semantic()).semantic_cache
    vector = one.embedder.embed(["reset my password"])[0]
    namespaces = [f"acme|conversation {i}" for i in range(12)]
    for ns in namespaces:
        assert one.store(ns, "reset my password", vector, CachedAnswer(ns, "gpt-4o", 1, 1, 0.0, NOW), NOW)
    assert len({redis_cluster.node_of(one.key(ns)).port for ns in namespaces}) == 3
    for ns in namespaces:
        hit = two.lookup(ns, "reset my password", np.asarray(vector), NOW + 1)
        assert hit is not None and hit.value.text == ns
