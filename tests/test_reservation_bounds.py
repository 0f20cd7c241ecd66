"""What a reservation must cover so a tenant's cap holds: every name of the answer bound, every
one of ``n`` answers, the prompt text tools add, a priced embedding, and threads sharing one
gateway.  Each test's provider bills the way real ones do (the part the reservation used to miss)."""
from __future__ import annotations

import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from llmlab import BudgetPolicy, CacheOutcome, CallResult, Deployment, FixedRouter, Gateway
from llmlab.cache.embedders import HashedNgramEmbedder
from llmlab.cache.semantic import SemanticCache
from llmlab.guardrails.base import InputVerdict
from llmlab.request import answer_token_limit
from llmlab.scripted import ScriptedDriver
from llmlab.tokens import count_message_tokens, count_tokens, max_message_tokens, max_params_tokens

LONG = "lorem ipsum dolor sit amet " * 400


def _capped(make_gateway, cap: float = 0.01, **kw) -> Gateway:
    kw.setdefault("deployments", [Deployment("gpt-4o", "gpt-4o")])
    return make_gateway(router=FixedRouter("gpt-4o"), fallbacks={}, budget=BudgetPolicy(caps={"acme": cap}), **kw)


def _bills_the_bound(call) -> CallResult:
    """A provider that writes as long as it is allowed to, under whichever name it reads."""
    bound = call.params.get("max_completion_tokens") or call.params["max_tokens"]
    choices = call.params.get("n") or 1
    prompt = count_message_tokens(call.messages) + count_tokens(json.dumps(call.params.get("tools") or []))
    return CallResult(LONG, prompt, choices * bound, 0.1, 0.05)


def _money_holds(gw: Gateway, cap: float) -> None:
    now = gw.clock()
    assert gw.budgets.spent("acme", now) <= cap + 1e-12
    assert gw.budgets.overshoot_usd == 0.0  # no call cost more than its reservation
    assert gw.budgets.reserved("acme", now) == 0.0
    assert gw.budgets.spent("acme", now) == pytest.approx(gw.ledger.spend_by_tenant().get("acme", 0.0))


def test_answer_token_limit_takes_the_smaller_name():
    assert answer_token_limit({}) is None
    assert answer_token_limit({"max_tokens": 20}) == 20
    assert answer_token_limit({"max_completion_tokens": 30}) == 30
    assert answer_token_limit({"max_tokens": 20, "max_completion_tokens": 4000}) == 20
    assert answer_token_limit({"max_tokens": 500, "max_completion_tokens": 40}) == 40


def test_max_completion_tokens_is_reserved_and_clamped(make_gateway, driver):
    driver.default = _bills_the_bound
    dep = Deployment("gpt-4o", "gpt-4o", max_output_tokens=50)
    gw = _capped(make_gateway, deployments=[dep])
    out = gw.complete("summarise", tenant="acme", max_completion_tokens=4000)
    sent = driver.calls[-1].params
    assert out.ok and sent["max_completion_tokens"] == 50 and sent["max_tokens"] == 50  # the deployment's bound
    gw.complete("summarise again", tenant="acme", max_tokens=20, max_completion_tokens=4000)
    assert driver.calls[-1].params["max_completion_tokens"] == 20 == driver.calls[-1].params["max_tokens"]
    for i in range(40):
        gw.complete(f"summarise {i}", tenant="acme", max_completion_tokens=4000)
    _money_holds(gw, 0.01)


def test_a_large_max_completion_tokens_is_refused_before_it_is_sent(make_gateway, driver):
    driver.default = _bills_the_bound
    gw = _capped(make_gateway)
    out = gw.complete("summarise", tenant="acme", max_completion_tokens=4000)  # $0.04 worst case, cap $0.01
    assert out.error.code == "budget_exceeded" and driver.calls == []
    assert gw.complete("summarise", tenant="acme", max_tokens=20, max_completion_tokens=4000).ok


def test_n_answers_are_all_reserved(make_gateway, driver):
    driver.default = _bills_the_bound
    gw = _capped(make_gateway)
    assert gw.complete("write eight poems", tenant="acme", max_tokens=200, n=8).error.code == "budget_exceeded"
    assert driver.calls == []  # 8 × 200 answer tokens ($0.016) cannot fit a $0.01 cap
    outcomes = [gw.complete(f"write a poem {i}", tenant="acme", max_tokens=200, n=2) for i in range(3)]
    assert [o.ok for o in outcomes] == [True, True, False]  # 2 × 200 tokens ≈ $0.004 each
    assert outcomes[2].error.code == "budget_exceeded"
    _money_holds(gw, 0.01)


