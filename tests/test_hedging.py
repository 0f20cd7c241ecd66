"""Hedged calls through the pipeline: a second call raced against a first that is slow to answer.

These run on the scripted driver and its fake clock, where a race is decided on the replies'
own times; the live driver's and the simulator's races have tests of their own."""
from __future__ import annotations

import pytest

from llmlab import (BudgetPolicy, CircuitBreaker, ConfigError, Deployment, ErrorKind, FixedRouter, Gateway, Hedge,
                    OutcomeKind)
from llmlab.effects import CallError, CallResult
from llmlab.scripted import FakeClock, ScriptedDriver
from llmlab.tokens import max_message_tokens


def answer(text: str, latency_s: float, ttft_s: float | None = None, prompt: int = 40, completion: int = 20) -> CallResult:
    return CallResult(text, prompt, completion, latency_s, ttft_s if ttft_s is not None else latency_s)


def fail(kind: ErrorKind, latency_s: float) -> CallError:
    return CallError(kind, "scripted failure", latency_s)


def test_no_hedge_when_the_first_call_answers_in_time(make_gateway, driver, clock):
    driver.script("gpt-4o", answer("quick answer from the first", 0.4))
    gw = make_gateway(hedge=Hedge(after_s=1.0))
    out = gw.complete("hello")
    assert out.deployment == "gpt-4o" and [a.purpose for a in out.attempts] == ["answer"]
    assert [c.deployment.name for c in driver.calls] == ["gpt-4o"]  # the hedge was never sent
    assert out.latency_s == pytest.approx(0.4)


def test_a_hedge_that_answers_first_is_served_and_the_slow_call_is_cancelled_and_billed_its_prompt(
        make_gateway, driver, clock):
    driver.script("gpt-4o", answer("slow answer", 3.0, prompt=50))
    driver.script("claude", answer("hedged answer", 0.5))
    gw = make_gateway(hedge=Hedge(after_s=1.0))
    out = gw.complete("hello")
    assert out.kind is OutcomeKind.MODEL and out.deployment == "claude" and out.text == "hedged answer"
    first, hedge = out.attempts
    assert (first.deployment, first.purpose, first.ok) == ("gpt-4o", "answer", False)
    assert first.error.startswith("cancelled: claude started answering first")
    assert first.prompt_tokens == 50 and first.completion_tokens == 0 and first.cost_usd > 0
    assert (hedge.deployment, hedge.purpose, hedge.ok) == ("claude", "hedge", True)
    assert out.latency_s == pytest.approx(1.5)  # sent at 1.0 s, answered 0.5 s later: not the first's 3 s
    assert out.cost_usd == pytest.approx(first.cost_usd + hedge.cost_usd)
    assert out.retries == 0  # a hedge is not a retry
    # the cancelled call says nothing of its provider: no failure counted against it
    assert gw.pipeline.breaker("gpt-4o").consecutive_failures == 0


def test_the_first_call_wins_when_it_answers_before_the_hedge(make_gateway, driver, clock):
    driver.script("gpt-4o", answer("first answer", 1.6))
    driver.script("claude", answer("hedged answer", 2.0, prompt=45))
    out = make_gateway(hedge=Hedge(after_s=1.0)).complete("hello")
    assert out.deployment == "gpt-4o" and out.latency_s == pytest.approx(1.6)
    first, hedge = out.attempts
    assert first.ok and hedge.purpose == "hedge" and not hedge.ok and hedge.error.startswith("cancelled: gpt-4o")
    assert hedge.prompt_tokens == 45 and hedge.latency_s == pytest.approx(0.6)


