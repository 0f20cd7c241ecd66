"""A cap holds when a billed failure is followed by another call.

A stream the provider cut, or an answer it billed but that could not be used (a malformed body
with usage), is charged; the reservation held one answer per chain stage, so the retry or the
fallback that followed could bill past the hold and past the cap (``budgets.overshoot_usd``).
Before each further call the hold is now topped up to cover what was billed plus the worst case
still to come; when the cap cannot take that, no call is made and the request is refused
(``budget_exceeded``) with the billed part recorded and charged.

Each test's provider bills the way real ones do: the cut part at its tokens, the answer at its
``max_tokens`` bound.  The cap is one answer's worst case ("tight": no room for the retry), or two
("room").
"""
from __future__ import annotations

import asyncio
import random

import pytest

from llmlab import BudgetPolicy, CallResult, CascadeRouter, Deployment, FixedRouter, Gateway, MemoryBudgets, RetryPolicy
from llmlab.effects import Attempt, Call, CallError, ErrorKind, Sleep
from llmlab.fallback import CircuitBreaker, run_chain
from llmlab.scripted import FakeClock, ScriptedDriver
from llmlab.tokens import count_message_tokens, max_message_tokens, max_params_tokens
from redis_fixtures import prefix, redis_server, redis_url  # noqa: F401

PROMPT = "Summarise our refund policy for a customer who was charged twice."
CUT_TEXT = "Our refund policy says that a customer charged twice " * 20  # more than max_tokens: billed at the bound
MAX_TOKENS = 100
HOW = ["complete", "acomplete", "stream", "astream"]
TWO = [Deployment("gpt-4o", "gpt-4o"), Deployment("claude", "anthropic/claude-sonnet-4-20250514",
                                                  price_model="claude-sonnet-4-20250514")]


def cut(call: Call) -> CallError:
    """A stream the provider cut after sending ``CUT_TEXT``: billed for the prompt and that text."""
    return CallError(ErrorKind.CONNECTION, "stream cut midway", 0.1, partial_text=CUT_TEXT)


def malformed_with_usage(call: Call) -> CallError:
    """A body that could not be parsed but whose usage the provider reported: billed."""
    return CallError(ErrorKind.MALFORMED, "malformed response", 0.1,
                     billed=(count_message_tokens(call.messages), call.params["max_tokens"]))


def bills_the_bound(call: Call) -> CallResult:
    """A provider that writes as long as it is allowed to."""
    return CallResult("a whole answer " * 60, count_message_tokens(call.messages), call.params["max_tokens"], 0.1, 0.05)


def one_answer(gw: Gateway, *stages: str) -> float:
    """The worst case the pipeline reserves for this request (one answer per stage)."""
    pipe = gw.pipeline
    req = gw.request(PROMPT, tenant="acme", max_tokens=MAX_TOKENS)
    bound = max_message_tokens(req.messages) + max_params_tokens(req.params)
    return sum(pipe.worst_case_cost(pipe.chain_for(stage), bound, MAX_TOKENS) for stage in stages)


def ask(gw: Gateway, how: str):
    """One request through the sync, async, streaming or async-streaming driver loop."""
    kw = {"tenant": "acme", "max_tokens": MAX_TOKENS}
    if how == "complete":
        return gw.complete(PROMPT, **kw)
    if how == "acomplete":
        return asyncio.run(gw.acomplete(PROMPT, **kw))
    if how == "stream":
        response = gw.stream(PROMPT, **kw)
        list(response)
        return response.outcome

    async def consume():
        response = gw.astream(PROMPT, **kw)
        [c async for c in response]
        return response.outcome

    return asyncio.run(consume())


def money_holds(gw: Gateway, cap: float) -> float:
    """Spend within the cap, no call above its hold, nothing left reserved, the ledger agrees."""
    now = gw.clock()
    spent = gw.budgets.spent("acme", now)
    assert gw.budgets.overshoot_usd == 0.0, f"billed {gw.budgets.overshoot_usd} past the holds"
    assert spent <= cap + 1e-12
    assert gw.budgets.reserved("acme", now) == pytest.approx(0.0, abs=1e-12)
    assert spent == pytest.approx(gw.ledger.spend_by_tenant().get("acme", 0.0))
    return spent