def test_tool_definitions_count_towards_the_prompt_bound(make_gateway, driver):
    driver.default = _bills_the_bound
    tools = [{"type": "function", "function": {"name": f"tool_{i}", "description": "Looks things up. " * 200,
                                                "parameters": {"type": "object", "properties": {}}}}
             for i in range(10)]
    assert max_params_tokens({"tools": tools}) >= count_tokens(json.dumps(tools))
    assert max_params_tokens({"temperature": 0.2}) == 0
    gw = _capped(make_gateway, cap=0.1)  # ≈ 8,400 prompt tokens ($0.021) each, bounded by ≈ 34 kB ($0.085)
    outcomes = [gw.complete(f"weather in Seoul? {i}", tenant="acme", max_tokens=10, tools=tools) for i in range(3)]
    assert [o.ok for o in outcomes] == [True, False, False] and outcomes[0].prompt_tokens > 8000
    _money_holds(gw, 0.1)


def test_tool_call_arguments_in_the_history_count_towards_the_prompt_bound():
    call = {"role": "assistant", "content": None,
            "tool_calls": [{"id": "c1", "type": "function",
                            "function": {"name": "lookup", "arguments": json.dumps({"order": "x" * 3000})}}]}
    plain = [{"role": "user", "content": "where is my order?"}]
    assert max_message_tokens(plain + [call]) - max_message_tokens(plain) > 3000


def test_a_prompt_the_provider_writes_to_its_cache_is_reserved_at_the_write_rate(make_gateway, driver):
    """Anthropic bills a prompt it writes to its prompt cache at 1.25× the input price; the
    reservation priced every prompt token at the input rate, so a provider that cached the whole
    (dense) prompt took a tenant past its cap."""
    dep = Deployment("claude", "anthropic/claude-sonnet-4-5", price_model="claude-sonnet-4-5")
    gw = make_gateway(deployments=[dep], router=FixedRouter("claude"), fallbacks={},
                      budget=BudgetPolicy(caps={"acme": 0.05}))
    price = gw.pipeline._prices["claude"]
    assert price.cache_write_per_token > price.input_per_token  # litellm's map has Anthropic's write rate

    def caches_the_whole_prompt(call) -> CallResult:
        prompt = max_message_tokens(call.messages)  # as many tokens as the bound allows (dense text)
        return CallResult("ok", prompt, 1, 0.1, 0.05, cache_write_tokens=prompt)

    driver.default = caches_the_whole_prompt
    dense = "a1b2c3d4" * 250
    outcomes = [gw.complete(f"{dense} {i}", tenant="acme", max_tokens=1) for i in range(12)]
    assert outcomes[0].ok and not outcomes[-1].ok  # the cap was reached
    _money_holds(gw, 0.05)


class PricedEmbedder(HashedNgramEmbedder):
    """Stands in for a paid embedding API (``litellm:text-embedding-3-small``)."""

    def cost_usd(self, texts):
        return 0.001 * len(texts)


def test_a_priced_embedding_is_charged_to_the_tenant_and_held_with_the_answer(make_gateway, driver):
    driver.default = "a short answer"
    gw = _capped(make_gateway, semantic_cache=SemanticCache(PricedEmbedder()))
    outcomes = [gw.complete(f"question {i} about invoice {i * 7919}", tenant="acme", max_tokens=10) for i in range(30)]
    assert outcomes[0].ok and outcomes[0].cost_usd > 0.001
    refused = [o for o in outcomes if not o.ok]
    assert refused and all(o.error.code == "budget_exceeded" and o.cost_usd == 0.0 for o in refused)
    _money_holds(gw, 0.01)


def test_threads_sharing_a_gateway_keep_its_books(make_gateway):
    """Stages run one request at a time between effects, so spend, holds and the ledger agree."""
    class SlowDriver(ScriptedDriver):
        def perform(self, effect):
            time.sleep(0.0005)  # a provider call takes time: the threads' steps interleave
            return super().perform(effect)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        gw = Gateway([Deployment("gpt-4o", "gpt-4o")], router=FixedRouter("gpt-4o"), fallbacks={}, clock=time.time,
                     driver=SlowDriver(default=lambda c: CallResult("answer", 5, 100, 0.0, 0.0)),
                     budget=BudgetPolicy(caps={"acme": 0.2}), cache=False, input_guards=())
        with ThreadPoolExecutor(16) as pool:
            outcomes = list(pool.map(lambda i: gw.complete(f"q{i}", tenant="acme", max_tokens=100), range(1500)))
    finally:
        sys.setswitchinterval(interval)
    assert len(gw.ledger) == 1500 and any(not o.ok for o in outcomes)
    _money_holds(gw, 0.2)


