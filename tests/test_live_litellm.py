"""The live driver through litellm's real ``completion``/``acompletion`` with ``mock_response``."""
import asyncio
import logging

import httpx
import pytest

from llmlab import (BudgetExceeded, BudgetPolicy, CacheOutcome, Deployment, FixedRouter, Gateway, OutcomeKind,
                    PlanRouter, RetryPolicy)
from llmlab.live import LiteLLMDriver, import_litellm
from llmlab.scripted import FakeClock


def usage_reply(text: str, prompt: int, completion: int) -> dict:
    return {"choices": [{"message": {"role": "assistant", "content": text}, "finish_reason": "stop", "index": 0}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}}


def rate_limit_with_retry_after(seconds: float):
    litellm = import_litellm()
    response = httpx.Response(429, headers={"retry-after": str(seconds)},
                              request=httpx.Request("POST", "https://example.invalid/v1/chat/completions"))
    return litellm.RateLimitError(message="slow down", llm_provider="openai", model="gpt-4o", response=response)


def dep(name, model, mock, **kw):
    return Deployment(name, model, {"mock_response": mock, **kw.pop("params", {})}, **kw)


def gateway(deployments, clock, **kw):
    kw.setdefault("router", FixedRouter(deployments[0].name))
    kw.setdefault("fallbacks", {deployments[0].name: [d.name for d in deployments[1:]]} if len(deployments) > 1 else {})
    return Gateway(deployments, clock=clock, seed=3, driver=LiteLLMDriver(sleep=clock.sleep, asleep=clock.asleep), **kw)


def test_fallback_across_three_deployments_through_litellm():
    clock = FakeClock()
    gw = gateway([dep("gpt-4o", "gpt-4o", "litellm.InternalServerError"),
                  dep("claude", "anthropic/claude-sonnet-4-20250514", "litellm.RateLimitError",
                      price_model="claude-sonnet-4-20250514"),
                  dep("mini", "gpt-4o-mini", "mini to the rescue")], clock, retry=RetryPolicy(max_retries=1))
    out = gw.complete("hello")
    assert out.kind is OutcomeKind.MODEL and out.text == "mini to the rescue" and out.deployment == "mini"
    assert [a.deployment for a in out.attempts] == ["gpt-4o", "gpt-4o", "claude", "claude", "mini"]
    assert out.attempts[0].error.startswith("server_error") and out.attempts[2].error.startswith("rate_limit")
    assert len(clock.sleeps) == 2 and out.cost_usd > 0 and out.prompt_tokens > 0


def test_retries_honour_retry_after_header():
    clock = FakeClock()
    gw = gateway([dep("gpt-4o", "gpt-4o", rate_limit_with_retry_after(3)), dep("mini", "gpt-4o-mini", "ok")], clock,
                 retry=RetryPolicy(max_retries=2, base_s=0.01))
    out = gw.complete("hello")
    assert out.deployment == "mini"
    assert out.attempts[0].retry_after_s == 3.0
    assert clock.sleeps and all(s >= 3.0 for s in clock.sleeps) and len(clock.sleeps) == 2


def test_context_window_error_moves_to_a_bigger_window():
    clock = FakeClock()
    gw = gateway([dep("mini", "gpt-4o-mini", "litellm.ContextWindowExceededError", context_window=8000),
                  dep("big", "gpt-4o", "big window answer", context_window=128000)], clock)
    out = gw.complete("long document")
    assert out.deployment == "big" and len(out.attempts) == 2 and clock.sleeps == []


def test_circuit_breaker_open_and_half_open_with_litellm():
    clock = FakeClock()
    gw = gateway([dep("gpt-4o", "gpt-4o", "litellm.InternalServerError"), dep("mini", "gpt-4o-mini", "fallback")],
                 clock, retry=RetryPolicy(max_retries=0), breaker={"failure_threshold": 2, "cooldown_s": 30})
    for _ in range(2):
        assert gw.complete(gw.request("q", cache=False)).deployment == "mini"
    skipped = gw.complete(gw.request("q", cache=False))
    assert skipped.attempts[0].error == "circuit_open" and skipped.deployment == "mini"
    clock.advance(31)
    probe = gw.complete(gw.request("q", cache=False))
    assert probe.attempts[0].purpose == "answer" and not probe.attempts[0].ok  # the half-open probe was tried
    assert gw.pipeline.breakers["gpt-4o"].state == "open"