def test_a_streamed_race_is_decided_by_the_first_token(make_gateway, driver, clock):
    """The hedge starts answering at 1.0 + 0.3 s, before the first's 2 s first token, and wins
    although its whole answer ends later."""
    driver.script("gpt-4o", answer("slow to start, quick to finish", 2.5, ttft_s=2.0))
    driver.script("claude", answer("quick to start, slow to finish", 4.0, ttft_s=0.3))
    gw = make_gateway(hedge=Hedge(after_s=1.0))
    response = gw.stream("hello")
    text = "".join(response)
    out = response.outcome
    assert text == "quick to start, slow to finish" and out.deployment == "claude"
    assert out.ttft_s == pytest.approx(1.3) and out.latency_s == pytest.approx(5.0)


def test_a_failure_of_the_first_call_after_the_hedge_was_sent_leaves_the_hedge_to_answer(make_gateway, driver):
    driver.script("gpt-4o", fail(ErrorKind.SERVER, 1.2))
    driver.script("claude", answer("hedged answer", 0.9))
    out = make_gateway(hedge=Hedge(after_s=1.0)).complete("hello")
    assert out.deployment == "claude" and out.latency_s == pytest.approx(1.9)
    first, hedge = out.attempts
    assert first.error.startswith("server_error") and hedge.ok  # a real failure, recorded as one
    assert out.retries == 0


def test_when_both_calls_fail_the_chain_goes_on_from_the_first(make_gateway, driver, clock):
    driver.script("gpt-4o", fail(ErrorKind.SERVER, 1.5), "retried answer that is long enough")
    driver.script("claude", fail(ErrorKind.OVERLOADED, 0.2))
    out = make_gateway(hedge=Hedge(after_s=1.0)).complete("hello")
    assert out.deployment == "gpt-4o"
    assert [(a.deployment, a.purpose, a.ok) for a in out.attempts] == [
        ("gpt-4o", "answer", False), ("claude", "hedge", False), ("gpt-4o", "answer", True)]
    assert len(clock.sleeps) == 1  # the retry's backoff; only the chain's first call is hedged


def test_no_hedge_to_a_deployment_whose_breaker_is_not_closed(make_gateway, driver, clock):
    driver.script("gpt-4o", answer("slow answer", 3.0))
    gw = make_gateway(hedge=Hedge(after_s=1.0))
    gw.pipeline.breaker("claude")._open(clock())
    out = gw.complete("hello")
    # the next closed one is gpt-4o-mini: the hedge skips the open breaker's deployment
    assert [c.deployment.name for c in driver.calls] == ["gpt-4o", "gpt-4o-mini"]
    assert out.deployment == "gpt-4o-mini"
    gw.pipeline.breaker("gpt-4o-mini")._open(clock())
    driver.script("gpt-4o", answer("slow answer again", 3.0))
    out = gw.complete("hello again")
    assert out.deployment == "gpt-4o" and len(out.attempts) == 1
    assert [c.deployment.name for c in driver.calls[2:]] == ["gpt-4o"]


def test_a_call_that_keeps_losing_by_being_slow_opens_its_breaker_for_slowness(driver, clock):
    """A cancelled loser says nothing of its provider — unless it had waited past the breaker's
    slow-call threshold: else a provider too slow to ever win would keep every request hedged."""
    deps = [Deployment("slow", "gpt-4o"), Deployment("quick", "gpt-4o-mini")]
    gw = Gateway(deps, router=FixedRouter("slow"), fallbacks={"slow": ["quick"]}, clock=clock, driver=driver, seed=0,
                 cache=False, hedge=Hedge(after_s=1.0),
                 breaker={"slow_call_s": 1.0, "slow_call_ratio": 0.5, "min_calls": 4, "window": 10})
    for _ in range(4):
        driver.script("slow", answer("slow answer", 5.0))
        driver.script("quick", answer("quick answer", 0.3))
        assert gw.complete("hello").deployment == "quick"  # the slow call cancelled at 1.3 s, past 1 s
    assert gw.pipeline.breaker("slow").state == CircuitBreaker.OPEN
    assert gw.pipeline.breaker("slow").slow_opens == 1
    # a loser cancelled before the threshold (at 0.5 s) is no verdict at all
    gw2 = Gateway(deps, router=FixedRouter("slow"), fallbacks={"slow": ["quick"]}, clock=clock, driver=driver, seed=0,
                  cache=False, hedge=Hedge(after_s=0.2), breaker={"slow_call_s": 1.0, "min_calls": 1, "window": 10})
    driver.script("slow", answer("slow answer", 5.0))
    driver.script("quick", answer("quick answer", 0.3))
    assert gw2.complete("hello").deployment == "quick"
    assert gw2.pipeline.breaker("slow")._failed == [] and gw2.pipeline.breaker("slow").state == CircuitBreaker.CLOSED


