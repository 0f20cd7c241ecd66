"""Rate limits that give unused tokens back, limits no request could pass, and refusal messages
that tell the caller what to do."""
from __future__ import annotations

import pytest

from llmlab import BudgetExceeded, BudgetPolicy, ConfigError, RateLimit, RateLimiter
from llmlab.cache import SemanticCache


def test_a_cache_hit_and_a_short_answer_give_their_tokens_back(make_gateway, driver):
    limiter = RateLimiter(per_plan={"free": RateLimit(tpm=40_000)})
    gw = make_gateway(rate_limiter=limiter, default_max_tokens=1_024)
    driver.default = "ok: a short answer that is long enough"
    served = [gw.complete(f"short question {i}?", plan="free").ok for i in range(100)]
    assert all(served)  # ≈ 30 tokens each: the worst-case 1,000+ are refunded when the request ends
    assert gw.complete("short question 1?", plan="free").cache.value == "exact_hit"


def test_interleaving_plans_does_not_refill_a_bucket():
    limiter = RateLimiter(per_plan={"free": RateLimit(rpm=2), "paid": RateLimit(rpm=100)})
    now = 1_700_000_000.0
    free_ok = 0
    for _ in range(20):
        free_ok += limiter.acquire("acme", "free", 1, now) is None
        assert limiter.acquire("acme", "paid", 1, now) is None
    assert free_ok == 2


def test_a_request_larger_than_the_limit_is_too_large_not_retry_in_inf(make_gateway):
    gw = make_gateway(rate_limiter=RateLimiter(per_plan={"free": RateLimit(tpm=2_000)}))
    outcome = gw.complete("hi", plan="free", max_tokens=4_000)
    error = outcome.error
    assert error.code == "rate_limited" and error.too_large and error.retry_after_s is None
    assert "lower max_tokens" in str(error) and "inf" not in error.user_message


def test_a_tpm_below_the_default_reservation_is_a_config_error(make_gateway):
    with pytest.raises(ConfigError) as info:
        make_gateway(rate_limiter=RateLimiter(per_plan={"free": RateLimit(tpm=500)}), default_max_tokens=1_024)
    assert info.value.field == "rate_limiter.per_plan['free'].tpm" and "default_max_tokens" in str(info.value)


@pytest.mark.parametrize("build, field", [
    (lambda: RateLimiter(per_plan={"free": {"rpm": 3}}), "rate_limiter.per_plan['free']"),
    (lambda: RateLimiter(per_tenant=[1]), "rate_limiter.per_tenant"),
    (lambda: SemanticCache("hashed"), "embedder"), (lambda: SemanticCache(None), "embedder"),
])
def test_components_refuse_what_would_fail_on_every_request(build, field):
    with pytest.raises(ConfigError) as info:
        build()
    assert info.value.field == field


def test_gateway_checks_the_semantic_caches_embedder_and_breaker_settings(make_gateway):
    class NoEmbed:
        name, dim = "none", 3

    with pytest.raises(ConfigError) as info:
        make_gateway(semantic_cache=SemanticCache(NoEmbed()))
    assert info.value.field == "semantic_cache" and "embed" in str(info.value)
    with pytest.raises(ConfigError) as info:
        make_gateway(breaker={"nope": 1})
    assert info.value.field == "breaker" and "failure_threshold" in info.value.allowed


def test_a_request_alone_over_the_cap_says_so(make_gateway):
    gw = make_gateway(budget=BudgetPolicy(caps={"acme": 0.0005}))
    error = gw.complete("hi", tenant="acme", max_tokens=100_000).error
    assert isinstance(error, BudgetExceeded) and error.too_large and not error.temporary
    assert "lower max_tokens" in str(error) and "too large" in error.user_message