def gateway(make_gateway, *, fallbacks=None, retries: int = 2, budgets=None, cap_answers: float, stages=("gpt-4o",),
            **kw) -> tuple[Gateway, float]:
    gw = make_gateway(deployments=TWO, router=kw.pop("router", FixedRouter("gpt-4o")), fallbacks=fallbacks or {},
                      retry=RetryPolicy(max_retries=retries, base_s=0.1, cap_s=0.1), cache=False,
                      budget=BudgetPolicy(caps={"acme": 1.0}), budget_backend=budgets, **kw)
    cap = cap_answers * one_answer(gw, *stages)
    gw.pipeline.budget_policy = BudgetPolicy(caps={"acme": cap})
    return gw, cap


# ----------------------------------------------------------------------------- retry of the same deployment
@pytest.mark.parametrize("how", HOW)
def test_a_cut_stream_then_a_retry_under_a_cap_of_one_answer_is_refused_not_billed_past_it(make_gateway, driver,
                                                                                            how):
    driver.script("gpt-4o", cut)
    driver.default = bills_the_bound
    gw, cap = gateway(make_gateway, cap_answers=1.0)
    out = ask(gw, how)
    assert out.error is not None and out.error.code == "budget_exceeded", (out.kind, out.error, out.attempts)
    assert out.error.tenant == "acme" and out.error.cap_usd == pytest.approx(cap)
    assert len(driver.calls) == 1  # no retry went out
    [attempt] = out.attempts
    assert attempt.error.startswith("connection") and attempt.cost_usd > 0  # the cut part: recorded and charged
    assert out.cost_usd == pytest.approx(attempt.cost_usd)
    assert money_holds(gw, cap) == pytest.approx(attempt.cost_usd)


@pytest.mark.parametrize("how", HOW)
def test_a_cut_stream_then_a_retry_with_room_under_the_cap_is_served_within_it(make_gateway, driver, how):
    driver.script("gpt-4o", cut)
    driver.default = bills_the_bound
    gw, cap = gateway(make_gateway, cap_answers=2.0)
    out = ask(gw, how)
    assert out.ok and out.deployment == "gpt-4o" and len(driver.calls) == 2
    assert money_holds(gw, cap) == pytest.approx(out.cost_usd) and out.cost_usd > cap / 2  # past one answer's hold


# ----------------------------------------------------------------------------- the next deployment
@pytest.mark.parametrize("cap_answers, served", [(1.0, False), (2.0, True)])
def test_a_cut_stream_then_a_fallback_stays_within_the_cap(make_gateway, driver, cap_answers, served):
    driver.script("gpt-4o", cut)
    driver.default = bills_the_bound
    gw, cap = gateway(make_gateway, fallbacks={"gpt-4o": ["claude"]}, retries=0, cap_answers=cap_answers)
    out = ask(gw, "complete")
    if served:
        assert out.ok and out.deployment == "claude" and [c.deployment.name for c in driver.calls] == ["gpt-4o", "claude"]
    else:
        assert out.error.code == "budget_exceeded" and [c.deployment.name for c in driver.calls] == ["gpt-4o"]
        assert out.cost_usd == out.attempts[0].cost_usd > 0
    money_holds(gw, cap)


def test_a_billed_malformed_answer_then_a_retry_stays_within_the_cap(make_gateway, driver):
    """Not only cut streams: any failure the provider billed (its usage reported) counts."""
    driver.script("gpt-4o", malformed_with_usage)
    driver.default = bills_the_bound
    gw, cap = gateway(make_gateway, cap_answers=1.0)
    out = ask(gw, "complete")
    assert out.error.code == "budget_exceeded" and len(driver.calls) == 1 and out.cost_usd > 0
    money_holds(gw, cap)


def test_unbilled_failures_need_no_top_up(make_gateway, driver):
    """A 500 costs nothing: retries under a cap of exactly one answer go on as before."""
    driver.script("gpt-4o", ErrorKind.SERVER, ErrorKind.SERVER)
    driver.default = bills_the_bound
    gw, cap = gateway(make_gateway, cap_answers=1.0)
    out = ask(gw, "complete")
    assert out.ok and len(driver.calls) == 3
    money_holds(gw, cap)


def test_repeated_billed_failures_are_each_covered(make_gateway, driver):
    """Two cuts then an answer: each cut tops the hold up again; a cap with room for all is
    reached exactly, never passed."""
    driver.script("gpt-4o", cut, cut)
    driver.default = bills_the_bound
    gw, cap = gateway(make_gateway, cap_answers=3.0)
    out = ask(gw, "complete")
    assert out.ok and len(driver.calls) == 3
    money_holds(gw, cap)
    # a cap with room for one cut only: the second cut stops the chain before the third call
    driver.script("gpt-4o", cut, cut)
    gw, cap = gateway(make_gateway, cap_answers=2.3)
    out = ask(gw, "complete")
    assert out.error.code == "budget_exceeded" and len(driver.calls) == 5
    assert [a.error.split(":")[0] for a in out.attempts] == ["connection", "connection"]
    one, billed = cap / 2.3, out.attempts[0].cost_usd
    assert one + billed <= cap < one + 2 * billed  # the cap's room: one cut, not two
    money_holds(gw, cap)


