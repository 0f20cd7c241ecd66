"""Budgets on a real redis-server: atomic reserve-then-settle, shared by two gateway *processes*."""
from __future__ import annotations

import json
import logging
import random
import subprocess
import sys
import textwrap
import time

import pytest

from llmlab import BudgetPolicy, CachedAnswer, Deployment, FixedRouter, Gateway, MemoryBudgets
from llmlab.errors import BudgetUnavailable
from llmlab.backends import from_url
from llmlab.budgets import month_of, next_month_start
from llmlab.scripted import FakeClock, ScriptedDriver
from redis_fixtures import (any_redis_url, masters_of, prefix, redis_server, redis_url,  # noqa: F401
                            start_redis)

pytestmark = pytest.mark.redis
NOW = 1_700_000_000.0  # 2023-11-14


def test_same_answers_as_the_in_memory_budgets(any_redis_url, prefix):
    """A seeded random sequence of reserve/settle/charge gives the same results on both backends
    (on one Redis and on a cluster)."""
    redis_b, mem = from_url(any_redis_url, prefix).budgets, MemoryBudgets()
    rng = random.Random(7)
    open_r: list[tuple] = []
    for step in range(400):
        tenant = rng.choice(["a", "b", "c:d"])
        op = rng.random()
        if op < 0.5 or not open_r:
            amount, cap = rng.randint(0, 5000) / 1e6, rng.choice([None, 0.0, 0.01, 0.05, 0.2])
            got_r, got_m = redis_b.try_reserve(tenant, amount, cap, NOW), mem.try_reserve(tenant, amount, cap, NOW)
            assert (got_r is None) == (got_m is None), step
            if got_r is not None:
                open_r.append((got_r, got_m))
        elif op < 0.9:
            r, m = open_r.pop(rng.randrange(len(open_r)))
            actual = rng.randint(0, int(r.amount * 1e6)) / 1e6
            redis_b.settle(r, actual)
            mem.settle(m, actual)
        else:
            amount = rng.randint(0, 300) / 1e6
            redis_b.charge(tenant, amount, NOW)
            mem.charge(tenant, amount, NOW)
        assert redis_b.spent(tenant, NOW) == pytest.approx(mem.spent(tenant, NOW), abs=1e-9)
        assert redis_b.reserved(tenant, NOW) == pytest.approx(mem.reserved(tenant, NOW), abs=1e-9)
    assert redis_b.overshoot_usd == mem.overshoot_usd == 0


def test_months_are_separate_keys_and_only_past_months_expire(any_redis_url, prefix):
    """The month being counted has no TTL (an evicting Redis then never picks it); the previous
    month's keys get theirs, retention_s after that month's end, at the next month's first
    reservation (on a cluster: one script over both months' keys, in the tenant's slot)."""
    b = from_url(any_redis_url, prefix).budgets
    r = b.try_reserve("acme", 0.04, 0.05, NOW)
    h, z = b.keys("acme", "2023-11")
    assert b.link.client.ttl(h) == -1 and b.link.client.ttl(z) == -1  # exist, no TTL
    b.settle(r, 0.04)
    b.charge("acme", 0.001, NOW)
    assert b.link.client.ttl(h) == -1
    assert b.try_reserve("acme", 0.02, 0.05, NOW) is None
    december = next_month_start(NOW) + 1
    assert b.try_reserve("acme", 0.02, 0.05, december) is not None  # a new month, a new budget
    assert b.link.client.ttl(b.keys("acme", "2023-12")[0]) == -1
    expected = next_month_start(NOW) + b.retention_s - december
    assert expected - 5 <= b.link.client.ttl(h) <= expected + 1 and b.link.client.ttl(z) != -1  # (gone when empty)
    assert b.spent("acme", NOW) == pytest.approx(0.041)  # last month still readable


LEASE = 0.5  # seconds: leases run on Redis' clock, so the tests that let one lapse wait for it

KILLED = textwrap.dedent("""
    import sys, time
    from llmlab.backends import from_url
    budgets = from_url(sys.argv[1], sys.argv[2], budget_lease_s=float(sys.argv[3])).budgets
    print(budgets.try_reserve("t", 0.04, 0.05, time.time()) is not None, flush=True)
    time.sleep(60)  # mid-request, renewing its lease, until it is killed
""")


