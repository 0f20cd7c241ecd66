import random

import pytest

from llmlab import (AllProvidersFailed, CacheOutcome, CircuitBreaker, ConfigError, Deployment, ErrorKind,
                    OutcomeKind, ProviderRejected, RetryPolicy)
from llmlab.effects import Call, CallError, CallResult
from llmlab.scripted import error


def test_backoff_is_exponential_full_jitter_capped_and_honours_retry_after():
    policy = RetryPolicy(max_retries=5, base_s=1.0, cap_s=4.0, max_retry_after_s=30)
    rng = random.Random(1)
    delays = [policy.delay(i, None, rng) for i in range(5)]
    assert all(0 <= d <= min(4.0, 2 ** i) for i, d in enumerate(delays))
    assert policy.delay(0, 12.0, rng) >= 12.0           # Retry-After is a floor
    assert policy.delay(0, 31.0, rng) is None           # too long: move to the next deployment
    same = [RetryPolicy(base_s=1).delay(i, None, random.Random(7)) for i in range(3)]
    assert same == [RetryPolicy(base_s=1).delay(i, None, random.Random(7)) for i in range(3)]


def test_fallback_across_three_deployments_with_real_waits_on_fake_clock(make_gateway, driver, clock):
    driver.script("gpt-4o", ErrorKind.SERVER, ErrorKind.SERVER, ErrorKind.SERVER)
    driver.script("claude", ErrorKind.TIMEOUT, ErrorKind.OVERLOADED, ErrorKind.OVERLOADED)
    gw = make_gateway(retry=RetryPolicy(max_retries=2, base_s=1.0, cap_s=8.0))
    out = gw.complete("hello")
    assert out.kind is OutcomeKind.MODEL and out.deployment == "gpt-4o-mini"
    assert [a.deployment for a in out.attempts] == ["gpt-4o"] * 3 + ["claude"] * 3 + ["gpt-4o-mini"]
    assert len(clock.sleeps) == 4 and sum(clock.sleeps) > 0   # backoff really waited (on the fake clock)
    assert out.latency_s == pytest.approx(sum(clock.sleeps))
    assert out.retries == 6


def test_rate_limit_retry_waits_retry_after(make_gateway, driver, clock):
    driver.script("gpt-4o", error(ErrorKind.RATE_LIMIT, retry_after_s=7.0), "fine answer after waiting")
    out = make_gateway().complete("hello")
    assert out.deployment == "gpt-4o" and clock.sleeps and clock.sleeps[0] >= 7.0
    assert out.attempts[1].waited_s >= 7.0


def test_long_retry_after_moves_to_next_deployment(make_gateway, driver, clock):
    driver.script("gpt-4o", error(ErrorKind.RATE_LIMIT, retry_after_s=600.0))
    out = make_gateway().complete("hello")
    assert out.deployment == "claude" and clock.sleeps == []


def test_a_bad_request_fails_fast_without_retry_or_fallback(make_gateway, driver):
    driver.script("gpt-4o", ErrorKind.BAD_REQUEST)
    out = make_gateway().complete("hello again")
    assert isinstance(out.error, ProviderRejected) and len(out.attempts) == 1


def test_refused_credentials_fall_back_without_retry_and_are_logged_once(make_gateway, driver, caplog):
    """A 401/403 (or a key missing before sending) is one deployment's: each provider has its own
    key.  It used to end the request as provider_rejected, so a fallback's missing key took the
    chain down in the outage the fallback was there for (b2b-saas's paid chain stopped at Claude
    and never reached the self-hosted model)."""
    gw = make_gateway(breaker={"failure_threshold": 2})
    driver.script("gpt-4o", ErrorKind.AUTH, ErrorKind.AUTH)
    with caplog.at_level("WARNING", logger="llmlab"):
        first = gw.complete("hello")
        second = gw.complete("hello there")
    assert first.ok and first.deployment == "claude"
    assert [(a.deployment, a.error.split(":")[0] if a.error else None) for a in first.attempts] == [
        ("gpt-4o", "authentication"), ("claude", None)]  # no retry of the refused key
    assert second.deployment == "claude" and gw.pipeline.breakers["gpt-4o"].state == "open"
    third = gw.complete("and again")  # its breaker open: skipped without a call
    assert third.deployment == "claude" and third.attempts[0].purpose == "skip"
    warnings = [r.getMessage() for r in caplog.records if "refused the gateway's credentials" in r.getMessage()]
    assert len(warnings) == 1 and "'gpt-4o'" in warnings[0]