def test_the_budget_must_hold_the_losers_bill_too_or_no_hedge_is_sent(driver, clock):
    deps = [Deployment("a", "gpt-4o", max_output_tokens=100), Deployment("b", "gpt-4o", max_output_tokens=100)]

    def gateway(cap: float) -> Gateway:
        return Gateway(deps, router=FixedRouter("a"), fallbacks={"a": ["b"]}, clock=clock, driver=driver, seed=0,
                       cache=False, hedge=Hedge(after_s=0.5), budget=BudgetPolicy(plan_caps={"free": cap}))

    prompt = "hello " * 200
    roomy = gateway(1.0)
    driver.script("a", answer("slow", 2.0, prompt=400))
    driver.script("b", answer("hedged", 0.2, prompt=400))
    assert roomy.complete(prompt, tenant="t", plan="free").deployment == "b"
    # a cap that holds one call's worst case (what a request without a hedge reserves) but not
    # the loser's prompt on top of it
    bound = max_message_tokens(({"role": "user", "content": prompt},))
    one_call = roomy.pipeline.worst_case_cost(roomy.pipeline.chain_for("a"), bound, None)
    tight = gateway(one_call * 1.05)
    driver.script("a", answer("slow", 2.0, prompt=400))
    out = tight.complete(prompt, tenant="t2", plan="free")
    assert out.deployment == "a" and len(out.attempts) == 1
    assert "over budget for a hedge → none sent to b" in out.route_reason


def test_the_budget_holds_the_losers_worst_case_not_only_its_prompt(driver, clock):
    """Two calls that start answering together are both billed in full (the simulator's providers,
    a live race whose loser finished as the winner did): a hold of the loser's prompt alone let a
    capped tenant's spend overshoot its cap."""
    from llmlab.effects import Call
    from llmlab.fallback import counted_prompt

    deps = [Deployment("a", "gpt-4o", max_output_tokens=100), Deployment("b", "gpt-4o", max_output_tokens=100)]

    def gateway(cap: float) -> Gateway:
        return Gateway(deps, router=FixedRouter("a"), fallbacks={"a": ["b"]}, clock=clock, driver=driver, seed=0,
                       cache=False, hedge=Hedge(after_s=0.5), budget=BudgetPolicy(plan_caps={"free": cap}))

    prompt = "hello " * 200
    probe = gateway(1.0).pipeline
    bound = max_message_tokens(({"role": "user", "content": prompt},))
    one_call = probe.worst_case_cost(probe.chain_for("a"), bound, None)
    messages = ({"role": "user", "content": prompt},)
    loser_prompt = probe.price_result(deps[1], CallResult("", counted_prompt(Call(deps[1], messages, {})), 0, 0.0))
    cap = one_call + 2 * loser_prompt
    assert one_call + loser_prompt < cap < 2 * one_call  # room for the loser's prompt, not for its whole answer
    driver.script("a", answer("slow", 2.0, prompt=400))
    driver.script("b", answer("hedged", 0.2, prompt=400))
    out = gateway(cap).complete(prompt, tenant="t", plan="free")
    assert out.deployment == "a" and [c.deployment.name for c in driver.calls] == ["a"]
    assert "over budget for a hedge → none sent to b" in out.route_reason
    # with room for both calls' worst case, the hedge goes out and wins
    driver.script("a", answer("slow", 2.0, prompt=400))
    driver.script("b", answer("hedged", 0.2, prompt=400))
    assert gateway(2 * one_call * 1.01).complete(prompt, tenant="t2", plan="free").deployment == "b"


