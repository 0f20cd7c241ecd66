"""Async requests' pipeline steps on worker threads, for backends that wait on the network.

A stage that blocks (a Redis round trip, ≈ 0.7 ms a request; a Redis stalled up to its socket
timeout) held up the event loop, and with it every other request's stream.  With
``step_threads`` (on by default with ``llmlab.backends``' Redis backends) the steps run on
threads and the loop goes on.  Each test's budget backend sleeps in ``try_reserve``, standing in
for a slow Redis.
"""
from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from llmlab import BudgetPolicy, Deployment, FixedRouter, Gateway, MemoryBudgets
from llmlab.errors import ConfigError
from llmlab.scripted import ScriptedDriver
from llmlab.testing.loop_lag import loop_lags
from redis_fixtures import run_redis_benchmark

STALL_S = 0.4  # long enough that a loaded machine's own hiccups stay well under it


class SlowBudgets(MemoryBudgets):
    """In-memory budgets whose reservations take ``STALL_S`` (a Redis stalled that long)."""

    blocking_io = True

    def __init__(self) -> None:
        super().__init__()
        self.threads: list[str] = []

    def try_reserve(self, tenant, amount, cap, now):
        self.threads.append(threading.current_thread().name)
        time.sleep(STALL_S)
        return super().try_reserve(tenant, amount, cap, now)


class AsyncScripted(ScriptedDriver):
    """The scripted driver, with a provider call that takes real time on the loop."""

    async def aperform(self, effect):
        await asyncio.sleep(0.01)
        return self.perform(effect)


def gateway(budgets: MemoryBudgets, **kw) -> Gateway:
    return Gateway([Deployment("gpt-4o", "gpt-4o")], router=FixedRouter("gpt-4o"), fallbacks={},
                   driver=AsyncScripted(), budget=BudgetPolicy(default_cap=100.0), budget_backend=budgets, **kw)


async def worst_loop_lag(work) -> tuple[float, Any]:
    """Await ``work()`` while a ticker measures how late the loop wakes it (the worst, in seconds)."""
    lags, results = await loop_lags(work, 0.005, lead_s=0.02)
    return max(lags), results


@pytest.mark.parametrize("threads", [True, False])
def test_a_blocking_backend_no_longer_holds_up_the_event_loop(threads):
    budgets = SlowBudgets()
    gw = gateway(budgets, step_threads=None if threads else False)  # None: on, as the backend blocks
    assert (gw.step_threads is not None) is threads

    async def main():
        return await worst_loop_lag(lambda: asyncio.gather(*(gw.acomplete(f"question {i}", tenant=f"t{i}")
                                                             for i in range(6))))

    lag, outcomes = asyncio.run(main())
    assert all(o.ok for o in outcomes) and len(budgets.threads) == 6
    if threads:
        assert lag < STALL_S * 0.75 and all(name.startswith("llmlab-step") for name in budgets.threads)
    else:
        assert lag >= STALL_S and set(budgets.threads) == {"MainThread"}


def test_astream_runs_its_steps_on_threads_too():
    budgets = SlowBudgets()
    gw = gateway(budgets)

    async def read():
        response = gw.astream("Where is my invoice?", tenant="acme")
        return [c async for c in response], response.outcome

    lag, (chunks, outcome) = asyncio.run(worst_loop_lag(read))
    assert outcome.ok and "".join(chunks) == outcome.text and lag < STALL_S * 0.75
    assert budgets.threads and all(name.startswith("llmlab-step") for name in budgets.threads)


@pytest.mark.parametrize("twice", [False, True])
@pytest.mark.parametrize("how", ["acomplete", "astream"])
def test_a_cancel_during_a_step_lets_it_finish_then_records_the_request(how, twice):
    """The task is cancelled while its first step waits in the backend: the step ends (the hold is
    taken), then the cancel goes through and the request is recorded and its hold settled."""
    budgets = SlowBudgets()
    gw = gateway(budgets)

    async def request():
        if how == "acomplete":
            return await gw.acomplete("Where is my invoice?", tenant="acme")
        return [c async for c in gw.astream("Where is my invoice?", tenant="acme")]

    async def main():
        task = asyncio.create_task(request())
        await asyncio.sleep(STALL_S / 4)  # inside try_reserve, on a step thread
        task.cancel()
        if twice:
            await asyncio.sleep(STALL_S / 4)
            task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    [record] = list(gw.ledger)
    assert record.error is not None and record.error.code == "client_disconnected"
    assert gw.driver.calls == []  # the cancel came before the call: nothing was sent
    assert budgets.reserved("acme", time.time()) == 0.0 and budgets.spent("acme", time.time()) == 0.0


@pytest.mark.parametrize("bad", ["yes", 0, -3, 257, 2.5])
def test_step_threads_is_checked(bad):
    with pytest.raises(ConfigError) as info:
        gateway(MemoryBudgets(), step_threads=bad)
    assert info.value.field == "step_threads" and "number of threads from 1 to 256" in str(info.value)
    assert gateway(MemoryBudgets()).step_threads is None  # in memory: steps stay on the loop
    assert gateway(MemoryBudgets(), step_threads=True).step_threads.workers == 8
    assert gateway(MemoryBudgets(), step_threads=32).step_threads.workers == 32
    assert gateway(SlowBudgets(), step_threads=False).step_threads is None


def test_the_loop_lag_benchmark_runs():
    """benchmarks/async_loop_lag.py (a small run): it prints every case, each request answered."""
    out = run_redis_benchmark("async_loop_lag.py", "--requests", "60", "--stall-s", "0.05")
    cases = [k for k in out if k.startswith("steps_on_")]
    assert sorted(cases) == ["steps_on_loop", "steps_on_loop_redis_stalled", "steps_on_threads",
                             "steps_on_threads_redis_stalled"]
    assert all(out[k]["answered"] == 60 and out[k]["requests_per_s"] > 0 for k in cases)
