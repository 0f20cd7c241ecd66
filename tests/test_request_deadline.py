"""One deadline over a whole request (llmlab.request_deadline), through the scripted driver (sync
and async), litellm against the fake provider on 127.0.0.1, and the simulator.

Without it a request took (max_retries + 1) × timeout_s plus its backoffs per deployment of its
chain: 2 s timeouts, two retries and a fallback made a 12 s request behind a 3 s P95 target."""
from __future__ import annotations

import asyncio
import time

import pytest

from llmlab import Deployment, FixedRouter, Gateway, Hedge, RetryPolicy
from llmlab.effects import CallResult, CallError, ErrorKind, OutcomeKind
from llmlab.errors import AllProvidersFailed, ConfigError, InvalidRequest
from llmlab.scripted import FakeClock, ScriptedDriver

SLOW = CallResult("a late answer", 5, 3, 10.0, 10.0)  # answers after 10 s: past every timeout here
RETRY = RetryPolicy(max_retries=2, base_s=0.1, cap_s=0.1)


def scripted(replies_a=(), replies_b=(), *, request_timeout_s=None, timeout_s=2.0, **kw):
    clock = FakeClock()
    driver = ScriptedDriver(clock=clock, scripts={"a": list(replies_a), "b": list(replies_b)},
                            default="ok: an answer")
    deps = [Deployment("a", "gpt-4o", timeout_s=timeout_s), Deployment("b", "gpt-4o-mini", timeout_s=timeout_s)]
    options = dict(router=FixedRouter("a"), fallbacks={"a": ["b"]}, retry=RETRY, input_guards=(), clock=clock,
                   seed=3, driver=driver, breaker={"failure_threshold": 5})
    options.update(kw)
    return Gateway(deps, request_timeout_s=request_timeout_s, **options), clock


def serve(gw, mode, prompt="q", **kw):
    if mode == "complete":
        return gw.complete(prompt, **kw)
    return asyncio.run(gw.acomplete(prompt, **kw))


# -- settings ----------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), 86_401, True, "3"])
def test_a_bad_deadline_names_its_field_and_range(bad):
    with pytest.raises(ConfigError, match=r"request_timeout_s=.*\(0, 86400\]"):
        Gateway(request_timeout_s=bad)
    with pytest.raises(InvalidRequest, match=r"request_timeout_s=.*\(0, 86400\]") as info:
        Gateway().request("hi", request_timeout_s=bad)
    assert info.value.field == "request_timeout_s"


def test_the_scenario_field_is_validated_and_reaches_the_gateway():
    from llmlab.sim.build import build_gateway
    from llmlab.sim.scenario import ScenarioError, load_scenario

    scenario = load_scenario("realtime-chat", overrides={"gateway.request_timeout_s": 3})
    assert scenario.gateway.request_timeout_s == 3.0
    assert build_gateway(scenario, time.time, seed=1, simulated=True).pipeline.request_timeout_s == 3.0
    with pytest.raises(ScenarioError, match="gateway.request_timeout_s"):
        load_scenario("realtime-chat", overrides={"gateway.request_timeout_s": 0})


# -- semantics, scripted driver ------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["complete", "acomplete"])
def test_the_deadline_bounds_retries_and_fallbacks_and_spares_the_breaker(mode):
    gw, clock = scripted([SLOW] * 3, [SLOW] * 3, request_timeout_s=3.0)
    out = serve(gw, mode)
    assert out.kind is OutcomeKind.ERROR and isinstance(out.error, AllProvidersFailed)
    assert "the request's deadline (3 s) ran out" in str(out.error) and "deadline (3 s) ran out" in out.route_reason
    assert out.latency_s == pytest.approx(3.0)
    # a's first call timed out on its own 2 s; the retry got what was left (< 1 s) and was cut by the deadline
    assert [a.deployment for a in out.attempts] == ["a", "a"]
    assert out.attempts[0].error.startswith("timeout:") and "deadline" not in out.attempts[0].error
    assert out.attempts[1].error.startswith("timeout: cut by the request's deadline")
    assert out.attempts[1].latency_s == pytest.approx(3.0 - 2.0 - out.attempts[1].waited_s)
    breaker = gw.pipeline.breakers["a"]
    assert breaker.consecutive_failures == 1  # its own timeout counted, the deadline's cut did not
    assert "b" not in gw.pipeline.breakers or gw.pipeline.breakers["b"].consecutive_failures == 0