def test_when_every_deployment_refuses_the_credentials_the_request_is_rejected(make_gateway, driver):
    for name in ("gpt-4o", "claude", "gpt-4o-mini"):
        driver.script(name, ErrorKind.AUTH)
    out = make_gateway().complete("hello")
    assert isinstance(out.error, ProviderRejected) and len(out.attempts) == 3  # no retry hint: not an outage


def test_models_not_found_or_keys_refused_everywhere_reject_the_request_without_a_retry_hint(make_gateway, driver):
    """Every deployment answering 404 (a retired model name everywhere), or some 404 and the
    rest refusing the key, is the gateway's setup, not an outage: it read "all deployments
    failed, retry in 30 s", and once the breakers opened it said so for good, where no retry
    helps until the names or keys are fixed.  One deployment merely down is still an outage."""
    gw = make_gateway(breaker={"failure_threshold": 1, "cooldown_s": 30.0})
    driver.script("gpt-4o", ErrorKind.NOT_FOUND)
    driver.script("claude", ErrorKind.AUTH)
    driver.script("gpt-4o-mini", ErrorKind.NOT_FOUND)
    first = gw.complete("hello")
    assert isinstance(first.error, ProviderRejected) and first.error.retry_after_s is None, first.error
    again = gw.complete("hello again")  # every breaker open: skipped without a call, still rejected
    assert [a.purpose for a in again.attempts] == ["skip"] * 3
    assert isinstance(again.error, ProviderRejected) and again.error.retry_after_s is None, again.error
    assert "no such model at gpt-4o, gpt-4o-mini (404)" in again.error.message
    assert "refused by claude" in again.error.message
    outage = make_gateway()
    driver.script("gpt-4o", ErrorKind.NOT_FOUND)
    for name in ("claude", "gpt-4o-mini"):
        driver.script(name, *[ErrorKind.SERVER] * 3)
    down = outage.complete("hello")
    assert isinstance(down.error, AllProvidersFailed) and down.error.retry_after_s > 0


def test_breakers_opened_by_refused_keys_still_reject_the_request_without_a_retry_hint(make_gateway, driver,
                                                                                        clock):
    """Once every deployment's breaker opened on its refused key, requests were skipped everywhere
    and told "temporarily unavailable, retry in 30 s": no retry helps until the keys are fixed.
    A deployment that answers again is off that list: its next outage is an outage."""
    gw = make_gateway(breaker={"failure_threshold": 1, "cooldown_s": 30.0})
    for name in ("gpt-4o", "claude", "gpt-4o-mini"):
        driver.script(name, ErrorKind.AUTH)
    gw.complete("hello")
    out = gw.complete("hello again")
    assert [a.purpose for a in out.attempts] == ["skip"] * 3
    assert isinstance(out.error, ProviderRejected) and out.error.retry_after_s is None
    assert "gpt-4o" in out.error.message
    clock.now += 31
    driver.script("gpt-4o", "ok: the key was fixed and this answer is long enough", ErrorKind.SERVER)
    for name in ("claude", "gpt-4o-mini"):
        driver.script(name, ErrorKind.AUTH)
    assert gw.complete("the primary's key is fixed").deployment == "gpt-4o"
    down = gw.complete("the primary is down now")  # its breaker opens on a 5xx; the others still refuse
    assert isinstance(down.error, AllProvidersFailed) and down.error.retry_after_s > 0