def test_budget_reject_and_downgrade_with_priced_usage():
    clock = FakeClock()
    big = usage_reply("expensive answer", 1000, 1000)       # gpt-4o: $0.0125
    deps = [dep("gpt-4o", "gpt-4o", big), dep("gpt-4o-mini", "gpt-4o-mini", usage_reply("cheap", 1000, 1000))]
    reject = gateway(deps, clock, router=PlanRouter({"paid": "gpt-4o", "free": "gpt-4o-mini"}),
                     fallbacks={"gpt-4o": ["gpt-4o"]}, budget=BudgetPolicy(caps={"t": 0.03}))
    results = [reject.complete(reject.request(f"q{i}", tenant="t", plan="paid", params={"max_tokens": 1000}))
               for i in range(4)]
    assert [r.ok for r in results] == [True, True, False, False]
    assert isinstance(results[2].error, BudgetExceeded) and results[2].error.spend_usd == pytest.approx(0.025)
    down = gateway(deps, clock, router=PlanRouter({"paid": "gpt-4o", "free": "gpt-4o-mini"}),
                   fallbacks={"gpt-4o": ["gpt-4o"]},
                   budget=BudgetPolicy(caps={"t": 0.03}, on_exceed="downgrade", downgrade_to="gpt-4o-mini"))
    served = [down.complete(down.request(f"q{i}", tenant="t", plan="paid", params={"max_tokens": 1000}))
              for i in range(4)]
    assert [s.deployment for s in served] == ["gpt-4o", "gpt-4o", "gpt-4o-mini", "gpt-4o-mini"]


def test_200_concurrent_acomplete_never_exceed_the_cap():
    clock = FakeClock()
    reply = usage_reply("answer", 10, 100)                    # gpt-4o: $0.001025 per request
    gw = gateway([dep("gpt-4o", "gpt-4o", reply, params={"mock_delay": 0.01})], clock,
                 budget=BudgetPolicy(caps={"t": 0.05}))

    peak = []
    original = gw.budgets.try_reserve

    def tracking(*args, **kw):  # records how much is reserved but not yet settled: proves real concurrency
        r = original(*args, **kw)
        peak.append(gw.budgets.reserved("t", clock()))
        return r

    gw.budgets.try_reserve = tracking

    async def run():
        reqs = [gw.acomplete(gw.request(f"question {i}", tenant="t", params={"max_tokens": 100}))
                for i in range(200)]
        return await asyncio.gather(*reqs)

    outcomes = asyncio.run(run())
    spent = gw.budgets.spent("t", clock())
    assert spent <= 0.05
    ok = sum(o.ok for o in outcomes)
    assert ok >= 20 and sum(isinstance(o.error, BudgetExceeded) for o in outcomes) == 200 - ok
    assert spent == pytest.approx(ok * 0.001025)
    assert gw.budgets.overshoot_usd == 0
    assert max(peak) > 10 * 0.001  # many requests were in flight at once
    assert len({o.request_id for o in gw.ledger}) == 200


def test_streaming_records_time_to_first_token():
    gw = Gateway([dep("gpt-4o", "gpt-4o", "streamed answer in pieces", params={"mock_delay": 0.2})],
                 router=FixedRouter("gpt-4o"), fallbacks={})
    response = gw.stream("tell me")
    chunks = list(response)
    assert "".join(chunks) == "streamed answer in pieces" and len(chunks) > 1
    assert response.outcome.ttft_s >= 0.2 and response.outcome.latency_s >= response.outcome.ttft_s
    cached = gw.stream("tell me")
    assert list(cached) == ["streamed answer in pieces"] and cached.outcome.cache is CacheOutcome.EXACT_HIT


def test_async_streaming():
    gw = Gateway([dep("gpt-4o", "gpt-4o", "async stream")], router=FixedRouter("gpt-4o"), fallbacks={})

    async def run():
        response = gw.astream("hi")
        return [c async for c in response], response.outcome

    chunks, outcome = asyncio.run(run())
    assert "".join(chunks) == "async stream" and outcome.ttft_s is not None


def test_an_empty_mock_stream_is_the_empty_answer():
    """litellm's mock streams record no stop reason: an empty one is the empty answer, not a
    stream cut before its content (which a real stream without a stop reason is)."""
    gw = Gateway([dep("gpt-4o", "gpt-4o", "")], router=FixedRouter("gpt-4o"), fallbacks={}, input_guards=())
    response = gw.stream("hi")
    assert list(response) == [] and response.outcome.ok and response.outcome.text == ""


def test_cache_isolation_and_ttl_through_live_driver():
    clock = FakeClock()
    gw = gateway([dep("gpt-4o", "gpt-4o", "shared?")], clock, cache_ttl_s=100)
    assert gw.complete("q", tenant="a").cache is CacheOutcome.MISS
    assert gw.complete("q", tenant="b").cache is CacheOutcome.MISS
    clock.advance(60)
    assert gw.complete("q", tenant="a").cache is CacheOutcome.EXACT_HIT
    clock.advance(40)
    assert gw.complete("q", tenant="a").cache is CacheOutcome.MISS


