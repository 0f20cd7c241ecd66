"""Admission control for the async API (llmlab.admission): at most so many requests on the model
path at once, a bounded first-come wait for the others, then a recorded Overloaded refusal — never
a provider call, budget hold or breaker count for a request that was shed, and no place leaked by
a caller who leaves while it waits."""
from __future__ import annotations

import asyncio
import threading

import pytest

from llmlab import Admission, BudgetPolicy, ConfigError, Gateway, Overloaded
from llmlab.effects import Call


class Gate:
    """Holds the driver's calls open until released; counts how many are open at once."""

    def __init__(self, driver) -> None:
        self.open = asyncio.Event()
        self.active = self.peak = 0
        self.order: list[str] = []
        original = driver.aperform

        async def held(effect):
            if isinstance(effect, Call):
                self.order.append(effect.messages[-1]["content"])
                self.active += 1
                self.peak = max(self.peak, self.active)
                try:
                    await self.open.wait()
                finally:
                    self.active -= 1
            return await original(effect)

        driver.aperform = held


async def settle(*conditions) -> None:
    """Let the loop run until every condition holds (the tasks reach where they wait)."""
    for _ in range(200):
        if all(c() for c in conditions):
            return
        await asyncio.sleep(0)
    raise AssertionError("the tasks never got there")


def test_at_most_max_in_flight_calls_and_the_rest_served_first_come(make_gateway, driver):
    admission = Admission(2, max_waiting=10, max_wait_s=60)
    gw = make_gateway(admission=admission)

    async def run():
        gate = Gate(driver)
        tasks = [asyncio.create_task(gw.acomplete(f"question {i}")) for i in range(6)]
        await settle(lambda: admission.in_flight == 2 and admission.waiting == 4)
        assert gate.active == 2
        gate.open.set()
        outcomes = await asyncio.gather(*tasks)
        return gate, outcomes

    gate, outcomes = asyncio.run(run())
    assert all(o.ok for o in outcomes) and gate.peak == 2
    assert gate.order == [f"question {i}" for i in range(6)]  # the waiters in arrival order
    assert admission.in_flight == 0 and admission.waiting == 0 and admission.peak_in_flight == 2
    assert admission.refused == 0


def test_no_room_to_wait_is_refused_at_once_and_recorded_without_a_call_hold_or_breaker_count(make_gateway, driver):
    admission = Admission(1, max_waiting=1, max_wait_s=60, retry_after_s=3)
    gw = make_gateway(admission=admission, budget=BudgetPolicy(caps={"acme": 5.0}))

    async def run():
        gate = Gate(driver)
        first = asyncio.create_task(gw.acomplete("first", tenant="acme"))
        second = asyncio.create_task(gw.acomplete("second", tenant="acme"))
        await settle(lambda: admission.in_flight == 1 and admission.waiting == 1)
        shed = await gw.acomplete("third", tenant="acme")  # returns while the others still wait
        assert gw.budgets.reserved("acme", gw.clock()) > 0  # only the admitted request holds money
        gate.open.set()
        return shed, await asyncio.gather(first, second), gate

    shed, served, gate = asyncio.run(run())
    assert [o.ok for o in served] == [True, True] and gate.order == ["first", "second"]
    assert isinstance(shed.error, Overloaded) and shed.error.code == "overloaded"
    assert shed.error.retry_after_s == 3 and "busy" in shed.error.user_message and not shed.attempts
    assert "1 requests in flight, at most 1; 1 waiting, at most 1" in str(shed.error)
    assert [o.error.code for o in gw.ledger if o.error].count("overloaded") == 1 and len(gw.ledger) == 3
    assert all(b.state == "closed" for b in gw.pipeline.breakers.values())
    assert gw.budgets.reserved("acme", gw.clock()) == 0.0 and admission.refused == 1


@pytest.mark.parametrize("settings, why", [
    ({"max_waiting": 5, "max_wait_s": 0.05}, "waited 0.05 s for a place"),  # waited its time out
    ({"max_waiting": 100, "max_wait_s": 0}, "all places taken and no room to wait"),  # shed without queueing
])
def test_a_request_that_cannot_wait_long_enough_is_refused_and_leaves_no_trace_in_the_queue(make_gateway, driver,
                                                                                             settings, why):
    admission = Admission(1, **settings)
    gw = make_gateway(admission=admission)

    async def run():
        gate = Gate(driver)
        first = asyncio.create_task(gw.acomplete("first"))
        await settle(lambda: admission.in_flight == 1)
        late = await gw.acomplete("late")
        assert admission.waiting == 0
        gate.open.set()
        return late, await first

    late, first = asyncio.run(run())
    assert first.ok and late.error.code == "overloaded" and why in str(late.error)


