"""One scripted fault sequence, four drivers, one behaviour.

The pipeline (retries, backoff, Retry-After, breakers, fallback) is shared; the drivers only
perform its effects.  So the same faults — a 429 with a Retry-After, 500/503/529, a body that is
not JSON, a hang until the timeout, a Retry-After too long to wait — must give the same attempts,
the same waits and the same breaker states whether they come from the fake provider over HTTP
through litellm (``complete`` and ``acomplete``), from the scripted driver, or from a SimPy
provider in virtual time.  A driver that classified a fault differently, read another Retry-After,
slept otherwise or timed a call so that the breaker judged it apart would show here.
"""
from __future__ import annotations

import asyncio
from typing import Any, Callable

import pytest

from llmlab import Deployment, FixedRouter, Gateway, RetryPolicy
from llmlab.effects import CallError, CallResult, ErrorKind, Sleep
from llmlab.scripted import FakeClock, ScriptedDriver

TIMEOUT_S = 0.5
RETRY = RetryPolicy(max_retries=2, base_s=0.2, cap_s=1.0, max_retry_after_s=5.0)
BREAKER = {"failure_threshold": 3, "cooldown_s": 30.0}
#: one entry per call to the primary ("ok", or a fault as (HTTP status | kind, Retry-After)), and
#: None between requests where the clock moves past the breaker's cooldown
SCRIPT: list[Any] = [
    [(429, 0.5), (500, None), "ok"],                  # throttled, a server error, then answered
    [(500, None), (529, None), (503, None)],          # three failures: the breaker opens, the backup answers
    [],                                               # skipped at once
    None,
    [("malformed", None)],                            # the half-open probe fails: open again
    None,
    [(429, 0.25), "ok"],                              # the probe is throttled, waits, is admitted again, closes it
    [(429, 10.0)],                                    # too long a wait: straight to the backup
    [("hang", None), "ok"],                           # a timeout, retried
]
KINDS = {429: ErrorKind.RATE_LIMIT, 500: ErrorKind.SERVER, 503: ErrorKind.OVERLOADED, 529: ErrorKind.OVERLOADED,
         "malformed": ErrorKind.MALFORMED, "hang": ErrorKind.TIMEOUT}


def primary_calls() -> list[Any]:
    return [c for step in SCRIPT if step for c in step]


def gateway(deployments: list[Deployment], clock: Callable[[], float], driver: Any = None) -> Gateway:
    return Gateway(deployments, router=FixedRouter("a"), fallbacks={"a": ["b"]}, retry=RETRY, breaker=BREAKER,
                   cache=False, input_guards=(), clock=clock, seed=7, driver=driver)


def observed(outcome: Any, gw: Gateway) -> tuple:
    attempts = tuple((a.deployment, a.purpose, a.ok, (a.error or "").split(":")[0], a.retry_after_s,
                      round(a.waited_s, 9)) for a in outcome.attempts)
    b = gw.pipeline.breakers["a"]
    return attempts, outcome.deployment, (b.state, b.times_opened, b.consecutive_failures)


def run_steps(mode: str, gw: Gateway, advance: Callable[[float], None]) -> list[tuple]:
    """Serve the script's requests with ``complete``, or with ``acomplete`` on one event loop."""
    loop = None if mode == "complete" else asyncio.new_event_loop()
    seen = []
    try:
        for step in SCRIPT:
            if step is None:
                advance(31.0)
                continue
            request = gw.request("q", cache=False)
            outcome = gw.complete(request) if loop is None else loop.run_until_complete(gw.acomplete(request))
            seen.append(observed(outcome, gw))
    finally:
        if loop is not None:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
    return seen


def scripted(mode: str) -> tuple[list[tuple], list[float]]:
    clock = FakeClock()
    replies: list[Any] = []
    for c in primary_calls():
        if c == "ok":
            replies.append("ok")
        else:
            status, retry_after = c
            latency = TIMEOUT_S if status == "hang" else 0.0
            replies.append(CallError(KINDS[status], "scripted", latency, retry_after))
    driver = ScriptedDriver(clock=clock, scripts={"a": replies}, default="ok")
    deps = [Deployment("a", "gpt-4o", timeout_s=TIMEOUT_S), Deployment("b", "gpt-4o-mini", timeout_s=TIMEOUT_S)]
    gw = gateway(deps, clock, driver)
    return run_steps(mode, gw, clock.advance), clock.sleeps