def test_malformed_provider_response_is_an_attempt_outcome():
    clock = FakeClock()
    broken = {"choices": [{"message": {"role": "assistant", "content": None, "tool_calls": [  # a call to no function
        {"id": "call_1", "type": "function", "function": {"name": "", "arguments": "{}"}}]}, "index": 0}]}
    gw = gateway([dep("gpt-4o", "gpt-4o", broken), dep("mini", "gpt-4o-mini", "fine")], clock,
                 retry=RetryPolicy(max_retries=0))
    out = gw.complete("hello")
    assert out.deployment == "mini" and out.attempts[0].error.startswith("malformed_response")


def test_api_keys_and_message_text_never_logged(caplog):
    clock = FakeClock()
    gw = gateway([dep("gpt-4o", "gpt-4o", "the answer", params={"api_key": "sk-live-SECRET123"})], clock)
    with caplog.at_level(logging.DEBUG):
        out = gw.complete("my private question about order 991")
    assert out.ok
    records = [r for r in caplog.records if r.name.startswith("llmlab")]
    assert records and any(getattr(r, "llmlab", None) for r in records)
    blob = " ".join(r.getMessage() + repr(getattr(r, "llmlab", "")) for r in records)
    assert "SECRET123" not in blob and "private question" not in blob and "the answer" not in blob
    assert "SECRET123" not in repr(gw.deployments["gpt-4o"])


def test_retry_after_ms_is_preferred_to_the_rounded_header():
    from llmlab.provider_errors import _retry_after

    litellm = import_litellm()
    response = httpx.Response(429, headers={"retry-after": "1", "retry-after-ms": "250"},
                              request=httpx.Request("POST", "https://example.invalid/v1/chat/completions"))
    exc = litellm.RateLimitError(message="slow down", llm_provider="openai", model="gpt-4o", response=response)
    assert _retry_after(exc) == 0.25
    assert _retry_after(rate_limit_with_retry_after(3)) == 3.0


def test_a_missing_openai_key_is_a_rejection_not_a_server_error(monkeypatch):
    """litellm reports the openai client's "Missing credentials" as a 500 InternalServerError.
    Before: retried as a server error on every OpenAI deployment (backoff, breaker failures), and
    the outcome named only the last deployment's error."""
    for name in ("OPENAI_API_KEY", "OPENAI_ADMIN_KEY", "OPENAI_BASE_URL", "OPENAI_API_BASE"):
        monkeypatch.delenv(name, raising=False)
    clock = FakeClock()
    gw = Gateway([Deployment("mini", "gpt-4o-mini"), Deployment("big", "gpt-4o")], router=FixedRouter("mini"),
                 fallbacks={"mini": ["big"]}, clock=clock, driver=LiteLLMDriver(sleep=clock.sleep, asleep=clock.asleep))
    out = gw.complete("hello")
    assert out.error.code == "provider_rejected" and "OPENAI_API_KEY" in out.error.message
    # each deployment's own key is missing: each refuses once, no retry, no backoff
    assert [a.error.split(":")[0] for a in out.attempts] == ["authentication"] * 2 and not clock.sleeps


@pytest.mark.parametrize("how", ["stream", "astream"])
def test_streamed_chunks_carry_the_callers_own_values_through_litellm(how):
    """The chunks of a live stream (litellm's mock stream cuts the placeholder apart) show the
    caller's e-mail, as outcome.text does; with unmask_answers=False both show the placeholder."""

    async def read(response):
        return [c async for c in response if isinstance(c, str)]

    def run(unmask):
        gw = Gateway([dep("gpt-4o", "gpt-4o", "Link sent to [EMAIL_1] today.")], router=FixedRouter("gpt-4o"),
                     fallbacks={}, unmask_answers=unmask)
        response = getattr(gw, how)("Reset the password for lee@example.com", cache=False)
        chunks = asyncio.run(read(response)) if how == "astream" else [c for c in response if isinstance(c, str)]
        return chunks, response.outcome.text

    masked, masked_text = run(False)
    assert not any("[EMAIL_1]" in c for c in masked), masked  # the placeholder is cut apart
    assert "".join(masked) == masked_text == "Link sent to [EMAIL_1] today."
    chunks, text = run(True)
    assert "".join(chunks) == text == "Link sent to lee@example.com today."
    assert not any(part in c for c in chunks for part in ("[E", "MAI", "L_1]")), chunks