def test_a_caller_who_cancels_while_waiting_is_recorded_and_takes_no_place_with_it(make_gateway, driver):
    admission = Admission(1, max_waiting=5, max_wait_s=60)
    gw = make_gateway(admission=admission, budget=BudgetPolicy(caps={"acme": 5.0}))

    async def run():
        gate = Gate(driver)
        first = asyncio.create_task(gw.acomplete("first", tenant="acme"))
        waiting = asyncio.create_task(gw.acomplete("leaves", tenant="acme"))
        await settle(lambda: admission.waiting == 1)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert admission.waiting == 0 and admission.in_flight == 1
        gate.open.set()
        assert (await first).ok
        assert admission.in_flight == 0
        return await gw.acomplete("after", tenant="acme")  # the place came back: admitted at once

    after = asyncio.run(run())
    assert after.ok
    codes = [o.error.code if o.error else None for o in gw.ledger]
    assert codes.count("client_disconnected") == 1 and len(codes) == 3
    assert gw.budgets.reserved("acme", gw.clock()) == 0.0


def test_a_place_handed_over_as_its_waiter_is_cancelled_passes_to_the_next(make_gateway, driver):
    """leave() gives the place to the longest waiter; if that waiter's task is cancelled before it
    wakes, the place must go on to the next waiter, not vanish (nor be counted twice)."""
    admission = Admission(1, max_waiting=5, max_wait_s=60)

    async def run():
        assert await admission.enter() is None
        a = asyncio.create_task(admission.enter())
        b = asyncio.create_task(admission.enter())
        await settle(lambda: admission.waiting == 2)
        admission.leave()  # a is granted the place, its wake-up scheduled
        a.cancel()  # ... and it leaves before waking
        with pytest.raises(asyncio.CancelledError):
            await a
        assert await b is None  # b holds the place now
        assert admission.in_flight == 1 and admission.waiting == 0
        admission.leave()
        assert admission.in_flight == 0

    asyncio.run(run())


def test_a_waiter_cancelled_just_as_its_time_runs_out_leaves_cleanly():
    """The wait's end removes the waiter from the queue and wakes it; a cancel landing before it
    wakes must not try to remove it again (a ValueError instead of the caller's cancel)."""
    admission = Admission(1, max_waiting=5, max_wait_s=60)

    async def run():
        assert await admission.enter() is None
        task = asyncio.create_task(admission.enter())
        await settle(lambda: admission.waiting == 1)
        admission._expire(admission._waiters[0])  # its time is up ...
        task.cancel()  # ... and its caller leaves before it wakes
        with pytest.raises(asyncio.CancelledError):
            await task
        assert admission.waiting == 0 and admission.in_flight == 1
        admission.leave()
        assert admission.in_flight == 0

    asyncio.run(run())


def test_a_cache_hit_never_queues(make_gateway, driver):
    admission = Admission(1, max_waiting=0, max_wait_s=0)
    gw = make_gateway(admission=admission)
    assert gw.complete("what are your opening hours?").ok  # cached; a sync call is admitted at once

    async def run():
        gate = Gate(driver)
        busy = asyncio.create_task(gw.acomplete("something else entirely"))
        await settle(lambda: admission.in_flight == 1)
        hit = await gw.acomplete("what are your opening hours?")
        gate.open.set()
        return hit, await busy

    hit, busy = asyncio.run(run())
    assert hit.ok and hit.kind.value == "cache" and busy.ok and admission.refused == 0


def test_a_stream_holds_its_place_until_it_ends_and_a_shed_stream_yields_nothing(make_gateway, driver):
    admission = Admission(1, max_waiting=0, max_wait_s=0)
    gw = make_gateway(admission=admission)
    driver.default = "ok: a streamed answer in several pieces, long enough to accept"

    async def run():
        first = gw.astream("tell me a story")
        chunks = first.__aiter__()
        head = await chunks.__anext__()
        assert admission.in_flight == 1
        shed = gw.astream("another story")
        assert [c async for c in shed] == [] and shed.outcome.error.code == "overloaded"
        rest = [c async for c in chunks]
        assert admission.in_flight == 0
        return head + "".join(rest), first.outcome

    text, outcome = asyncio.run(run())
    assert outcome.ok and text == outcome.text


def test_one_admission_serves_requests_from_several_event_loops(make_gateway, driver):
    """Threads each running their own loop share a gateway: a place freed on one loop wakes a
    waiter on another."""
    admission = Admission(1, max_waiting=10, max_wait_s=30)
    entered = threading.Event()
    release = threading.Event()
    results: dict[str, object] = {}

    def holder():
        async def hold():
            assert await admission.enter() is None
            entered.set()
            await asyncio.to_thread(release.wait)
            admission.leave()
        asyncio.run(hold())

    def waiter():
        async def wait():
            results["waiter"] = await admission.enter()
            admission.leave()
        asyncio.run(wait())

    t1 = threading.Thread(target=holder)
    t1.start()
    assert entered.wait(10)
    t2 = threading.Thread(target=waiter)
    t2.start()
    for _ in range(1000):
        if admission.waiting == 1:
            break
        threading.Event().wait(0.005)
    assert admission.waiting == 1
    release.set()
    t1.join(10)
    t2.join(10)
    assert results == {"waiter": None} and admission.in_flight == 0 and admission.waiting == 0