def test_without_a_deadline_the_chain_runs_its_course():
    """Regression guard: the same faults with no deadline take every retry and the fallback."""
    gw, clock = scripted([SLOW] * 3, [SLOW] * 3)
    out = gw.complete("q")
    assert [a.deployment for a in out.attempts] == ["a"] * 3 + ["b"] * 3
    assert out.latency_s == pytest.approx(6 * 2.0 + sum(clock.sleeps))
    assert gw.pipeline.breakers["a"].consecutive_failures == 3
    assert "deadline" not in str(out.error)


def test_a_request_sets_its_own_deadline_over_the_gateways():
    gw, clock = scripted([SLOW] * 3, [SLOW] * 3, request_timeout_s=30.0)
    out = gw.complete("q", request_timeout_s=1.5)
    assert out.latency_s == pytest.approx(1.5) and "(1.5 s) ran out" in str(out.error)
    assert len(out.attempts) == 1 and gw.pipeline.breakers["a"].consecutive_failures == 0


def test_a_wait_that_would_end_past_the_deadline_is_not_started():
    throttled = CallError(ErrorKind.RATE_LIMIT, "slow down", retry_after_s=2.0)
    gw, clock = scripted([throttled], request_timeout_s=1.0)
    out = gw.complete("q")
    assert out.ok and out.deployment == "b"  # straight to the fallback, which needs no wait
    assert clock.sleeps == [] and out.latency_s < 1.0
    gw, clock = scripted([throttled])  # no deadline: the Retry-After is waited out
    assert gw.complete("q").deployment == "a" and clock.sleeps == [2.0]


def test_a_skipped_wait_does_not_blame_the_deadline_for_a_fallback_that_failed_on_its_own():
    """The primary's Retry-After would end past the deadline, so the chain moved on; the fallback
    then failed its own way with time to spare.  The error and the ledger said the request's
    deadline had run out, sending whoever read them after the wrong cause."""
    throttled = CallError(ErrorKind.RATE_LIMIT, "slow down", retry_after_s=2.0)
    gw, clock = scripted([throttled], [ErrorKind.SERVER] * 3, request_timeout_s=1.0)
    out = gw.complete("q")
    assert not out.ok and isinstance(out.error, AllProvidersFailed)
    assert "deadline" not in str(out.error) and "deadline" not in out.route_reason, (str(out.error), out.route_reason)
    assert [a.deployment for a in out.attempts] == ["a", "b", "b", "b"]


def test_the_last_resort_answer_is_still_served_when_the_deadline_ends_a_request():
    gw, clock = scripted(["ok: the answer cached an hour ago"], request_timeout_s=3.0, cache_ttl_s=60.0)
    assert gw.complete("where is my parcel").ok
    clock.advance(3_600)  # the entry is stale now
    gw.driver.script("a", *[SLOW] * 3)
    gw.driver.script("b", *[SLOW] * 3)
    out = gw.complete("where is my parcel")
    assert out.kind is OutcomeKind.LAST_RESORT and out.text == "ok: the answer cached an hour ago"
    assert out.latency_s == pytest.approx(3.0) and "deadline (3 s) ran out" in out.route_reason


def test_a_cascade_does_not_escalate_past_the_deadline():
    from llmlab.routing import CascadeRouter

    gw, clock = scripted(["ok: a short answer"], [SLOW] * 3, request_timeout_s=1.5,
                         router=CascadeRouter(["a", "b"], accept=lambda text, req: False), fallbacks={})
    out = gw.complete("q")
    # stage a answered (rejected), stage b was cut at what was left: a's answer is served, not cached
    assert out.ok and out.deployment == "a" and out.latency_s == pytest.approx(1.5)
    assert [a.deployment for a in out.attempts] == ["a", "a", "b"]  # b once, not retried
    assert out.attempts[-1].error.startswith("timeout: cut by the request's deadline")


def test_no_hedge_starts_after_the_deadline():
    gw, clock = scripted([SLOW], request_timeout_s=1.0, hedge=Hedge(after_s=1.5))
    out = gw.complete("q")
    assert [a.purpose for a in out.attempts] == ["answer"] and out.latency_s == pytest.approx(1.0)
    gw, clock = scripted([SLOW], request_timeout_s=3.0, hedge=Hedge(after_s=1.5))
    out = gw.complete("q")  # in time: hedged to b, which answers
    assert out.ok and out.deployment == "b" and "hedge" in [a.purpose for a in out.attempts]