def test_a_deployment_down_and_the_others_refusing_their_keys_is_an_outage_not_a_rejection(make_gateway, driver,
                                                                                           clock):
    """The primary's breaker open for an outage and the fallbacks' keys refused: the request was
    provider_rejected ("could not be processed", no retry hint, no last-resort answer), though the
    primary answers once its outage ends."""
    gw = make_gateway(breaker={"failure_threshold": 1})
    assert gw.complete("what is the capital of France").ok
    clock.now += 10_000  # the exact cache's entry is stale: a last resort only
    driver.script("gpt-4o", ErrorKind.SERVER)
    assert gw.complete("open the primary's breaker").deployment == "claude"
    for name in ("claude", "gpt-4o-mini"):
        driver.script(name, ErrorKind.AUTH, ErrorKind.AUTH)
    served = gw.complete("what is the capital of France")
    assert served.attempts[0].purpose == "skip" and served.cache is CacheOutcome.LAST_RESORT_HIT
    failed = gw.complete("and something never asked")
    assert isinstance(failed.error, AllProvidersFailed) and failed.error.retry_after_s > 0


def test_context_window_exceeded_goes_to_a_larger_window(driver, make_gateway):
    deps = [Deployment("small", "gpt-4o-mini", context_window=8_000), Deployment("same", "gpt-4o", context_window=8_000),
            Deployment("big", "claude-sonnet-4-20250514", context_window=200_000)]
    driver.script("small", ErrorKind.CONTEXT_WINDOW)
    gw = make_gateway(deployments=deps, router=__import__("llmlab").FixedRouter("small"),
                      fallbacks={"small": ["same", "big"]})
    out = gw.complete("a very long document")
    assert out.deployment == "big"
    assert [a.purpose for a in out.attempts] == ["answer", "skip", "answer"]
    assert len(driver.calls) == 2


def test_circuit_breaker_opens_half_opens_and_closes():
    b = CircuitBreaker(failure_threshold=3, cooldown_s=10)
    for t in range(3):
        assert b.allow(t)
        b.record_failure(t)
    assert b.state == "open" and not b.allow(5)
    assert b.allow(12.0) and b.state == "half_open"   # one probe after the cooldown
    assert not b.allow(12.1)                           # only one probe at a time
    b.record_failure(12.2)
    assert b.state == "open" and not b.allow(15)
    assert b.allow(22.5)
    b.record_success(23)
    assert b.state == "closed" and b.allow(23)


def test_breaker_verdicts_count_only_in_the_generation_that_admitted_the_call():
    """Calls admitted while closed that come back after the breaker opened neither re-open a
    half-open breaker (cutting its probe short) nor close an open one the probe has not cleared."""
    b = CircuitBreaker(failure_threshold=2, cooldown_s=10)
    early = [b.admit(0.0) for _ in range(5)]          # five calls in flight while closed
    assert early == [0] * 5
    b.record_failure(0.5, early[0])
    b.record_failure(0.6, early[1])
    assert b.state == "open"
    b.record_success(0.7, early[2])                    # a late success from before the trip
    assert b.state == "open" and b.stale_verdicts == 1
    probe = b.admit(11.0)
    assert probe is not None and b.state == "half_open"
    assert b.admit(11.1) is None                       # one probe at a time
    b.record_failure(11.5, early[3])                   # a late failure from before the trip ...
    assert b.state == "half_open" and b.stale_verdicts == 2   # ... does not cut the probe short
    b.release_probe(early[4])                          # nor does a stale cancellation free the slot
    assert b.admit(11.6) is None
    b.record_success(12.0, probe)
    assert b.state == "closed" and b.consecutive_failures == 0
    b.record_failure(12.1, probe)                      # the probe's ticket is spent once the breaker closed
    assert b.consecutive_failures == 0 and b.stale_verdicts == 3


def test_circuit_breaker_failure_ratio_window():
    b = CircuitBreaker(failure_threshold=100, failure_ratio=0.5, window=10, min_calls=10)
    for i in range(10):
        (b.record_failure if i % 2 else b.record_success)(i)
    assert b.state == "open"
    with pytest.raises(ConfigError):
        CircuitBreaker(failure_ratio=1.5)