def test_hedging_is_checked_when_the_gateway_is_built():
    with pytest.raises(ConfigError, match=r"^hedge\.after_s"):
        Hedge(after_s=0)
    with pytest.raises(ConfigError, match=r"^hedge\.after_s"):
        Hedge(after_s=float("nan"))
    with pytest.raises(ConfigError, match=r"^hedge=<float> is invalid: allowed a llmlab\.Hedge or None"):
        Gateway(hedge=0.5, driver=ScriptedDriver())

    class PlainDriver(ScriptedDriver):
        races = False

    with pytest.raises(ConfigError, match=r"^hedge=.*PlainDriver.* a driver that races calls"):
        Gateway(hedge=Hedge(1.0), driver=PlainDriver(clock=FakeClock()))
    assert "hedge=Hedge(after_s=1.0, unstreamed_after_s=None)" in repr(Gateway(hedge=Hedge(1.0), driver=ScriptedDriver()))


def test_an_unstreamed_call_waits_for_its_own_threshold_or_is_never_hedged(make_gateway, driver, clock):
    """A call that is not streamed starts answering only with its whole answer: a first-token
    threshold hedged nearly every one of them."""
    import math

    driver.script("gpt-4o", answer("whole answer after 1.5 s", 1.5))
    out = make_gateway(hedge=Hedge(after_s=0.5, unstreamed_after_s=2.0)).complete("hello")
    assert out.deployment == "gpt-4o" and [c.deployment.name for c in driver.calls] == ["gpt-4o"]
    driver.script("gpt-4o", answer("whole answer after 3 s", 3.0))
    driver.script("claude", answer("hedged", 0.2))
    out = make_gateway(hedge=Hedge(after_s=0.5, unstreamed_after_s=2.0)).complete("hello again")
    assert out.deployment == "claude" and out.latency_s == pytest.approx(2.2)
    calls = len(driver.calls)
    never = make_gateway(hedge=Hedge(after_s=0.5, unstreamed_after_s=math.inf))
    assert never.complete("and again").deployment == "gpt-4o" and len(driver.calls) == calls + 1
    with pytest.raises(ConfigError, match=r"^hedge\.unstreamed_after_s"):
        Hedge(after_s=0.5, unstreamed_after_s=-1.0)


def test_no_hedge_when_its_deployments_breaker_opened_while_the_hedge_was_due(make_gateway, driver, clock):
    """The target is chosen when the first call goes out; its breaker may open (other requests'
    failures) before the hedge is due: the hedge then goes nowhere — it used to go out anyway,
    to a deployment its breaker was keeping traffic from."""
    gw = make_gateway(hedge=Hedge(after_s=1.0))

    def slow_while_claude_trips(call):
        breaker = gw.pipeline.breaker("claude")
        for _ in range(breaker.failure_threshold):
            breaker.record_failure(clock())
        return answer("slow answer", 3.0)

    driver.script("gpt-4o", slow_while_claude_trips)
    out = gw.complete("hello")
    assert [c.deployment.name for c in driver.calls] == ["gpt-4o"]
    assert out.deployment == "gpt-4o" and [a.purpose for a in out.attempts] == ["answer"]
    assert out.latency_s == pytest.approx(3.0)


