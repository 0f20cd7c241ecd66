"""State a gateway keeps while it stays up: what a request leaves behind once it is answered."""
from __future__ import annotations

import gc
import weakref

import pytest

from llmlab import GatewayError, RateLimit, RateLimited, RateLimiter, RetryPolicy
from llmlab.effects import ErrorKind
from llmlab.errors import ConfigError
from llmlab.ledger import Ledger


class _Body(bytearray):
    """A caller's local (a web request's body) that a weak reference can watch."""


def test_raising_an_outcomes_error_does_not_pin_the_callers_frames_in_the_ledger(make_gateway):
    gw = make_gateway(rate_limiter=RateLimiter(default=RateLimit(rpm=1)))
    bodies: list[weakref.ref] = []

    def handler(i: int) -> str:
        body = _Body(10_000)
        bodies.append(weakref.ref(body))
        try:
            gw.complete(f"question {i}", tenant="t").raise_for_error()
        except GatewayError as exc:
            return exc.code
        return "ok"

    codes = [handler(i) for i in range(20)]
    gc.collect()
    assert codes == ["ok"] + ["rate_limited"] * 19
    assert len(gw.ledger.records) == 20
    assert sum(ref() is not None for ref in bodies) == 0  # each handler's locals were kept by its error
    error = gw.ledger.records[-1].error
    try:
        gw.ledger.records[-1].raise_for_error()
    except RateLimited as raised:  # the same error, by type and fields
        assert str(raised) == str(error) and raised.retry_after_s == error.retry_after_s
        assert raised.tenant == error.tenant and raised.limit == error.limit
    assert error.__traceback__ is None


def test_cache_keys_do_not_pin_every_long_prompt_they_were_computed_for():
    """The key memos hold their texts: 65,536 distinct 8 KB retrieved contexts (and 16,384
    normalised copies) stayed in memory in a process that never saw them again."""
    import tracemalloc

    from llmlab.cache.keys import CacheKeyPolicy

    policy = CacheKeyPolicy()
    context = "retrieved article text " * 500  # ≈ 11.5 KB
    first = policy.key([{"role": "system", "content": context + " 0"}, {"role": "user", "content": "q"}], {})
    assert first == policy.key([{"role": "system", "content": "  " + context.replace(" ", "\n") + " 0"},
                                {"role": "user", "content": "q"}], {})  # still normalised: the same key
    gc.collect()
    tracemalloc.start()
    try:
        for i in range(1, 800):
            policy.key([{"role": "system", "content": f"{context} {i}"}, {"role": "user", "content": "q"}], {})
        gc.collect()
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert held < 8_000_000  # ≈ 6 MB: the last 256 contexts and their normalised copies (≈ 18 MB before)


def test_a_clock_stepped_back_does_not_lock_a_tenant_out_of_its_rate_limit(make_gateway, clock):
    """The gateway reads time.time: an NTP step back of an hour left every tenant that had used its
    limit refused for that hour ("retry in 3003 s"), its buckets refilling from their last update,
    an hour ahead.  A step back of more than a minute now restarts the buckets' time, level kept."""
    gw = make_gateway(rate_limiter=RateLimiter(default=RateLimit(rpm=60)))
    for i in range(60):  # the whole minute's requests at once
        assert gw.complete(f"q {i}", tenant="t", cache=False).ok
    clock.advance(-3_600.0)
    refused = gw.complete("one too many", tenant="t", cache=False).error
    assert isinstance(refused, RateLimited) and refused.retry_after_s < 1.1  # the refill is a second away
    clock.advance(10.0)
    assert sum(gw.complete(f"later {i}", tenant="t", cache=False).ok for i in range(12)) == 10


def test_a_clock_stepped_back_does_not_keep_a_breaker_open_for_the_step(make_gateway, driver, clock):
    """A breaker opened just before the clock stepped back an hour skipped its deployment for that
    hour plus the cooldown; the cooldown now counts from the first request after the step."""
    driver.script("gpt-4o", ErrorKind.SERVER)
    gw = make_gateway(retry=RetryPolicy(max_retries=0), breaker={"failure_threshold": 1, "cooldown_s": 30})
    assert gw.complete("q", cache=False).deployment == "claude"  # the primary failed: its breaker opened
    clock.advance(-3_600.0)
    assert gw.complete("q", cache=False).attempts[0].error == "circuit_open"
    clock.advance(31.0)
    assert gw.complete("q", cache=False).deployment == "gpt-4o"  # the half-open probe, a cooldown later
    assert gw.pipeline.breakers["gpt-4o"].state == "closed"


def test_a_ledger_that_keeps_no_records_can_bound_its_spend_per_tenant(make_gateway):
    """``Ledger(keep=False)`` still held one spend total per tenant ever served: a service whose
    tenants are its users grew with every new user.  ``tenants=`` keeps the most recent ones."""
    sent: list = []
    gw = make_gateway(ledger=Ledger(keep=False, sink=sent.append, tenants=50))
    for i in range(400):
        gw.complete(f"question {i}", tenant=f"user-{i}")
        gw.complete(f"question {i}", tenant="regular")  # served all along: never the least recent
    spend = gw.ledger.spend_by_tenant()
    assert len(spend) == 50 and "regular" in spend and "user-399" in spend and "user-300" not in spend
    assert spend["regular"] == sum(o.cost_usd for o in sent if o.tenant == "regular")
    assert gw.ledger.total_cost_usd == pytest.approx(sum(o.cost_usd for o in sent), rel=1e-12)
    assert len(gw.ledger) == 800 and not gw.ledger.records
    with pytest.raises(ConfigError, match="ledger.tenants"):
        Ledger(keep=False, tenants=0)