def test_breaker_skips_a_dead_deployment_in_the_gateway(make_gateway, driver, clock):
    driver.script("gpt-4o", *[ErrorKind.SERVER] * 3)
    gw = make_gateway(retry=RetryPolicy(max_retries=0), breaker={"failure_threshold": 3, "cooldown_s": 30})
    for _ in range(3):
        assert gw.complete(gw.request("q", cache=False)).deployment == "claude"
    calls_before = len(driver.calls)
    out = gw.complete(gw.request("q", cache=False))
    assert out.attempts[0].purpose == "skip" and out.attempts[0].error == "circuit_open"
    assert len(driver.calls) == calls_before + 1       # no call to the open deployment
    clock.advance(31)
    probe = gw.complete(gw.request("q", cache=False))
    assert probe.deployment == "gpt-4o"                 # half-open probe succeeded
    assert gw.pipeline.breakers["gpt-4o"].state == "closed"


def _call(stream: bool) -> Call:
    return Call(Deployment("a", "gpt-4o"), ({"role": "user", "content": "q"},), {}, stream=stream)


def test_breaker_opens_on_slow_answers_and_a_slow_probe_keeps_it_open():
    b = CircuitBreaker(failure_threshold=3, window=10, min_calls=4, cooldown_s=10, slow_call_s=2.0,
                       slow_call_ratio=0.5)
    streamed, whole = _call(True), _call(False)
    fast_start = CallResult("x", 10, 200, latency_s=6.0, ttft_s=0.5)  # a long answer that started at once
    assert not b.is_slow(streamed, fast_start)                        # streaming: time to first token
    assert b.is_slow(whole, fast_start)                               # otherwise: the whole call
    assert b.is_slow(whole, CallError(ErrorKind.TIMEOUT, "t", latency_s=3.0))  # a timeout is slow
    assert not CircuitBreaker().is_slow(whole, fast_start)            # off unless slow_call_s is set
    for t, slow in enumerate([False, True, False, True]):             # 2 of 4 slow: the ratio is reached
        assert b.state == "closed"
        b.record_success(t, b.admit(t), slow=slow)
    assert b.state == "open" and b.slow_opens == 1 and b.times_opened == 1 and b.consecutive_failures == 0
    assert b.admit(5) is None
    probe = b.admit(14)
    b.record_success(14, probe, slow=True)                            # answered, but still too slowly
    assert b.state == "open" and b.slow_opens == 2
    probe = b.admit(25)
    b.record_success(25, probe, slow=False)
    assert b.state == "closed"


def test_slow_failures_count_towards_the_slow_share_without_tripping_the_failure_rules():
    b = CircuitBreaker(failure_threshold=5, failure_ratio=0.9, window=10, min_calls=4, slow_call_s=1.0,
                       slow_call_ratio=0.75)
    for t, (failed, slow) in enumerate([(True, True), (False, False), (True, True), (False, True)]):
        ticket = b.admit(t)
        (b.record_failure(t, ticket, slow=slow) if failed else b.record_success(t, ticket, slow=slow))
    assert b.state == "open" and b.slow_opens == 1   # 3 of 4 slow; failures alone (2 of 4) would not trip
    with pytest.raises(ConfigError, match="slow_call_s"):
        CircuitBreaker(slow_call_s=0)
    with pytest.raises(ConfigError, match="slow_call_ratio"):
        CircuitBreaker(slow_call_ratio=0)


def test_a_slow_but_answering_primary_is_skipped_by_the_gateway(make_gateway, driver, clock):
    """No timeout fires and no call fails, yet users stop waiting for the slow deployment."""
    slow_answer = CallResult("ok: a slow but correct answer", 20, 10, latency_s=8.0, ttft_s=8.0)
    driver.script("gpt-4o", *[slow_answer] * 4)
    gw = make_gateway(retry=RetryPolicy(max_retries=0),
                      breaker={"slow_call_s": 3.0, "min_calls": 4, "window": 4, "cooldown_s": 60})
    assert [gw.complete(gw.request(f"q{i}", cache=False)).deployment for i in range(4)] == ["gpt-4o"] * 4
    out = gw.complete(gw.request("q5", cache=False))
    assert out.deployment == "claude" and out.attempts[0].error == "circuit_open"
    assert gw.pipeline.breakers["gpt-4o"].slow_opens == 1
    clock.advance(61)                                   # the probe is fast again: back to the primary
    assert gw.complete(gw.request("q6", cache=False)).deployment == "gpt-4o"
    assert gw.pipeline.breakers["gpt-4o"].state == "closed"