@pytest.mark.parametrize("kwargs, field", [
    ({"max_in_flight": 0}, "admission.max_in_flight"),
    ({"max_in_flight": 2.5}, "admission.max_in_flight"),
    ({"max_in_flight": True}, "admission.max_in_flight"),
    ({"max_in_flight": 10, "max_waiting": -1}, "admission.max_waiting"),
    ({"max_in_flight": 10, "max_wait_s": float("inf")}, "admission.max_wait_s"),
    ({"max_in_flight": 10, "max_wait_s": -1}, "admission.max_wait_s"),
    ({"max_in_flight": 10, "retry_after_s": float("nan")}, "admission.retry_after_s"),
])
def test_bad_admission_settings_name_the_field(kwargs, field):
    with pytest.raises(ConfigError, match=rf"^{field}="):
        Admission(**kwargs)


def test_a_gateway_refuses_an_admission_that_is_not_one():
    with pytest.raises(ConfigError, match="^admission="):
        Gateway(admission=256)


def test_the_burst_benchmark_runs_both_cases_and_accounts_for_every_request():
    """benchmarks/admission_burst.py on a small burst: one JSON object, every request answered or
    refused in both cases, and only the admitted case sheds (its wait is zero)."""
    from benchmark_runs import run_benchmark

    out = run_benchmark("admission_burst.py", "--requests", "40", "--max-in-flight", "4", "--max-wait-s", "0",
                        "--latency-ms", "20", timeout=180)
    for case in ("no_admission", "admission_4"):
        assert out[f"{case}.answered"] + out[f"{case}.shed"] + sum(out[f"{case}.other_errors"].values()) == 40
    assert out["no_admission.shed"] == 0 and out["no_admission.answered"] == 40
    assert out["admission_4.shed"] > 0 and out["admission_4.answered"] >= 4


def test_the_gateway_repr_shows_its_admission_and_its_load():
    gw = Gateway(admission=Admission(8, max_waiting=0))
    assert "admission=Admission(max_in_flight=8, max_waiting=0, max_wait_s=5, in_flight=0, waiting=0)" in repr(gw)
    assert "admission" not in repr(Gateway())


@pytest.mark.parametrize("seed", range(6))  # 300 seeds passed when written
def test_under_random_bursts_cancels_and_streams_every_request_is_recorded_once_and_no_place_leaks(
        make_gateway, driver, seed):
    """A seeded mix of acomplete and astream (read whole, left early), callers that cancel at
    random moments — waiting, in the call, mid-stream — and random provider delays: afterwards
    each request is in the ledger exactly once, the admission is empty, its peak never passed its
    bound, and nothing is left reserved in the budgets."""
    import random

    rng = random.Random(seed)
    admission = Admission(rng.randint(1, 6), max_waiting=rng.randint(0, 12), max_wait_s=rng.choice([0, 0.01, 0.05]))
    gw = make_gateway(admission=admission, budget=BudgetPolicy(caps={"acme": 50.0}), cache=rng.random() < 0.5)
    driver.default = "ok: an answer in a few words, long enough to accept"
    original = driver.aperform

    async def jittered(effect):
        await asyncio.sleep(rng.random() * 0.01)
        return await original(effect)

    driver.aperform = jittered
    n = 80

    async def one(i: int):
        prompt = f"question {rng.randint(0, 20)}"
        if rng.random() < 0.4:
            response = gw.astream(prompt, tenant="acme")
            async for _ in response:
                if rng.random() < 0.1:
                    break  # leaves early: the stream is closed, the request recorded
        else:
            await gw.acomplete(prompt, tenant="acme")

    async def run():
        tasks = [asyncio.create_task(one(i)) for i in range(n)]
        for task in tasks:
            if rng.random() < 0.2:
                await asyncio.sleep(rng.random() * 0.01)
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for _ in range(50):  # streams left early are closed by tasks the loop schedules
            await asyncio.sleep(0)

    asyncio.run(run())
    ids = [o.request_id for o in gw.ledger]
    assert len(ids) == n and len(set(ids)) == n
    assert admission.in_flight == 0 and admission.waiting == 0
    assert admission.peak_in_flight <= admission.max_in_flight
    assert gw.budgets.reserved("acme", gw.clock()) == 0.0
