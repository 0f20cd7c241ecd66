"""Rate limits on a real redis-server: identical to the in-memory buckets, and shared between gateways."""
from __future__ import annotations

import random
import time

import pytest

from llmlab import Deployment, FixedRouter, Gateway, RateLimit, RateLimited, RateLimiter
from llmlab.ratelimit import Refusal
from llmlab.backends import from_url
from llmlab.scripted import FakeClock, ScriptedDriver
from redis_fixtures import any_redis_url, prefix, redis_server, redis_url, start_redis  # noqa: F401

pytestmark = pytest.mark.redis

LIMITS = dict(per_plan={"free": RateLimit(rpm=5, tpm=400), "paid": RateLimit(rpm=30)},
              per_tenant={"vip": RateLimit(tpm=2_000)})


def test_same_decisions_and_waits_as_the_in_memory_limiter(any_redis_url, prefix):
    shared = from_url(any_redis_url, prefix, **LIMITS, default_limit=RateLimit(rpm=10, tpm=1_000)).rate_limiter
    memory = RateLimiter(LIMITS["per_plan"], LIMITS["per_tenant"], RateLimit(rpm=10, tpm=1_000))
    rng = random.Random(3)
    now = 1_700_000_000.0
    refused = 0
    for step in range(600):
        now += rng.choice([0.0, 0.0, 0.05, 0.5, 2.0, 7.0, 61.0])
        tenant, plan = rng.choice([("a", "free"), ("b", "paid"), ("vip", "free"), ("c", "other")])
        tokens = rng.choice([1, 40, 120, 399, 401, 2_500])
        got, want = shared.acquire(tenant, plan, tokens, now), memory.acquire(tenant, plan, tokens, now)
        assert got == want, (step, tenant, plan, tokens)  # same limit name, bit-identical retry_after_s
        refused += got is not None
    assert 50 < refused < 550 and shared.refusals == memory.refusals


def test_an_unlimited_tenant_never_touches_redis(redis_url, prefix):
    backends = from_url(redis_url, prefix)
    assert backends.rate_limiter.acquire("t", "free", 10**9, 0.0) is None
    assert not backends.client.exists(backends.rate_limiter.key("t"))


def gateway(backends, clock):
    return Gateway([Deployment("gpt-4o", "gpt-4o")], router=FixedRouter("gpt-4o"), fallbacks={}, cache=False,
                   clock=clock, driver=ScriptedDriver(clock=clock), seed=0, **backends.gateway_kwargs())


def test_two_gateways_draw_from_the_same_buckets(any_redis_url, prefix):
    clock = FakeClock()
    gw1 = gateway(from_url(any_redis_url, prefix, default_limit=RateLimit(rpm=10)), clock)
    gw2 = gateway(from_url(any_redis_url, prefix, default_limit=RateLimit(rpm=10)), clock)
    outs = [gw.complete(f"q{i}", tenant="acme") for i in range(6) for gw in (gw1, gw2)]
    assert sum(o.ok for o in outs) == 10
    refused = [o for o in outs if not o.ok]
    assert all(isinstance(o.error, RateLimited) and o.error.limit == "requests/min" for o in refused)
    assert refused[0].error.retry_after_s == pytest.approx(6.0)  # one request refills in 60/10 s
    assert gw1.complete("other tenant", tenant="globex").ok  # buckets are per tenant
    clock.advance(6.0)
    assert gw2.complete("later", tenant="acme").ok


def test_redis_down_fails_open_by_default_and_closed_when_asked(start_redis):
    server = start_redis()
    clock = FakeClock()
    open_b = from_url(server.url, "o", default_limit=RateLimit(rpm=1), retry_interval_s=60)
    closed_b = from_url(server.url, "c", default_limit=RateLimit(rpm=1), rate_limits_on_error="closed",
                        retry_interval_s=60)
    gw_open, gw_closed = gateway(open_b, clock), gateway(closed_b, clock)
    assert gw_open.complete("one").ok and not gw_open.complete("two").ok  # the limit works while Redis is up
    server.kill()
    started = time.perf_counter()
    assert all(gw_open.complete(f"q{i}").ok for i in range(20))  # fail open: served, unlimited
    closed = [gw_closed.complete(f"q{i}") for i in range(20)]
    assert time.perf_counter() - started < 2.0
    assert all(isinstance(o.error, RateLimited) and o.error.retry_after_s == 60 for o in closed)
    assert open_b.rate_limiter.unavailable == 20 and closed_b.rate_limiter.unavailable == 20


def test_unused_tokens_are_given_back_as_in_memory(redis_url, prefix):
    limits = dict(per_plan={"free": RateLimit(tpm=3_000)})
    shared = from_url(redis_url, prefix, **limits).rate_limiter
    memory = RateLimiter(**limits)
    now = 1_700_000_000.0
    admitted = {"redis": 0, "memory": 0}
    for k in range(40):  # each takes 1,000 at worst and uses 100: without refunds only 3 a minute pass
        now += 0.5
        for name, limiter in (("redis", shared), ("memory", memory)):
            if limiter.acquire("t", "free", 1_000, now) is None:
                admitted[name] += 1
                limiter.settle("t", "free", 1_000, 100, now)
    assert admitted["redis"] == admitted["memory"] > 20


def test_switching_plans_does_not_refill_a_bucket(redis_url, prefix):
    plans = {"free": RateLimit(rpm=3), "paid": RateLimit(rpm=100)}
    limiters = {"redis": from_url(redis_url, prefix, per_plan=plans).rate_limiter, "memory": RateLimiter(plans)}
    decisions = {name: [limiter.acquire("acme", plan, 1, 1_700_000_000.0 + k / 100) is None
                        for k in range(30) for plan in ("free", "paid")] for name, limiter in limiters.items()}
    assert decisions["redis"] == decisions["memory"] and sum(decisions["redis"][0::2]) == 3