# ----------------------------------------------------------------------------- the next cascade stage
def test_a_cascade_escalating_past_a_billed_stage_needs_no_more_than_its_hold(make_gateway, driver):
    """A stage that failed with a billed cut used its own stage's share of the hold: the next stage
    is still covered, so a cap of exactly the two stages' worst case does not refuse it."""
    driver.script("gpt-4o-mini", cut)
    driver.default = bills_the_bound
    deployments = [*TWO, Deployment("gpt-4o-mini", "gpt-4o-mini")]
    cap = one_answer(make_gateway(deployments=deployments, fallbacks={}), "gpt-4o-mini", "gpt-4o")
    gw = make_gateway(deployments=deployments, router=CascadeRouter(["gpt-4o-mini", "gpt-4o"], lambda t, r: True),
                      fallbacks={}, cache=False, retry=RetryPolicy(max_retries=0), budget=BudgetPolicy(caps={"acme": cap}))
    out = ask(gw, "complete")
    assert out.ok and out.deployment == "gpt-4o", out.attempts
    money_holds(gw, cap)


def test_a_cascade_stage_cut_after_an_earlier_answer_serves_that_answer_when_the_cap_is_reached(make_gateway,
                                                                                               driver):
    """Stage one answered (rejected by the check), stage two's stream was cut: its retry would pass
    the cap, so it is not made and the earlier, paid-for answer is served."""
    driver.script("gpt-4o", cut)
    driver.default = bills_the_bound
    deployments = [*TWO, Deployment("gpt-4o-mini", "gpt-4o-mini")]
    cap = one_answer(make_gateway(deployments=deployments, fallbacks={}), "gpt-4o-mini", "gpt-4o")
    gw = make_gateway(deployments=deployments, router=CascadeRouter(["gpt-4o-mini", "gpt-4o"], lambda t, r: False),
                      fallbacks={}, cache=False, retry=RetryPolicy(max_retries=2, base_s=0.0, cap_s=0.0),
                      budget=BudgetPolicy(caps={"acme": cap}))
    out = ask(gw, "complete")
    assert out.ok and out.deployment == "gpt-4o-mini" and "budget" in out.route_reason, out.route_reason
    assert [c.deployment.name for c in driver.calls] == ["gpt-4o-mini", "gpt-4o"]
    money_holds(gw, cap)


# ----------------------------------------------------------------------------- leaving, failing backends
def test_a_caller_who_leaves_during_the_topped_up_retry_leaves_nothing_reserved(make_gateway, driver):
    driver.script("gpt-4o", cut)
    driver.default = bills_the_bound
    gw, cap = gateway(make_gateway, cap_answers=2.0)
    response = gw.stream(PROMPT, tenant="acme", max_tokens=MAX_TOKENS)
    pieces = iter(response)  # kept: an iterator let go of is closed at once
    while not isinstance(next(pieces), str):  # the retry's first chunk: its hold was topped up before it was sent
        pass
    assert gw.budgets.reserved("acme", gw.clock()) > one_answer(gw, "gpt-4o") * 1.01  # the top-up, still open
    response.close()
    assert len(driver.calls) == 2 and response.outcome.error.code == "client_disconnected"
    money_holds(gw, cap)


def test_a_cancelled_task_during_the_topped_up_retry_leaves_nothing_reserved(make_gateway, driver):
    driver.script("gpt-4o", cut)
    driver.default = bills_the_bound
    gw, cap = gateway(make_gateway, cap_answers=2.0)
    perform = driver.aperform

    async def hangs_on_the_retry(effect):
        if isinstance(effect, Call) and driver.calls:
            await asyncio.Event().wait()  # the retry never answers
        return await perform(effect)

    driver.aperform = hangs_on_the_retry

    async def cancel_midway():
        task = asyncio.ensure_future(gw.acomplete(PROMPT, tenant="acme", max_tokens=MAX_TOKENS))
        for _ in range(1000):  # until the retry is out (its hold topped up)
            if len(driver.calls) == 1 and gw.budgets.reserved("acme", gw.clock()) > one_answer(gw, "gpt-4o") * 1.01:
                break
            await asyncio.sleep(0)
        else:
            raise AssertionError("the retry's hold was never topped up")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_midway())
    [outcome] = list(gw.ledger)
    assert outcome.error.code == "client_disconnected" and outcome.cost_usd > 0
    money_holds(gw, cap)