def stalled(budgets):
    """``budgets`` that renew no lease, as a process stalled (or cut off from Redis) that long."""
    budgets.close()
    return budgets


def test_a_crashed_gateways_reservation_is_released_after_its_lease(any_redis_url, prefix):
    """A gateway process killed with SIGKILL mid-request never settles: its hold stays (renewed
    while it lived) and goes back to the budget a lease after the last renewal."""
    b = from_url(any_redis_url, prefix, budget_lease_s=LEASE).budgets
    child = subprocess.Popen([sys.executable, "-c", KILLED, any_redis_url, prefix, str(LEASE)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "True", child.stderr.read()
        time.sleep(2 * LEASE)  # renewed meanwhile: the hold outlives its first lease
        assert b.try_reserve("t", 0.02, 0.05, time.time()) is None  # still held
        child.kill()
        child.wait(10)
        time.sleep(1.5 * LEASE)
        late = b.try_reserve("t", 0.02, 0.05, time.time())
        assert late is not None and b.reserved("t", time.time()) == pytest.approx(0.02)
        assert b.stats("t", time.time())["reclaimed"] == 1
    finally:
        child.kill()
        child.communicate()


CHILD = textwrap.dedent("""
    import asyncio, json, random, sys, time
    from llmlab import BudgetPolicy, Call, Deployment, FixedRouter, Gateway
    from llmlab.backends import from_url
    from llmlab.scripted import ScriptedDriver

    url, prefix, n, seed, cap = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
    tenants = sys.argv[6].split(",")
    rng = random.Random(seed)
    backends = from_url(url, prefix)

    class SlowDriver(ScriptedDriver):  # many requests in flight at once, each holding a reservation
        async def aperform(self, effect):
            if isinstance(effect, Call):
                await asyncio.sleep(rng.uniform(0, 0.004))
            return self.perform(effect)

    driver = SlowDriver(default=lambda call: "word " * rng.randint(1, 90))
    gw = Gateway([Deployment("gpt-4o", "gpt-4o")], router=FixedRouter("gpt-4o"), fallbacks={}, cache=False,
                 budget=BudgetPolicy(caps={t: cap for t in tenants}), driver=driver, **backends.gateway_kwargs())
    client = backends.client
    client.incr(prefix + ":ready")
    deadline = time.time() + 20
    while not client.exists(prefix + ":go") and time.time() < deadline:
        time.sleep(0.005)

    async def main():
        return await asyncio.gather(*(gw.acomplete(f"question {seed} {i}", tenant=tenants[i % len(tenants)],
                                                   params={"max_tokens": 100}) for i in range(n)))

    outs = asyncio.run(main())
    print(json.dumps({"ok": sum(o.ok for o in outs), "cost": sum(o.cost_usd for o in outs),
                      "cost_by_tenant": {t: sum(o.cost_usd for o in outs if o.tenant == t) for t in tenants},
                      "refused": sum(o.error is not None and o.error.code == "budget_exceeded" for o in outs),
                      "other": sum(o.error is not None and o.error.code != "budget_exceeded" for o in outs),
                      "overshoot": backends.budgets.overshoot_usd, "n": len(outs)}))
""")


def test_two_gateway_processes_never_exceed_the_cap_together(any_redis_url, masters_of, prefix, tmp_path):
    """Two processes, each with its own gateway, hammer two tenants' caps at once.  On the cluster
    the two tenants' budget keys are on different masters (asserted), each tenant's four on one."""
    cap, n, tenants = 0.06, 250, ("shared", "other")
    budgets = from_url(any_redis_url, prefix).budgets
    month_keys = [budgets.keys(t, month_of(time.time())) for t in tenants]
    assert all(len(masters_of(keys)) == 1 for keys in month_keys)
    if any_redis_url.startswith("redis+cluster"):
        assert len(masters_of([keys[0] for keys in month_keys])) == 2
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    procs = [subprocess.Popen([sys.executable, str(script), any_redis_url, prefix, str(n), str(seed), str(cap),
                               ",".join(tenants)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for seed in (1, 2)]
    client = budgets.link.client
    deadline = time.time() + 30
    while int(client.get(prefix + ":ready") or 0) < 2 and time.time() < deadline:
        assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
        time.sleep(0.01)
    client.set(prefix + ":go", 1)  # both processes start hammering at the same moment
    results = []
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    for tenant in tenants:
        spent = budgets.spent(tenant, time.time())
        assert spent <= cap + 1e-9
        # every answer was charged once
        assert spent == pytest.approx(sum(r["cost_by_tenant"][tenant] for r in results), abs=1e-8)
        assert budgets.reserved(tenant, time.time()) == 0 and budgets.stats(tenant, time.time())["open"] == 0
        assert spent > cap * 0.5  # the cap was really contended (open reservations hold the rest back)
    assert all(r["ok"] > 10 and r["refused"] > 10 and r["other"] == 0 and r["overshoot"] == 0 for r in results)
    assert sum(r["ok"] + r["refused"] for r in results) == 2 * n


def _gateway(backends, clock, default="an answer"):
    return Gateway([Deployment("gpt-4o", "gpt-4o")], router=FixedRouter("gpt-4o"), fallbacks={}, cache=False,
                   budget=BudgetPolicy(default_cap=1.0), clock=clock, driver=ScriptedDriver(clock=clock,
                                                                                          default=default),
                   seed=0, **backends.gateway_kwargs())


def test_redis_down_fails_closed_by_default_without_raising(start_redis, caplog):
    server = start_redis()
    clock = FakeClock()
    backends = from_url(server.url, "p", retry_interval_s=60)
    gw = _gateway(backends, clock)
    assert gw.complete("before").ok
    server.kill()
    started = time.perf_counter()
    outs = [gw.complete(f"during {i}") for i in range(50)]
    assert time.perf_counter() - started < 2.0  # one failed connect, then fast failures while down
    assert all(isinstance(o.error, BudgetUnavailable) and o.error.retry_after_s for o in outs)  # not "over budget"
    assert backends.budgets.refused_unavailable == 50
    assert not [r for r in caplog.records if r.name == "llmlab.gateway" and r.levelname == "ERROR"]


def test_why_a_reservation_was_refused_is_told_per_thread(start_redis):
    """Gateways sharing one Backends from several threads read the refusal's reason right after
    their own refusal: a flag on the shared object let one thread's Redis outage relabel
    another's refusal (or its cap the other's outage)."""
    import threading

    server = start_redis()
    budgets = from_url(server.url, "p", retry_interval_s=60).budgets
    server.kill()
    seen = []
    worker = threading.Thread(target=lambda: seen.append(
        (budgets.try_reserve("acme", 0.5, 1.0, 0.0), budgets.last_refusal_unavailable)))
    worker.start()
    worker.join()
    assert seen == [(None, True)]  # refused: Redis is down
    assert budgets.last_refusal_unavailable is False  # this thread was refused nothing


def test_fail_open_keeps_serving_and_replays_the_spend_after_reconnecting(start_redis):
    server = start_redis()
    clock = FakeClock()
    backends = from_url(server.url, "p", budgets_on_error="open", retry_interval_s=0.05)
    gw = _gateway(backends, clock)
    server.kill()
    outs = [gw.complete(f"during {i}") for i in range(5)]
    assert all(o.ok for o in outs) and backends.budgets.pending == 5
    cost_while_down = sum(o.cost_usd for o in outs)
    assert backends.budgets.spent("default", clock()) == pytest.approx(cost_while_down)  # local view includes the queue
    server.start()  # a fresh, empty Redis on the same port
    time.sleep(0.06)
    after = gw.complete("after")
    assert after.ok and backends.budgets.pending == 0
    assert backends.budgets.spent("default", clock()) == pytest.approx(cost_while_down + after.cost_usd, abs=1e-9)
    assert backends.link.reconnects == 1


def _fill(backends, now, n=1_000):
    big = CachedAnswer("x" * 20_000, "m", 1, 1, 0.0, now)
    for i in range(n):  # 20 MB through a 3 MB Redis
        backends.cache_store.put("other", f"k{i}", big, now)


@pytest.mark.parametrize("policy", ["volatile-lru", "noeviction", "allkeys-lru"])
def test_a_full_redis_keeps_counting_budgets_unless_it_evicts_all_keys(start_redis, caplog, policy):
    """The cache fills a 3 MB Redis.  volatile-lru (the managed services' default) evicted the
    budget hash too while it had a TTL (0.9 of a 1.0 cap forgotten), and noeviction refused the
    settlement (its spend lost).  The month being counted now has no TTL and the scripts are let
    through a full Redis; allkeys-lru still evicts budgets, and from_url warns about it."""
    server = start_redis()
    server.client().config_set("maxmemory", "3mb")
    server.client().config_set("maxmemory-policy", policy)
    with caplog.at_level(logging.WARNING, "llmlab.backends"):
        backends = from_url(server.url, "p")
    warned = [r.getMessage() for r in caplog.records if "maxmemory-policy=" in r.getMessage()]
    now = time.time()
    budgets = backends.budgets
    budgets.settle(budgets.try_reserve("acme", 0.9, 1.0, now), 0.9)
    _fill(backends, now)
    if policy == "allkeys-lru":
        assert len(warned) == 1 and "volatile-lru" in warned[0]
        return
    if policy == "noeviction":  # make it over-full, as a burst of cache writes leaves it
        client = server.client()
        client.config_set("maxmemory", client.info("memory")["used_memory"] - 100_000)
        from redis.exceptions import OutOfMemoryError

        with pytest.raises(OutOfMemoryError):
            client.set("p:probe", "x")
    budgets.settle(budgets.try_reserve("acme", 0.05, 1.0, now), 0.05)
    budgets.charge("acme", 0.01, now)
    held = budgets.try_reserve("acme", 0.01, 1.0, now)
    assert budgets.renew_leases() == 1  # a long request's lease is renewed in a full Redis too
    budgets.settle(held, 0.0)
    assert budgets.dropped_settlements == 0 and budgets.spent("acme", now) == pytest.approx(0.96)
    assert budgets.try_reserve("acme", 0.5, 1.0, now) is None and not budgets.last_refusal_unavailable
    assert not warned


def test_spend_queued_during_a_long_outage_is_replayed_in_a_few_round_trips(start_redis):
    """Fail-open queues one settlement per request served while Redis is down; the first request
    after the reconnect replays them.  One round trip each stalled it (and everything queued
    behind the pipeline's lock) for seconds after a long outage: they go in batches."""
    server = start_redis()
    backends = from_url(server.url, "p", budgets_on_error="open", retry_interval_s=0.05)
    budgets, link = backends.budgets, backends.link
    server.kill()
    n = 3_000
    for i in range(n):
        budgets.settle(budgets.try_reserve(f"t{i % 3}", 0.001, 100.0, NOW), 0.000_25 * (1 + i % 4))
    assert budgets.pending == n
    server.start()
    time.sleep(0.06)
    calls = []
    real_call = link.call
    link.call = lambda what, fn, key=None: calls.append(what) or real_call(what, fn, key=key)
    assert budgets.try_reserve("t0", 0.001, 100.0, NOW) is not None
    assert budgets.pending == 0 and len(calls) <= 10, len(calls)
    link.call = real_call
    expected = sum(0.000_25 * (1 + i % 4) for i in range(n) if i % 3 == 0)
    assert budgets.spent("t0", NOW) == pytest.approx(expected, abs=1e-9)
    assert budgets.dropped_settlements == 0


def test_a_request_that_outlives_its_lease_is_reported_as_overshoot(redis_url, prefix, caplog):
    """A lease frees the hold of a gateway that crashed; a request whose process did not renew
    the lease (stalled that long: here the lease's time passes on the callers' clock, not the
    renewals') loses its hold the same way, another replica reserves the freed money, and both
    spend it.  That went unrecorded: the settlement now counts it as overshoot and says why."""
    one = stalled(from_url(redis_url, prefix, budget_lease_s=LEASE).budgets)
    two = from_url(redis_url, prefix, budget_lease_s=LEASE).budgets
    slow = one.try_reserve("t", 0.8, 1.0, NOW)
    assert two.try_reserve("t", 0.8, 1.0, NOW) is None  # held
    time.sleep(1.2 * LEASE)
    fast = two.try_reserve("t", 0.8, 1.0, NOW)  # the slow request's lease ran out
    assert fast is not None
    two.settle(fast, 0.8)
    with caplog.at_level(logging.WARNING, "llmlab.backends"):
        one.settle(slow, 0.7)
    assert one.spent("t", NOW) == pytest.approx(1.5)  # past the 1.0 cap: the lease's documented cost
    assert one.overshoot_usd == pytest.approx(0.7) and one.lost_holds == 1 and two.overshoot_usd == 0
    assert one.stats("t", NOW)["overshoot"] == 700_000_000  # nano-USD, seen by every replica
    assert any(f"budget_lease_s={LEASE:g}" in r.getMessage() for r in caplog.records)


def test_a_settlement_whose_reply_was_lost_is_counted_once_when_replayed(any_redis_url, prefix):
    """A Redis stalled past the socket timeout applies a settlement and loses its reply: the
    settlement is queued and replayed, and was counted twice (spend past the truth, and a false
    'lost hold' overshoot).  The settled reservation's tombstone tells the replay to add nothing."""
    from llmlab.backends.redis_link import RedisUnavailable

    budgets = from_url(any_redis_url, prefix, budget_lease_s=LEASE).budgets
    held = budgets.try_reserve("t", 0.5, 1.0, NOW)
    link_call = budgets.link.call

    def applied_then_reply_lost(what, fn, key=None):
        link_call(what, fn, key=key)  # Redis did it...
        raise RedisUnavailable(budgets.link.url, "TimeoutError: Timeout reading from socket")  # ...the reply is lost

    budgets.link.call = applied_then_reply_lost
    budgets.settle(held, 0.3)
    budgets.link.call = link_call
    assert budgets.pending == 1  # queued for replay, as any settlement that may not have landed
    assert budgets.spent("t", NOW) == pytest.approx(0.3)  # the read replays the queue first
    assert budgets.pending == 0 and budgets.lost_holds == 0 and budgets.overshoot_usd == 0
    assert budgets.stats("t", NOW).get("overshoot", 0) == 0
    assert budgets.reserved("t", NOW) == 0
    # the tombstone goes with the lease: swept by a reservation after the lease's expiry
    _, z = budgets.keys("t", month_of(NOW))
    assert budgets.link.client.zcard(z) == 1
    time.sleep(1.2 * LEASE)
    budgets.try_reserve("t", 0.1, 1.0, NOW)
    assert budgets.link.client.zrange(z, 0, -1) == [b"2"]  # only the new reservation's lease


def test_a_charge_whose_reply_was_lost_is_counted_once_when_replayed(redis_url, prefix):
    """As a settlement above, for spend with no reservation (a classifier call's price): a charge
    had no id, so its replay after a lost reply was counted a second time.  It now carries an id
    of its own and leaves a tombstone for the lease's length; distinct charges still add up."""
    from llmlab.backends.redis_link import RedisUnavailable

    budgets = from_url(redis_url, prefix, budget_lease_s=LEASE).budgets
    link_call = budgets.link.call

    def applied_then_reply_lost(what, fn, key=None):
        link_call(what, fn, key=key)
        raise RedisUnavailable(budgets.link.url, "TimeoutError: Timeout reading from socket")

    budgets.link.call = applied_then_reply_lost
    budgets.charge("t", 0.25, NOW)
    budgets.link.call = link_call
    assert budgets.pending == 1
    assert budgets.spent("t", NOW) == pytest.approx(0.25)  # replayed, recognised, not added again
    assert budgets.pending == 0 and budgets.lost_holds == 0 and budgets.overshoot_usd == 0
    budgets.charge("t", 0.25, NOW)  # the same amount again is a new charge
    assert budgets.spent("t", NOW) == pytest.approx(0.5)
    _, z = budgets.keys("t", month_of(NOW))
    assert budgets.link.client.zcard(z) == 2  # two tombstones, for the lease's length
    time.sleep(1.2 * LEASE)
    budgets.try_reserve("t", 0.1, 1.0, NOW)
    assert budgets.link.client.zrange(z, 0, -1) == [b"1"]  # swept with expired leases
    assert budgets.stats("t", NOW).get("reclaimed", 0) == 0  # a tombstone is not a reclaimed hold


def test_charge_tombstones_do_not_pile_up_for_a_tenant_that_never_reserves(redis_url, prefix):
    """Only try_reserve swept expired tombstones, and a tenant with no cap never reserves: every
    classifier or embedding charge of an uncapped tenant left a tombstone in its lease set for
    good (a million classified requests, a million members).  A charge sweeps them too, and
    releases an expired lease the way try_reserve does."""
    budgets = from_url(redis_url, prefix, budget_lease_s=LEASE).budgets
    crashed = stalled(from_url(redis_url, prefix, budget_lease_s=LEASE).budgets)
    for _ in range(3):
        budgets.charge("t", 0.25, NOW)
    held = crashed.try_reserve("u", 0.5, 10.0, NOW)  # a request that crashed before settling
    assert held is not None and budgets.reserved("u", NOW) == pytest.approx(0.5)
    _, z = budgets.keys("t", month_of(NOW))
    assert budgets.link.client.zcard(z) == 3
    time.sleep(1.2 * LEASE)
    budgets.charge("t", 0.25, NOW)
    assert budgets.link.client.zcard(z) == 1  # the expired three are gone, the new one stays
    assert budgets.spent("t", NOW) == pytest.approx(1.0)

    budgets.charge("u", 0.25, NOW)
    assert budgets.reserved("u", NOW) == 0.0 and budgets.spent("u", NOW) == pytest.approx(0.25)
    assert budgets.stats("u", NOW).get("reclaimed", 0) == 1


@pytest.mark.parametrize("spent", [b"1.5", b"abc", b"9" * 30])
def test_a_budget_hash_llmlab_did_not_write_fails_closed_with_a_clear_reason(redis_url, prefix, caplog, spent):
    """'1.5' passed the script's tonumber, refused over the cap and then raised ValueError in
    Python: an internal error for every request of the tenant.  Any non-integer is refused in
    the script, and the tenant's requests end as BudgetUnavailable naming the hash."""
    clock = FakeClock()
    backends = from_url(redis_url, prefix)
    backends.client.hset(backends.budgets.keys("default", "2023-11")[0], "spent", spent)
    gw = _gateway(backends, clock)
    with caplog.at_level(logging.WARNING, "llmlab.backends"):
        out = gw.complete("hello")
    assert isinstance(out.error, BudgetUnavailable), out.error
    assert any("non-integer spent" in r.getMessage() for r in caplog.records)
    assert backends.budgets.spent("default", clock()) == 0.0  # a read says so too, without raising


def test_a_request_that_outlives_its_lease_but_spends_nothing_is_no_overshoot(redis_url, prefix, caplog):
    """A slow request that failed (settled at $0) after its lease ran out was counted as a lost
    hold and logged as spend past the cap check, though it spent nothing."""
    one = stalled(from_url(redis_url, prefix, budget_lease_s=LEASE).budgets)
    two = from_url(redis_url, prefix, budget_lease_s=LEASE).budgets
    slow = one.try_reserve("t", 0.8, 1.0, NOW)
    time.sleep(1.2 * LEASE)
    fast = two.try_reserve("t", 0.8, 1.0, NOW)  # the slow request's lease ran out
    two.settle(fast, 0.8)
    with caplog.at_level(logging.WARNING, "llmlab.backends"):
        one.settle(slow, 0.0)
    assert one.spent("t", NOW) == pytest.approx(0.8)
    assert one.overshoot_usd == 0 and one.lost_holds == 0 and one.stats("t", NOW).get("overshoot", 0) == 0
    assert not any("budget_lease_s" in r.getMessage() for r in caplog.records)


def test_the_fallback_spend_kept_in_process_is_only_the_latest_months(redis_url, prefix):
    """spent() remembers each tenant's last read for when Redis is down; every tenant and month was
    kept for good in every gateway process."""
    b = from_url(redis_url, prefix).budgets
    now = NOW
    for month in range(3):
        for i in range(200):
            b.charge(f"t{i}", 0.001, now)
            assert b.spent(f"t{i}", now) == pytest.approx(0.001)
        now = next_month_start(now) + 60.0
    last = now - 60.0 - 1.0  # inside the third month
    assert len(b._last_spent) == 200 and {m for _, m in b._last_spent} == {month_of(last)}
    assert b.try_reserve("t7", 1.0, 0.0005, last) is None  # a refusal remembers the spend it saw
    assert b._last_spent[("t7", month_of(last))] == pytest.approx(0.001)


def test_a_tenant_that_never_comes_back_has_its_keys_expired_by_expire_past_months(any_redis_url, masters_of,
                                                                                   prefix):
    """Last month's keys get their TTL at the tenant's next reservation: a tenant gone for good
    kept them forever, until expire_past_months (the month being counted is left alone).  On a
    cluster the tenants' keys are on every master, and the sweep's SCAN covers them all."""
    b = from_url(any_redis_url, prefix).budgets
    client = b.link.client
    for i in range(40):  # November: 40 tenants, 39 never seen again
        b.settle(b.try_reserve(f"t{i}", 0.01, 1.0, NOW), 0.005)
    december = next_month_start(NOW) + 10.0
    b.settle(b.try_reserve("t0", 0.01, 1.0, december), 0.005)  # t0 returns: its November keys expire
    january = next_month_start(december) + 10.0
    b.settle(b.try_reserve("t1", 0.01, 1.0, january), 0.005)
    november_keys = [k for i in range(40) for k in b.keys(f"t{i}", "2023-11")]
    if any_redis_url.startswith("redis+cluster"):
        assert len(masters_of(november_keys)) == 3
    # t1…t39 (t1 came back two months on: only the month before is given a TTL): kept for good
    assert sum(client.ttl(k) == -1 for k in november_keys) == 2 * 39
    assert b.expire_past_months(january) == 2 * 39 + 2  # theirs, and t0's December keys
    assert all(client.ttl(k) != -1 for k in november_keys + list(b.keys("t0", "2023-12")))
    assert all(client.ttl(k) == -1 for k in b.keys("t1", "2024-01"))  # the month being counted: no TTL
    expected = next_month_start(december) + b.retention_s - january  # December's: retention after its end
    assert expected - 5 <= client.ttl(b.keys("t0", "2023-12")[0]) <= expected + 1
    assert b.expire_past_months(january) == 0
    assert b.spent("t5", NOW) == pytest.approx(0.005)  # still readable until the TTL runs out


def test_a_hold_that_outlives_its_lease_is_renewed_while_its_process_lives(any_redis_url, prefix):
    """A request longer than ``budget_lease_s`` (a long stream, a reasoning model thinking for
    minutes) lost its hold to the next reservation, and its tenant could go past the cap.  The
    process renews its open holds' leases every third of a lease; a process that stops (here
    closed, as a dead one renews nothing) loses its holds a lease later, as before."""
    lease = 1.5
    one = from_url(any_redis_url, prefix, budget_lease_s=lease).budgets
    two = from_url(any_redis_url, prefix, budget_lease_s=lease).budgets
    held = one.try_reserve("t", 0.8, 1.0, time.time())
    time.sleep(2.5 * lease)  # the first lease is long gone
    assert two.try_reserve("t", 0.5, 1.0, time.time()) is None  # the hold is still there
    assert one.renewed_leases >= 3
    one.settle(held, 0.8)
    assert one.lost_holds == 0 and one.overshoot_usd == 0 and one.stats("t", time.time()).get("reclaimed", 0) == 0
    assert two.try_reserve("t", 0.2, 1.0, time.time()) is not None  # what is left of the cap
    dead = from_url(any_redis_url, prefix, budget_lease_s=lease).budgets
    assert dead.try_reserve("u", 0.9, 1.0, time.time()) is not None
    dead.close()  # stops renewing, as a process that died, and its renewal thread has ended
    assert not dead._heartbeat.is_alive()
    time.sleep(1.5 * lease)
    assert two.try_reserve("u", 0.5, 1.0, time.time()) is not None  # its hold went back to the budget
    assert two.stats("u", time.time()).get("reclaimed", 0) == 1


def test_closing_writes_the_spend_queued_during_an_outage(start_redis):
    """Settlements queued while Redis was down were replayed only before a later budget command:
    a service shut down (``backends.close()``) after Redis came back, before its next request,
    lost them, and every replica saw the tenant's month undercounted.  Closing replays them
    first, without waiting out ``retry_interval_s``."""
    server = start_redis()
    backends = from_url(server.url, "p", retry_interval_s=60)
    held = [backends.budgets.try_reserve("acme", 0.01, 1.0, NOW) for _ in range(3)]
    server.kill()
    for hold in held:
        backends.budgets.settle(hold, 0.004)
    assert backends.budgets.pending == 3
    server.start()  # back (a failover, a restart) before the service goes
    backends.close()
    assert backends.budgets.pending == 0
    assert from_url(server.url, "p").budgets.spent("acme", NOW) == pytest.approx(0.012, abs=1e-9)


def test_closing_with_redis_still_down_says_what_spend_is_lost(start_redis, caplog):
    server = start_redis()
    backends = from_url(server.url, "p", retry_interval_s=60, connect_timeout_s=0.2)
    hold = backends.budgets.try_reserve("acme", 0.01, 1.0, NOW)
    server.kill()
    backends.budgets.settle(hold, 0.004)
    backends.budgets.charge("acme", 0.001, NOW)
    with caplog.at_level(logging.WARNING, "llmlab.backends"):
        backends.close()
    lost = [r.getMessage() for r in caplog.records if "not written" in r.getMessage()]
    assert len(lost) == 1 and "2 settlement(s) or charge(s) of $0.005000" in lost[0], lost


SKEWED = textwrap.dedent("""
    import sys, time
    from llmlab.backends import from_url
    budgets = from_url(sys.argv[1], sys.argv[2]).budgets
    held = budgets.try_reserve("t", 0.9, 1.0, float(sys.argv[3]))  # the time on this host's clock, which is off
    print(held is not None)
    if held is not None:
        budgets.settle(held, 0.9)
""")


@pytest.mark.parametrize("skew_s", [11 * 60, -11 * 60])
def test_a_replica_whose_clock_is_off_by_more_than_a_lease_releases_no_hold(redis_url, prefix, skew_s):
    """Leases were deadlines on the callers' clocks: a replica whose clock ran 11 minutes ahead
    (the default lease is 10) swept another replica's live $0.90 hold of a $1 cap at its next
    reservation and spent it too ($1.80 spent, and the honest replica's settlement blamed its own
    lease); one whose clock ran that far behind wrote leases already lapsed for everyone else.
    Leases are timed on Redis' clock now.  Both replicas' times are one fixed mid-month instant
    (the skewed one's off by ``skew_s``): on the real clock, a run within 11 minutes of a month's
    end put the two in different months, each with a cap of its own, and the test failed."""
    honest = from_url(redis_url, prefix).budgets
    skewed_holds = skew_s < 0
    if skewed_holds:  # the skewed replica holds; the honest one reserves after it
        child = subprocess.run([sys.executable, "-c", SKEWED.replace("budgets.settle(held, 0.9)", "time.sleep(0)"),
                                redis_url, prefix, repr(NOW + skew_s)], capture_output=True, text=True, timeout=60)
        assert child.returncode == 0 and child.stdout.strip() == "True", child.stderr
        assert honest.try_reserve("t", 0.9, 1.0, NOW) is None  # its (unsettled) hold still stands
        assert honest.stats("t", NOW).get("reclaimed", 0) == 0
        return
    held = honest.try_reserve("t", 0.9, 1.0, NOW)  # a long request, on this host's clock
    child = subprocess.run([sys.executable, "-c", SKEWED, redis_url, prefix, repr(NOW + skew_s)],
                           capture_output=True, text=True, timeout=60)
    assert child.returncode == 0 and child.stdout.strip() == "False", child.stderr  # refused: the cap is held
    honest.settle(held, 0.9)
    assert honest.spent("t", NOW) == pytest.approx(0.9)
    assert honest.lost_holds == 0 and honest.overshoot_usd == 0


def test_a_redis_restarted_without_its_data_is_said_to_have_forgotten_the_month(start_redis, caplog):
    """A Redis restarted without persistence forgets every tenant's month-to-date spend (as the
    README says), and the caps count from $0 again; nothing in the log said so."""
    server = start_redis()
    budgets = from_url(server.url, "p", retry_interval_s=0).budgets
    for _ in range(2):
        budgets.settle(budgets.try_reserve("acme", 0.5, 1.0, time.time()), 0.5)
    assert budgets.try_reserve("acme", 0.5, 1.0, time.time()) is None  # $1 of $1 spent
    server.restart()  # SHUTDOWN NOSAVE: an empty Redis comes back
    with caplog.at_level(logging.WARNING, "llmlab.backends"):
        budgets.try_reserve("acme", 0.5, 1.0, time.time())  # a first command may find the old socket dead
        held = budgets.try_reserve("acme", 0.5, 1.0, time.time())
    assert held is not None  # the documented cost of a Redis without persistence...
    warned = [r.getMessage() for r in caplog.records if "lost the budget hash" in r.getMessage()]
    assert len(warned) == 1 and "acme" in warned[0] and "$1.000000" in warned[0]  # ...now said
    budgets.close()