def test_a_budget_backend_that_fails_at_the_hedge_check_strands_no_probe_and_bills_nothing(driver, clock):
    """The hold's top-up for the hedge raised (a budget store unreachable): the request ends, but the
    half-open probe admitted for its first call goes back, and the loser's estimated bill — which
    stood in the check as an attempt — is no attempt of the request's (nothing was sent)."""
    from llmlab.budgets import MemoryBudgets

    class FailsOnTheTopUp(MemoryBudgets):
        reserved = 0

        def try_reserve(self, *args):
            self.reserved += 1
            if self.reserved == 2:  # the first hold, then the hedge's top-up
                raise ConnectionError("budget store unreachable")
            return super().try_reserve(*args)

    deps = [Deployment("a", "gpt-4o", max_output_tokens=100), Deployment("b", "gpt-4o", max_output_tokens=100)]
    gw = Gateway(deps, router=FixedRouter("a"), fallbacks={"a": ["b"]}, clock=clock, driver=driver, seed=0,
                 cache=False, hedge=Hedge(after_s=0.5), budget=BudgetPolicy(plan_caps={"free": 1.0}),
                 budget_backend=FailsOnTheTopUp())
    breaker = gw.pipeline.breaker("a")
    breaker._open(clock())
    clock.advance(breaker.cooldown_s + 1)  # the next call to a is its half-open probe
    out = gw.complete("hello " * 200, tenant="t", plan="free")
    assert out.kind is OutcomeKind.ERROR and driver.calls == []
    assert out.attempts == () and out.cost_usd == 0.0
    driver.script("a", answer("a recovered", 0.2))
    again = gw.complete("hello again", tenant="t", plan="free")
    assert again.deployment == "a" and breaker.state == CircuitBreaker.CLOSED  # probed, not skipped


@pytest.mark.parametrize("api", ["sync", "async"])
def test_a_caller_who_leaves_a_hedges_stream_is_billed_both_calls_on_the_right_deployments(make_gateway, driver,
                                                                                           clock, api):
    """The hedge won and streams; the caller leaves after its first chunk: the streamed part is the
    hedge's (its deployment, its price, no retry), and the cancelled first call is billed too."""
    import asyncio

    driver.script("gpt-4o", answer("slow to start, quick to finish", 2.5, ttft_s=2.0, prompt=50))
    driver.script("claude", answer("quick to start and then a rather long answer", 4.0, ttft_s=0.3))
    gw = make_gateway(hedge=Hedge(after_s=1.0))
    if api == "sync":
        response = gw.stream("hello")
        for chunk in response:
            if isinstance(chunk, str):
                break
        response.close()
    else:
        async def leave():
            response = gw.astream("hello")
            chunks = response.__aiter__()
            while not isinstance(await chunks.__anext__(), str):
                pass
            await chunks.aclose()
        asyncio.run(leave())
    (out,) = gw.ledger.records
    first, hedge = out.attempts
    assert (first.deployment, first.purpose) == ("gpt-4o", "answer") and first.error.startswith("cancelled: claude")
    assert first.prompt_tokens == 50 and first.cost_usd > 0
    assert (hedge.deployment, hedge.purpose) == ("claude", "hedge") and hedge.completion_tokens > 0
    assert out.retries == 0 and out.cost_usd == pytest.approx(first.cost_usd + hedge.cost_usd)


def test_a_first_call_that_lost_to_a_hedge_which_then_broke_is_called_again_without_a_backoff():
    """The hedge won on its first token, then its stream broke: the chain goes on by calling the
    first deployment again.  That call never failed (it was answering, only slower), so the retry
    goes out at once; it used to wait a backoff first, as after a provider's error."""
    import random

    from llmlab import RetryPolicy
    from llmlab.effects import Call, Race, RaceResult, Sleep
    from llmlab.fallback import run_chain
    from llmlab.hedging import lost, prompt_only

    a, b = Deployment("a", "gpt-4o"), Deployment("b", "gpt-4o")
    breakers = {"a": CircuitBreaker(), "b": CircuitBreaker()}
    clock = FakeClock()
    chain = run_chain([a, b], lambda d: Call(d, ({"role": "user", "content": "hi"},), {"max_tokens": 50}, stream=True),
                      lambda d: RetryPolicy(max_retries=1, base_s=2.0, cap_s=2.0), breakers.__getitem__,
                      lambda d, r: 0.0, clock, random.Random(0), hedge=Hedge(after_s=0.5))
    race = next(chain)
    assert isinstance(race, Race) and (race.first.deployment, race.second.deployment) == (a, b)
    broke = CallError(ErrorKind.CONNECTION, "stream cut after the first token", 0.8, billed=(40, 3, 0, 0))
    after = chain.send(RaceResult(lost(b, prompt_only(40, 0.9)), broke))
    assert not isinstance(after, Sleep), after
    assert isinstance(after, Call) and after.deployment is a
    assert breakers["a"].consecutive_failures == 0  # and the lost race said nothing of a's provider