class BreaksAtTopUp(MemoryBudgets):
    """A store that broke after a request's first reservation: it raises, or (``unreachable``)
    refuses as an unreachable shared store failing closed does (RedisBudgets)."""

    def __init__(self, unreachable: bool) -> None:
        super().__init__()
        self.unreachable = unreachable
        self.last_refusal_unavailable = False

    def try_reserve(self, tenant, amount, cap, now):
        if not self.reserved(tenant, now):
            return super().try_reserve(tenant, amount, cap, now)
        if not self.unreachable:
            raise RuntimeError("budget store broke")
        self.last_refusal_unavailable = True
        return None


@pytest.mark.parametrize("unreachable, code", [(False, "gateway_error"), (True, "budget_unavailable")])
def test_a_store_that_breaks_at_the_top_up_settles_the_first_hold_and_charges_the_cut(make_gateway, driver,
                                                                                     unreachable, code):
    driver.script("gpt-4o", cut)
    driver.default = bills_the_bound
    gw, cap = gateway(make_gateway, cap_answers=5.0, budgets=BreaksAtTopUp(unreachable))
    out = ask(gw, "complete")
    assert out.error.code == code and len(driver.calls) == 1
    [attempt] = out.attempts  # the cut, billed: in the ledger and charged
    assert attempt.cost_usd > 0 and out.cost_usd == attempt.cost_usd
    money_holds(gw, cap)


def test_a_pipeline_closed_during_the_topped_up_retry_settles_every_hold(make_gateway, driver):
    """GeneratorExit (a driver that drops the request) goes through the same settlement."""
    gw, cap = gateway(make_gateway, cap_answers=2.0)
    gen = gw.pipeline.handle(gw.request(PROMPT, tenant="acme", max_tokens=MAX_TOKENS))
    first = next(gen)
    assert isinstance(gen.send(cut(first)), Sleep)
    assert isinstance(gen.send(None), Call)  # the retry, its hold topped up
    assert gw.budgets.reserved("acme", gw.clock()) > one_answer(gw, "gpt-4o") * 1.01
    gen.close()
    assert gw.budgets.reserved("acme", gw.clock()) == pytest.approx(0.0, abs=1e-12)
    assert gw.budgets.overshoot_usd == 0.0 and gw.budgets.spent("acme", gw.clock()) <= cap


# ----------------------------------------------------------------------------- the SimPy driver, Redis
class _SimStub:
    """A simulated provider answering from a script in virtual time."""

    def __init__(self, env, replies):
        self.env, self.replies = env, list(replies)

    def serve(self, call, key):
        yield self.env.timeout(0.5)
        reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        return reply(call)


@pytest.mark.parametrize("cap_answers, served", [(1.0, False), (2.0, True)])
def test_the_simpy_driver_keeps_the_cap_too(cap_answers, served):
    simpy = pytest.importorskip("simpy")
    from llmlab.sim.driver import SimDriver

    env = simpy.Environment()
    gw = Gateway(TWO, router=FixedRouter("gpt-4o"), fallbacks={}, cache=False, clock=lambda: 1_700_000_000.0 + env.now,
                 retry=RetryPolicy(max_retries=2, base_s=0.1, cap_s=0.1), driver=ScriptedDriver(),
                 budget=BudgetPolicy(caps={"acme": 1.0}), seed=0)
    cap = cap_answers * one_answer(gw, "gpt-4o")
    gw.pipeline.budget_policy = BudgetPolicy(caps={"acme": cap})
    sim = SimDriver(env, {"gpt-4o": _SimStub(env, [cut, bills_the_bound])})
    request = gw.request(PROMPT, tenant="acme", max_tokens=MAX_TOKENS)
    process = env.process(sim.drive(gw.pipeline.handle(request), 1))
    env.run()
    out = process.value
    assert out.ok is served and (served or out.error.code == "budget_exceeded")
    assert len(out.attempts) == (2 if served else 1) and sim.internal_errors == 0
    money_holds(gw, cap)