def test_semantic_store_refuses_a_time_that_never_expires_and_a_missing_namespace():
    from llmlab.cache import get_embedder

    import numpy as np

    cache = SemanticCache(get_embedder("hashed"))
    with pytest.raises(ConfigError) as info:
        cache.store("t", "hello", np.ones(cache.dim or 256, dtype=np.float32), "v", float("nan"))
    assert info.value.field == "now"
    with pytest.raises(ConfigError):
        cache.store(None, "hello", np.ones(cache.dim or 256, dtype=np.float32), "v", 0.0)


@pytest.mark.parametrize("flag", ["unmask_answers", "log_content", "cache", "unmasked_ok"])
def test_flags_are_booleans(make_gateway, flag):
    with pytest.raises(ConfigError) as info:
        make_gateway(**{flag: "no"})
    assert info.value.field == flag


def test_budget_holds_settle_to_exactly_zero():
    from llmlab.budgets import MemoryBudgets

    b = MemoryBudgets()
    holds = [b.try_reserve("t", x, 10.0, 0.0) for x in (0.1, 0.2, 0.3, 0.7)]
    for h in holds:
        b.settle(h, 0.0)
    assert b.reserved("t", 0.0) == 0.0


def test_throttling_does_not_open_the_breaker(make_gateway, driver):
    from llmlab.effects import ErrorKind
    from llmlab.scripted import error

    gw = make_gateway(fallbacks={"gpt-4o": ["gpt-4o-mini"]}, breaker={"failure_threshold": 3, "cooldown_s": 30})
    for _ in range(20):  # every first try is throttled for a second, the retry answers
        driver.script("gpt-4o", error(ErrorKind.RATE_LIMIT, retry_after_s=1.0), "ok: answered after the wait")
    outcomes = [gw.complete(f"question {i}") for i in range(20)]
    assert all(o.ok and o.deployment == "gpt-4o" for o in outcomes)
    assert gw.pipeline.breaker("gpt-4o").state == "closed" and gw.pipeline.breaker("gpt-4o").times_opened == 0
    for _ in range(3):  # real failures still trip it
        driver.script("gpt-4o", ErrorKind.SERVER, ErrorKind.SERVER, ErrorKind.SERVER)
        gw.complete("a question that fails over")
    assert gw.pipeline.breaker("gpt-4o").times_opened == 1


def test_dense_prompts_cannot_overshoot_a_cap(make_gateway, driver):
    from llmlab.effects import CallResult
    from llmlab.tokens import estimate_tokens, max_message_tokens

    dense = "".join(f"{i:x}" for i in range(1_100))[:3_000]  # hex: ≈ 1.8 characters a token, not 4
    assert estimate_tokens(dense) < len(dense) / 3.5 < max_message_tokens([{"role": "user", "content": dense}])
    # a provider that bills one token per character (the worst a byte-level tokenizer can do)
    driver.default = lambda call: CallResult("ok: fine", sum(len(str(m["content"])) for m in call.messages), 10,
                                             0.0, 0.0)
    gw = make_gateway(budget=BudgetPolicy(caps={"acme": 0.005}), fallbacks={})
    outcome = gw.complete(dense, tenant="acme", max_tokens=100)
    spent = gw.budgets.spent("acme", gw.clock())
    assert spent <= 0.005 and gw.budgets.overshoot_usd == 0.0
    assert outcome.error is not None and outcome.error.code == "budget_exceeded"  # the bound saw it coming


def test_a_rate_limited_user_is_told_to_slow_down_not_that_the_assistant_is_down(make_gateway):
    gw = make_gateway(rate_limiter=RateLimiter(per_plan={"free": RateLimit(rpm=1)}))
    assert gw.complete("hi", plan="free").ok
    error = gw.complete("hi again", plan="free").error
    assert error.code == "rate_limited" and error.retry_after_s > 0
    assert error.user_message.startswith("Too many requests for your plan right now. Please retry in ")
    assert "unavailable" not in error.user_message  # it said "temporarily unavailable", as for an outage