def test_a_half_open_probe_that_lost_to_a_broken_hedge_keeps_its_slot_for_its_retry():
    """The first call was a half-open breaker's one probe.  Cancelled by the race, it gave the
    probe's slot back (a lost race says nothing of the provider); when the hedge then broke, the
    first deployment was called again on the same ticket without taking the slot again, so
    another request's probe went out beside it: two probes at once on a recovering provider."""
    import random

    from llmlab import RetryPolicy
    from llmlab.effects import Call, Race, RaceResult, Sleep
    from llmlab.fallback import run_chain
    from llmlab.hedging import lost, prompt_only

    a, b = Deployment("a", "gpt-4o"), Deployment("b", "gpt-4o")
    breakers = {"a": CircuitBreaker(failure_threshold=1, cooldown_s=10.0), "b": CircuitBreaker()}
    clock = FakeClock()
    breakers["a"].record_failure(clock())
    clock.advance(11.0)  # the cooldown is over: the next call is the probe
    chain = run_chain([a, b], lambda d: Call(d, ({"role": "user", "content": "hi"},), {"max_tokens": 50}, stream=True),
                      lambda d: RetryPolicy(max_retries=1, base_s=2.0, cap_s=2.0), breakers.__getitem__,
                      lambda d, r: 0.0, clock, random.Random(0), hedge=Hedge(after_s=0.5))
    race = next(chain)
    assert isinstance(race, Race) and breakers["a"].state == CircuitBreaker.HALF_OPEN
    assert breakers["a"].admit(clock()) is None  # the probe is out: no second one
    broke = CallError(ErrorKind.CONNECTION, "stream cut after the first token", 0.8, billed=(40, 3, 0, 0))
    after = chain.send(RaceResult(lost(b, prompt_only(40, 0.9)), broke))
    while isinstance(after, Sleep):
        after = chain.send(None)
    assert isinstance(after, Call) and after.deployment is a  # the retry: a's probe again
    assert breakers["a"].admit(clock()) is None, "a second probe was admitted beside the retry"
    with pytest.raises(StopIteration) as done:
        chain.send(CallResult("ok", 40, 3, 0.5))
    assert done.value.value.result.text == "ok" and breakers["a"].state == CircuitBreaker.CLOSED


def test_a_hedge_with_no_fallback_to_go_to_is_named_in_a_warning(monkeypatch, caplog):
    """A hedge goes to the next deployment of the request's chain: with no fallbacks it is never
    sent, and the gateway says so rather than serve as if it hedged."""
    import llmlab.gateway

    monkeypatch.setattr(llmlab.gateway, "_warned_unhedged", False)
    deps = [Deployment("a", "gpt-4o"), Deployment("b", "gpt-4o-mini")]
    with caplog.at_level("WARNING", "llmlab"):
        Gateway(deps, router=FixedRouter("a"), fallbacks={"a": ["b"]}, hedge=Hedge(after_s=0.5),
                driver=ScriptedDriver())
        assert not [r for r in caplog.records if "hedge" in r.getMessage()]
        Gateway(deps, router=FixedRouter("a"), fallbacks={}, hedge=Hedge(after_s=0.5), driver=ScriptedDriver())
    assert [r for r in caplog.records if "hedge has nothing to hedge to" in r.getMessage()]