@pytest.mark.redis
@pytest.mark.parametrize("cap_answers, served", [(1.0, False), (2.0, True)])
def test_redis_budgets_keep_the_cap_after_a_cut_stream(redis_url, prefix, cap_answers, served):
    from llmlab.backends import from_url

    clock = FakeClock()
    driver = ScriptedDriver(clock=clock, scripts={"gpt-4o": [cut]}, default=bills_the_bound)
    budgets = from_url(redis_url, prefix).budgets
    gw = Gateway(TWO, router=FixedRouter("gpt-4o"), fallbacks={}, cache=False, clock=clock, driver=driver,
                 retry=RetryPolicy(max_retries=2, base_s=0.1, cap_s=0.1), budget=BudgetPolicy(caps={"acme": 1.0}),
                 budget_backend=budgets, seed=0)
    cap = cap_answers * one_answer(gw, "gpt-4o")
    gw.pipeline.budget_policy = BudgetPolicy(caps={"acme": cap})
    out = ask(gw, "complete")
    assert out.ok is served and (served or out.error.code == "budget_exceeded")
    assert len(driver.calls) == (2 if served else 1)
    now = clock()
    assert budgets.overshoot_usd == 0.0 and budgets.reserved("acme", now) == 0.0
    assert budgets.spent("acme", now) <= cap + 1e-9
    assert budgets.spent("acme", now) == pytest.approx(out.cost_usd, abs=1e-9)
    assert budgets.stats("acme", now).get("open", 0) == 0  # every lease (the top-up's too) settled


# ----------------------------------------------------------------------------- the chain's hook
def test_run_chain_asks_before_each_call_and_stops_without_calling_when_refused():
    dep = Deployment("gpt-4o", "gpt-4o")
    breaker = CircuitBreaker(failure_threshold=1, cooldown_s=10.0)
    breaker.record_failure(0.0)  # opened: the chain's call is the half-open probe
    asked: list[tuple[str, int]] = []

    def before_call(d: Deployment, attempts: list[Attempt]) -> bool:
        asked.append((d.name, len(attempts)))
        return not attempts  # the first call only

    chain = run_chain([dep], lambda d: Call(d, ({"role": "user", "content": "hi"},), {}),
                      lambda d: RetryPolicy(max_retries=2), lambda name: breaker, lambda d, r: 0.0, lambda: 11.0,
                      random.Random(0), before_call=before_call)
    assert isinstance(next(chain), Call) and breaker.state == "half_open"
    assert isinstance(chain.send(CallError(ErrorKind.RATE_LIMIT, "slow down", 0.1, retry_after_s=0.5)), Sleep)
    with pytest.raises(StopIteration) as done:
        chain.send(None)
    out = done.value.value
    assert asked == [("gpt-4o", 0), ("gpt-4o", 1)] and out.stopped and out.result is None
    assert len(out.attempts) == 1 and breaker.admit(11.0) is not None  # no second call; the probe slot is free


# ----------------------------------------------------------------------------- through litellm
@pytest.mark.parametrize("cap_answers, served", [(1.0, False), (2.0, True)])
def test_a_stream_the_fake_provider_cuts_then_its_retry_through_litellm(cap_answers, served):
    """End to end: litellm streams from the loopback fake provider, which cuts the first stream
    after 60 chunks (the answer has about 80 words at max_tokens=100); the live driver bills the cut part, and the retry is topped up or refused."""
    from llmlab.testing import FakeProvider, Fault, FaultPlan

    plan = FaultPlan()
    plan.model("gpt-4o").then(Fault.cut_stream(after_chunks=60))
    with FakeProvider(plan, reply="word " * 300) as fp:
        gw = Gateway([Deployment("gpt-4o", "openai/gpt-4o", {"api_base": fp.base_url, "api_key": "sk-test"})],
                     router=FixedRouter("gpt-4o"), fallbacks={}, cache=False, clock=FakeClock(),
                     retry=RetryPolicy(max_retries=1, base_s=0.0, cap_s=0.0), budget=BudgetPolicy(caps={"acme": 1.0}))
        cap = cap_answers * one_answer(gw, "gpt-4o")
        gw.pipeline.budget_policy = BudgetPolicy(caps={"acme": cap})
        out = ask(gw, "stream")
        calls = fp.stats.total
    assert out.ok is served and (served or out.error.code == "budget_exceeded"), (out.error, out.attempts)
    assert out.attempts[0].error.startswith("connection") and out.attempts[0].cost_usd > 0
    assert len(out.attempts) == (2 if served else 1)
    assert calls == len(out.attempts)  # the provider was asked no more than the attempts say
    money_holds(gw, cap)