def _free_for_another_thread(lock) -> bool:
    """Whether a thread other than the caller could take ``lock`` (a StepLock) right now."""
    box: list[bool] = []

    def probe() -> None:
        got = lock._lock.acquire(blocking=False)
        if got:
            lock._lock.release()
        box.append(got)

    t = threading.Thread(target=probe)
    t.start()
    t.join()
    return box[0]


def test_the_pipeline_lock_covers_the_stages_state_not_user_code_or_effects(make_gateway, driver):
    """Budgets change under the lock; guards, routers, sinks (user code) and provider calls run outside it."""
    from llmlab.budgets import MemoryBudgets

    seen: dict[str, bool] = {}
    gw: Gateway

    def held_elsewhere() -> bool:
        return not _free_for_another_thread(gw.pipeline.lock)

    class Probe:
        name = "probe"

        def check_input(self, messages):
            seen["guard"] = held_elsewhere()
            return InputVerdict(tuple(messages))

    class Budgets(MemoryBudgets):
        def try_reserve(self, *args):
            seen["budget"] = held_elsewhere()
            return super().try_reserve(*args)

    def reply(call):
        seen["provider call"] = held_elsewhere()
        return "fine"

    driver.default = reply
    gw = make_gateway(input_guards=[Probe()], budget=BudgetPolicy(caps={"acme": 1.0}), budget_backend=Budgets())
    gw.pipeline.ledger.sink = lambda outcome: seen.__setitem__("ledger sink", held_elsewhere())
    assert gw.complete("hello", tenant="acme").ok
    assert seen == {"guard": False, "budget": True, "provider call": False, "ledger sink": False}


def test_a_guard_may_wait_for_another_thread_that_uses_the_same_gateway(make_gateway, driver):
    """Held across user code, the lock deadlocked a guard that handed work to another thread."""
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(1)
    gw: Gateway

    class Moderation:
        name = "moderation"

        def check_input(self, messages):
            if messages[-1]["content"].startswith("moderate:"):
                return InputVerdict(tuple(messages))
            verdict = pool.submit(gw.complete, "moderate: " + messages[-1]["content"], cache=False).result(timeout=10)
            return InputVerdict(tuple(messages), None if verdict.ok else "moderation failed")

    driver.default = "fine"
    gw = make_gateway(input_guards=[Moderation()])
    try:
        assert gw.complete("hello").ok and len(gw.ledger) == 2
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def test_step_lock_lets_go_of_every_level_around_user_code_and_takes_them_back():
    from llmlab.steplock import StepLock

    lock = StepLock()
    assert lock.outside(lambda: 1) == 1 and not lock.held()  # never taken: a plain call

    def free_elsewhere() -> bool:
        return _free_for_another_thread(lock)

    with lock:
        with lock:  # re-entrant on one thread
            assert not free_elsewhere()
            assert lock.outside(free_elsewhere) is True
            assert lock.held() and not free_elsewhere()  # back at depth 2
            with pytest.raises(ZeroDivisionError):
                lock.outside(lambda: 1 / 0)
            assert lock.held() and not free_elsewhere()  # taken back after an exception too
        assert lock.held()
    assert not lock.held() and free_elsewhere()


class DownEmbedder(HashedNgramEmbedder):
    """An embedding API in an outage: every call fails; ``priced`` makes it a paid one."""

    def __init__(self, priced: bool) -> None:
        super().__init__()
        self.priced = priced

    def embed(self, texts):
        raise ConnectionError("embedding API unreachable")

    def cost_usd(self, texts):
        return 0.001 * len(texts) if self.priced else 0.0


@pytest.mark.parametrize("priced", [False, True])
def test_an_embedder_that_fails_makes_a_cache_miss_not_a_failed_request(make_gateway, driver, priced, caplog):
    """Before: "internal error: ConnectionError" for every request while the embedding API was down
    (and a logged traceback each), though the semantic cache is only an optimisation."""
    import logging

    driver.default = "a short answer"
    gw = _capped(make_gateway, cap=1.0, semantic_cache=SemanticCache(DownEmbedder(priced)))
    with caplog.at_level(logging.WARNING, logger="llmlab"):
        outcomes = [gw.complete(f"question {i}", tenant="acme", max_tokens=10) for i in range(3)]
    assert all(o.ok and o.cache is CacheOutcome.MISS for o in outcomes), [o.error for o in outcomes]
    assert gw.pipeline.semantic_cache.stats["stores"] == 0  # nothing to store it under
    assert [r.levelname for r in caplog.records] == ["WARNING"] * 3
    _money_holds(gw, 1.0)  # a held embedding is released, not charged
    assert gw.budgets.spent("acme", gw.clock()) == pytest.approx(sum(o.cost_usd for o in outcomes))