def test_last_resort_serves_a_stale_cached_answer_then_typed_error(make_gateway, driver, clock):
    gw = make_gateway(cache_ttl_s=10, retry=RetryPolicy(max_retries=0))
    assert gw.complete("what are your hours?").kind is OutcomeKind.MODEL
    clock.advance(100)
    for name in ("gpt-4o", "claude", "gpt-4o-mini"):
        driver.script(name, ErrorKind.SERVER, ErrorKind.SERVER)
    out = gw.complete("what are your hours?")
    assert out.kind is OutcomeKind.LAST_RESORT and out.cache is CacheOutcome.LAST_RESORT_HIT and out.ok
    failed = gw.complete("something never asked")
    assert isinstance(failed.error, AllProvidersFailed)
    assert failed.error.retry_after_s > 0 and "retry" in failed.error.user_message.lower()
    assert "gpt-4o" in str(failed.error)


def test_all_failed_retry_guidance_counts_only_the_requests_own_deployments(make_gateway, driver, clock):
    """An open breaker of a deployment the request could not use (another route's) set its
    ``retry_after_s``: told to come back in a minute when its own providers asked for 2 s."""
    from llmlab import FixedRouter

    deps = [Deployment("a", "gpt-4o"), Deployment("b", "gpt-4o-mini"), Deployment("other", "gpt-4o")]
    gw = make_gateway(deployments=deps, router=FixedRouter("a"), fallbacks={"a": ["b"]},
                      retry=RetryPolicy(max_retries=0), breaker={"failure_threshold": 1, "cooldown_s": 60.0})
    driver.script("other", ErrorKind.SERVER)
    assert not gw.complete("for the other route", model="other").ok  # its breaker opens for 60 s
    assert gw.pipeline.breaker("other").state == CircuitBreaker.OPEN
    driver.script("a", error(ErrorKind.RATE_LIMIT, retry_after_s=2.0))
    driver.script("b", error(ErrorKind.RATE_LIMIT, retry_after_s=1.5))
    failed = gw.complete("hello", cache=False)
    assert isinstance(failed.error, AllProvidersFailed)
    assert failed.error.retry_after_s == pytest.approx(2.0)


def test_a_raising_driver_is_an_attempt_outcome_not_a_crash(make_gateway, driver):
    driver.script("gpt-4o", lambda call: 1 / 0)  # a broken provider adapter
    out = make_gateway().complete("hello")
    assert out.ok and out.deployment == "gpt-4o"       # retried after the failure
    assert not out.attempts[0].ok and "ZeroDivisionError" in out.attempts[0].error


def test_a_raising_embedder_or_guard_becomes_a_typed_outcome(make_gateway, driver):
    class Boom:
        name = "boom"

        def check_input(self, messages):
            raise RuntimeError("guard bug")

    gw = make_gateway(input_guards=[Boom()])
    out = gw.complete("hello")
    assert not out.ok and out.error.code == "gateway_error" and "guard bug" in str(out.error)
    assert len(gw.ledger) == 1


def test_the_ledger_frame_has_each_answers_finish_reason(make_gateway, driver):
    driver.script("gpt-4o", CallResult("cut sho", 10, 5, 0.1, finish_reason="length"), ErrorKind.AUTH)
    gw = make_gateway()
    gw.complete("one")
    gw.complete("two")
    frame = gw.ledger.to_dataframe()
    assert frame["finish_reason"].tolist()[0] == "length" and frame["finish_reason"].isna().tolist()[1]


def _chain_on(breaker: CircuitBreaker, now: list[float], retry: "RetryPolicy"):
    from llmlab.fallback import run_chain

    dep = Deployment("gpt-4o", "gpt-4o")
    return run_chain([dep], lambda d: Call(d, ({"role": "user", "content": "hi"},), {}), lambda d: retry,
                     lambda name: breaker, lambda d, r: 0.0, lambda: now[0], random.Random(0))


