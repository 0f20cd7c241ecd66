"""Request coalescing under live load: bursts through litellm's real HTTP path against the fake
provider on 127.0.0.1, with the failures a service meets — its shared cache (Redis) going away
mid-burst, an outage while the question's cached answer is stale.  Coalescing promises one
provider call per flight; these are the cases where the followers used to call one each."""
from __future__ import annotations

import asyncio
import time

from llmlab import CacheOutcome, Coalesce, Deployment, FixedRouter, Gateway, OutcomeKind, RetryPolicy
from llmlab.testing import FakeProvider, FaultPlan
from redis_fixtures import start_redis  # noqa: F401

QUESTION = "Is there an outage on the EU cluster right now?"


def live_gateway(base_url: str, **kw) -> Gateway:
    dep = Deployment("m", "openai/m", {"api_base": base_url, "api_key": "sk-test"}, price_model="gpt-4o-mini")
    return Gateway([dep], router=FixedRouter("m"), retry=RetryPolicy(max_retries=0),
                   coalesce=Coalesce(max_wait_s=10), **kw).warm_up()


def test_a_burst_whose_redis_dies_mid_flight_still_reaches_the_provider_once(start_redis):
    from llmlab.backends import from_url

    server = start_redis()
    backends = from_url(server.url, "coal", retry_interval_s=60, log_interval_s=60)
    plan = FaultPlan()
    plan.model("m").latency(0.5)

    async def run():
        async with FakeProvider(plan) as fp:
            gw = live_gateway(fp.base_url, cache_store=backends.cache_store)
            burst = [asyncio.ensure_future(gw.acomplete(QUESTION, request_id=f"r{i}")) for i in range(40)]
            await asyncio.sleep(0.2)  # every request missed the cache; the leader's call is out
            await asyncio.to_thread(server.kill)  # its answer's write will be dropped
            return gw, await asyncio.gather(*burst), fp.stats.total

    try:
        gw, outcomes, calls = asyncio.run(run())
    finally:
        backends.close()
    assert backends.cache_store.dropped_puts == 1  # the leader's answer never reached Redis
    assert calls == 1 and len(gw.ledger) == 40 and all(o.ok for o in outcomes)
    followers = [o for o in outcomes if o.coalesced_with is not None]
    # one leader, the request that called; which of the burst boards first is the step threads'
    # scheduling (Redis backends run steps on threads): r0 led on a quiet machine, r1 once on a loaded one
    (leader,) = [o for o in outcomes if o.coalesced_with is None]
    assert len(followers) == 39 and {o.coalesced_with for o in followers} == {leader.request_id}
    assert all(o.cache is CacheOutcome.EXACT_HIT and o.cost_usd == 0 and o.text == leader.text
               for o in followers)

def test_an_outage_with_a_stale_cached_answer_costs_one_call_at_a_time():
    plan = FaultPlan()
    plan.model("m").latency(0.05)

    async def run():
        async with FakeProvider(plan) as fp:
            gw = live_gateway(fp.base_url, cache_ttl_s=0.2)  # the default breaker opens after 5 failures
            assert (await gw.acomplete(QUESTION, request_id="earlier")).kind is OutcomeKind.MODEL
            await asyncio.sleep(0.3)  # its answer is stale now: an outage's last resort
            fp.set_outage("m")
            fp.reset_stats()
            outcomes = await asyncio.gather(*(gw.acomplete(QUESTION, request_id=f"r{i}") for i in range(30)))
            return gw, outcomes, fp.stats.total

    gw, outcomes, calls = asyncio.run(run())
    assert all(o.kind is OutcomeKind.LAST_RESORT for o in outcomes) and len(gw.ledger) == 31
    # one follower at a time tried the provider again until the breaker opened; each of the 29
    # followers calling the failed provider at once (30 calls) left the breaker no say
    assert calls == 5
    assert gw.flights.in_flight == 0


def test_a_sync_follower_on_the_leaders_event_loop_does_not_freeze_it():
    plan = FaultPlan()
    plan.model("m").latency(0.3)

    async def run(fp):
        gw = live_gateway(fp.base_url)  # max_wait_s=10
        leader = asyncio.ensure_future(gw.acomplete(QUESTION, request_id="lead"))
        await asyncio.sleep(0.1)  # the leader's call is out, on this loop
        started = time.perf_counter()
        out = gw.complete(QUESTION, request_id="sync")  # a coroutine calling the sync API
        took = time.perf_counter() - started
        return out, took, await leader

    with FakeProvider(plan) as fp:  # the provider on a thread of its own: the loop's block is the point
        out, took, led = asyncio.run(run(fp))
        calls = fp.stats.total
    # it waited for a leader that could not move while it blocked the loop: 10 s, then called anyway
    assert took < 2 and out.kind is OutcomeKind.MODEL and led.kind is OutcomeKind.MODEL and calls == 2