def test_a_stream_is_held_to_the_deadline_until_its_first_token_only():
    late_start = CallResult("streamed text", 5, 3, 4.0, 2.0)  # first token at 2 s, done at 4 s
    gw, clock = scripted([late_start], [late_start], request_timeout_s=1.0)
    response = gw.stream("q")
    assert "".join(c for c in response if isinstance(c, str)) == ""
    assert response.outcome.kind is OutcomeKind.ERROR and "deadline (1 s) ran out" in str(response.outcome.error)
    early_start = CallResult("streamed text", 5, 3, 4.0, 0.5)  # first token in time, done after the deadline
    gw, clock = scripted([early_start], request_timeout_s=1.0)
    response = gw.stream("q")
    assert "".join(c for c in response if isinstance(c, str)) == "streamed text" and response.outcome.ok


# -- live: litellm against the fake provider -------------------------------------------------------

@pytest.mark.parametrize("mode", ["complete", "acomplete"])
def test_live_a_healthy_but_slow_provider_is_cut_by_the_deadline_not_judged(mode):
    from llmlab.testing import FakeProvider, FaultPlan

    plan = FaultPlan()
    plan.model("a-model").latency(1.5)  # healthy, slower than the request may take
    with FakeProvider(plan) as fp:
        params = {"api_base": fp.base_url, "api_key": "sk-test"}
        deps = [Deployment("a", "openai/a-model", params, timeout_s=5.0, price_model="gpt-4o"),
                Deployment("b", "openai/b-model", params, timeout_s=5.0, price_model="gpt-4o-mini")]
        plan.model("b-model").latency(1.5)
        gw = Gateway(deps, router=FixedRouter("a"), fallbacks={"a": ["b"]}, retry=RETRY, cache=False,
                     input_guards=(), request_timeout_s=0.6).warm_up()
        started = time.perf_counter()
        out = serve(gw, mode)
        took = time.perf_counter() - started
    assert out.kind is OutcomeKind.ERROR and "deadline (0.6 s) ran out" in str(out.error)
    assert 0.55 <= took < 1.4  # not 3 × 1.5 s of a's retries, nor b's
    assert [a.deployment for a in out.attempts] == ["a"]
    assert out.attempts[0].error.startswith("timeout: cut by the request's deadline")
    assert gw.pipeline.breakers["a"].consecutive_failures == 0 and gw.pipeline.breakers["a"].state == "closed"


def test_live_stream_first_token_deadline_then_not_cut():
    from llmlab.testing import FakeProvider, FaultPlan

    plan = FaultPlan()
    plan.model("a-model").stream_timing(ttft_s=0.2, chunk_delay_s=0.1)  # first token in time, then ≈ 1 s more

    async def run(gw):
        response = gw.astream("tell me a long story")
        text = "".join([c async for c in response if isinstance(c, str)])
        return response.outcome, text

    with FakeProvider(plan) as fp:
        params = {"api_base": fp.base_url, "api_key": "sk-test"}
        gw = Gateway([Deployment("a", "openai/a-model", params, timeout_s=5.0, price_model="gpt-4o")], cache=False,
                     input_guards=(), request_timeout_s=0.5).warm_up()
        outcome, text = asyncio.run(run(gw))
    assert outcome.ok and text and outcome.latency_s > 0.5 and outcome.ttft_s < 0.5


# -- the simulator: the same pipeline in virtual time ------------------------------------------------

@pytest.fixture(scope="module")
def drills():
    """realtime-chat across its scheduled ×4 OpenAI slowdown, without and with a 3 s deadline."""
    from llmlab import sim

    def run(**overrides):
        return sim.simulate("realtime-chat", hours=0.22, seed=3, parallel=False, baseline=False,
                            overrides={"outages.incidents": False, **overrides})

    return run(), run(**{"gateway.request_timeout_s": 3.0})


def test_sim_the_deadline_bounds_every_request_in_an_outage_drill_at_a_price_in_availability(drills):
    free, bounded = drills
    for result in drills:
        assert result.summary["outage_turn_share"] > 0.1  # the drill is in the run
    r = bounded.requests
    answered, failed = r[r.outcome != "error"], r[r.outcome == "error"]
    # streamed: the deadline bounds the first token (what users see); a failure ends at the deadline
    assert answered.ttft_s.max() <= 3.0 and failed.latency_s.max() <= 3.0 + 1e-9
    assert failed.error.str.contains(r"deadline \(3 s\) ran out").all() and len(failed) > 0
    without = free.requests
    assert without[without.outcome != "error"].ttft_s.max() > 3.0  # what the deadline cut off
    assert bounded.summary["availability"] < free.summary["availability"]  # and what it costs
    for result in drills:
        ttft = result.requests[result.requests.outcome != "error"].ttft_s
        print(f"P95 TTFT {ttft.quantile(.95):.3f} P99 {ttft.quantile(.99):.3f} max {ttft.max():.3f} "
              f"availability {result.summary['availability']:.4f}")