def test_a_half_open_probe_answered_429_retries_only_if_the_breaker_admits_it_again():
    """A 429 gives the half-open probe slot back (throttling is no verdict); the chain then waited
    out Retry-After and retried unadmitted, while another request had taken the slot: two probes
    ran at once, and a cancelled retry freed the other's slot.  Now the retry is admitted again,
    or skipped as circuit_open."""
    from llmlab import RetryPolicy
    from llmlab.effects import Sleep

    breaker, now = CircuitBreaker(failure_threshold=1, cooldown_s=10.0), [0.0]
    breaker.record_failure(0.0)
    now[0] = 11.0
    chain = _chain_on(breaker, now, RetryPolicy(max_retries=2))
    assert isinstance(next(chain), Call) and breaker.state == "half_open"
    assert isinstance(chain.send(CallError(ErrorKind.RATE_LIMIT, "slow down", 0.1, retry_after_s=1.0)), Sleep)
    assert breaker.admit(now[0]) is not None  # another request's probe takes the free slot meanwhile
    with pytest.raises(StopIteration) as done:
        chain.send(None)
    out = done.value.value
    assert [(a.purpose, a.error.split(":")[0]) for a in out.attempts] == [("answer", "rate_limit"), ("skip", "circuit_open")]
    assert out.result is None and out.error.kind is ErrorKind.RATE_LIMIT

    alone = CircuitBreaker(failure_threshold=1, cooldown_s=10.0)  # nobody else came: the retry probes
    alone.record_failure(0.0)
    chain = _chain_on(alone, now, RetryPolicy(max_retries=2))
    next(chain)
    chain.send(CallError(ErrorKind.RATE_LIMIT, "slow down", 0.1, retry_after_s=1.0))
    assert isinstance(chain.send(None), Call) and alone.admit(now[0]) is None  # it holds the slot again


def test_a_retry_whose_breaker_opened_during_its_backoff_is_skipped():
    """Other requests' failures opened the breaker while this one slept before its retry: the retry
    used to go out anyway, into a deployment the breaker had just taken out."""
    from llmlab import RetryPolicy
    from llmlab.effects import Sleep

    breaker, now = CircuitBreaker(failure_threshold=3, cooldown_s=30.0), [0.0]
    chain = _chain_on(breaker, now, RetryPolicy(max_retries=2, base_s=1.0, cap_s=1.0))
    next(chain)
    assert isinstance(chain.send(CallError(ErrorKind.SERVER, "boom", 0.1)), Sleep)
    breaker.record_failure(0.5)
    breaker.record_failure(0.6)  # three in a row: open
    assert breaker.state == "open"
    with pytest.raises(StopIteration) as done:
        chain.send(None)
    assert [a.purpose for a in done.value.value.attempts] == ["answer", "skip"]


def test_a_slow_call_rule_that_could_never_count_is_refused_naming_min_calls(make_gateway, driver):
    """The slow-call share counts once the window holds ``min_calls`` calls: with ``window`` below
    ``min_calls`` (``{"slow_call_s": 2, "window": 5}``, min_calls 10 by default) it never did, and a
    provider answering every call in 8 s was never skipped — a setting silently off."""
    with pytest.raises(ConfigError) as info:
        CircuitBreaker(slow_call_s=2.0, window=5)
    assert info.value.field == "breaker.min_calls" and "breaker.window (5)" in str(info.value)
    with pytest.raises(ConfigError, match="breaker.min_calls"):
        make_gateway(breaker={"slow_call_s": 2.0, "window": 5})
    CircuitBreaker(window=5)                                   # without slow_call_s: min_calls > window turns
    CircuitBreaker(slow_call_s=2.0, window=5, min_calls=5)     # the share rule off (a documented switch)
    from llmlab.sim import ScenarioError, load_scenario

    with pytest.raises(ScenarioError) as info:
        load_scenario("realtime-chat", {"gateway.breaker.window": 5})  # its slow_call_s = 2.0
    assert info.value.field == "gateway.breaker.min_calls"
    load_scenario("b2b-saas", {"gateway.breaker.window": 5})   # no slow_call_s there