def test_tokens_used_beyond_what_was_taken_count_as_in_memory(redis_url, prefix):
    """A request's retries and cascade stages are billed more tokens than its worst case took:
    the in-memory limiter takes the excess from the bucket when the request settles (a bucket
    swept meanwhile is made again for it), the Redis one ignored it, so a tenant on Redis ran
    past its tokens/min.  Both settle alike now, a missing (expired) bucket included."""
    limits = dict(per_plan={"free": RateLimit(tpm=1_000)})
    shared = from_url(redis_url, prefix, **limits).rate_limiter
    memory = RateLimiter(**limits)
    now = 1_700_000_000.0
    decisions: dict[str, list[bool]] = {"redis": [], "memory": []}
    rng = random.Random(5)
    steps = [(rng.choice([0.0, 0.5, 1.0, 3.0, 150.0]), rng.choice([100, 300, 600]), rng.choice([0, 50, 300, 900]))
             for _ in range(200)]
    for name, limiter in (("redis", shared), ("memory", memory)):
        t = now
        for wait, taken, used in steps:
            t += wait
            admitted = limiter.acquire("t", "free", taken, t) is None
            decisions[name].append(admitted)
            if admitted:  # settled up to 30 s on: further ahead of the next acquire, the in-memory
                # limiter takes the acquire's clock as stepped back (llmlab.ratelimit.CLOCK_STEP_S)
                limiter.settle("t", "free", taken, used, t + min(wait / 2, 30.0))
    assert decisions["redis"] == decisions["memory"]
    assert 20 < sum(decisions["redis"]) < 180
    shared.link.client.delete(shared.key("t"))  # expired while the request ran: made again for the excess
    later = t + 1_000.0
    shared.settle("t", "free", 100, 500, later)
    assert shared.acquire("t", "free", 700, later) == Refusal("tokens/min", pytest.approx(6.0))
    assert shared.acquire("t", "free", 600, later) is None


def test_a_bucket_in_debt_outlives_the_idle_expiry_until_it_has_refilled(redis_url, prefix):
    """A request charged far beyond what it took (retries of a large prompt) leaves its tokens/min
    bucket more than a minute from full; the key expired after the idle expiry (two minutes)
    all the same, and Redis forgot the debt the in-memory limiter still held.  The key now lives
    until the bucket has refilled, and a later request does not shorten that."""
    limits = dict(per_plan={"free": RateLimit(rpm=100, tpm=1_000)})
    shared = from_url(redis_url, prefix, **limits).rate_limiter
    now = 1_700_000_000.0
    assert shared.acquire("t", "free", 900, now) is None
    shared.settle("t", "free", 900, 4_900, now)  # level 100 - 4,000: five minutes from full
    ttl_ms = shared.link.client.pttl(shared.key("t"))
    assert 290_000 < ttl_ms <= 360_000, ttl_ms
    assert shared.acquire("t", "free", 10, now + 1.0) is not None  # refused: the debt holds
    assert shared.link.client.pttl(shared.key("t")) > 280_000


SKEWED = """
import sys, time
from llmlab import RateLimit
from llmlab.backends import from_url
limiter = from_url(sys.argv[1], sys.argv[2], default_limit=RateLimit(rpm=120)).rate_limiter
print(limiter.acquire("acme", "free", 1, time.time() + 300))  # this host's clock is 5 minutes ahead
"""


def test_a_replica_whose_clock_runs_ahead_does_not_stop_the_others_refills(redis_url, prefix):
    """A replica whose clock ran 5 minutes ahead stamped the tenant's buckets with its time, and
    every other replica saw no refill until its own clock got there: refused for 5 minutes, each
    time told to retry in half a second.  A caller's time now runs at most a second past Redis'."""
    import subprocess
    import sys

    child = subprocess.run([sys.executable, "-c", SKEWED, redis_url, prefix], capture_output=True, text=True,
                           timeout=60)
    assert child.returncode == 0 and child.stdout.strip() == "None", child.stderr
    limiter = from_url(redis_url, prefix, default_limit=RateLimit(rpm=120)).rate_limiter
    while (refusal := limiter.acquire("acme", "free", 1, time.time())) is None:
        pass  # the rest of the bucket
    # the wait counts from the skewed stamp (at most a second past Redis' clock), then one refill:
    # waiting it alone is enough (the hint used to leave out the stamp's lead, up to a second short)
    assert refusal.limit == "requests/min" and 0 < refusal.retry_after_s <= 1.5 + 1e-3
    time.sleep(refusal.retry_after_s)
    assert limiter.acquire("acme", "free", 1, time.time()) is None


def test_a_refusal_names_the_longest_wait_and_waiting_it_admits(redis_url, prefix):
    """As in memory (tests/test_ratelimit.py): the longer of the two buckets' waits (the first
    bucket's was reported: "retry in 30 s" for a request too large for tokens/min, or one whose
    tokens needed 60 s), counted from a stamp ahead of the caller's clock, and enough on an
    epoch clock."""
    limiter = from_url(redis_url, prefix, default_limit=RateLimit(rpm=2, tpm=60)).rate_limiter
    now = 1_700_000_000.0
    assert limiter.acquire("t", "p", 30, now) is None and limiter.acquire("t", "p", 30, now) is None
    assert limiter.acquire("t", "p", 61, now) == Refusal("tokens/min", float("inf"))
    refusal = limiter.acquire("t", "p", 60, now - 1.0)  # a replica whose clock is a second behind
    assert refusal.limit == "tokens/min" and refusal.retry_after_s == pytest.approx(61.0)
    assert limiter.acquire("t", "p", 60, now - 1.0 + refusal.retry_after_s) is None