def live(mode: str) -> tuple[list[tuple], list[float]]:
    from llmlab.live import LiteLLMDriver
    from llmlab.testing import FakeProvider, Fault, FaultPlan

    plan = FaultPlan()
    faults = []
    for c in primary_calls():
        if c == "ok":
            faults.append(None)
        elif c[0] == "malformed":
            faults.append(Fault.malformed())
        elif c[0] == "hang":
            faults.append(Fault.hang())
        else:
            faults.append(Fault.error(c[0], c[1]))
    plan.model("a-model").then(*faults)
    clock = FakeClock()
    with FakeProvider(plan) as fp:
        params = {"api_base": fp.base_url, "api_key": "sk-test"}
        deps = [Deployment("a", "openai/a-model", params, timeout_s=TIMEOUT_S, price_model="gpt-4o"),
                Deployment("b", "openai/b-model", params, timeout_s=TIMEOUT_S, price_model="gpt-4o-mini")]
        gw = gateway(deps, clock, LiteLLMDriver(sleep=clock.sleep, asleep=clock.asleep))
        seen = run_steps(mode, gw, clock.advance)
        assert not plan.model("a-model").script  # every scripted fault was served
    return seen, clock.sleeps


class ScriptedSimProvider:
    """A SimPy provider that answers from the script: a fault after no time (a hang after the
    deployment's timeout), as :class:`~llmlab.sim.providers.SimProvider` reports each."""

    def __init__(self, env: Any, replies: list[Any]) -> None:
        self.env, self.replies = env, list(replies)

    def serve(self, call: Any, key: int) -> Any:
        reply = self.replies.pop(0) if self.replies else "ok"
        if reply != "ok" and reply[0] == "hang":
            yield self.env.timeout(call.deployment.timeout_s)
            return CallError(ErrorKind.TIMEOUT, "timed out", call.deployment.timeout_s)
        yield self.env.timeout(0.0)
        if reply == "ok":
            return CallResult("ok", 5, 1, 0.0, 0.0)
        status, retry_after = reply
        return CallError(KINDS[status], f"{status}", 0.0, retry_after, status if isinstance(status, int) else None)


def simulated() -> tuple[list[tuple], list[float]]:
    import simpy

    from llmlab.sim.driver import SimDriver

    env = simpy.Environment()
    start = FakeClock().now
    deps = [Deployment("a", "gpt-4o", timeout_s=TIMEOUT_S), Deployment("b", "gpt-4o-mini", timeout_s=TIMEOUT_S)]
    gw = gateway(deps, lambda: start + env.now)
    driver = SimDriver(env, {"a": ScriptedSimProvider(env, primary_calls()), "b": ScriptedSimProvider(env, [])})
    seen: list[tuple] = []
    sleeps: list[float] = []

    def tapped(gen: Any) -> Any:  # the pipeline's effects, passed through, its sleeps noted
        value = None
        while True:
            try:
                effect = gen.send(value)
            except StopIteration as stop:
                return stop.value
            if isinstance(effect, Sleep):
                sleeps.append(effect.seconds)
            value = yield effect

    def user() -> Any:
        for step in SCRIPT:
            if step is None:
                yield env.timeout(31.0)
                continue
            outcome = yield from driver.drive(tapped(gw.pipeline.handle(gw.request("q", cache=False))), len(seen))
            seen.append(observed(outcome, gw))

    env.process(user())
    env.run()
    assert driver.internal_errors == 0
    return seen, sleeps


@pytest.fixture(scope="module")
def reference() -> tuple[list[tuple], list[float]]:
    return scripted("complete")


def test_the_script_exercises_what_it_claims(reference):
    seen, sleeps = reference
    kinds = [[a[3] for a in attempts] for attempts, _, _ in seen]
    assert kinds[0] == ["rate_limit", "server_error", ""] and seen[0][1] == "a"
    assert seen[0][0][1][5] >= 0.5                                  # the retry waited out the Retry-After
    assert seen[1][2] == ("open", 1, 3) and seen[1][1] == "b"
    assert seen[2][0][0][3] == "circuit_open" and seen[2][1] == "b"
    assert seen[3][0][0][3] == "malformed_response" and seen[3][2][:2] == ("open", 2)
    assert [a[3] for a in seen[4][0]] == ["rate_limit", ""] and seen[4][2] == ("closed", 2, 0)
    assert [a[0] for a in seen[5][0]] == ["a", "b"] and seen[5][0][0][4] == 10.0  # not waited for
    assert [a[3] for a in seen[6][0]] == ["timeout", ""] and seen[6][1] == "a"
    assert len(sleeps) == 6 and sleeps[0] == 0.5 and sleeps[4] == 0.25  # each Retry-After exactly (above the jitter)
    assert all(0 < s <= RETRY.cap_s for s in sleeps)


@pytest.mark.parametrize("run", [lambda: scripted("acomplete"), lambda: live("complete"), lambda: live("acomplete"),
                                 simulated], ids=["scripted-async", "live-sync", "live-async", "simpy"])
def test_every_driver_gives_the_same_attempts_waits_and_breaker_states(reference, run):
    seen, sleeps = run()
    assert seen == reference[0]
    assert sleeps == reference[1]
