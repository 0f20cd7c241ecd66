"""How late an event loop wakes its tasks while some work runs on it.

A ticker task asks the loop to wake it every ``period_s``; how much later than that it wakes is
how long every other task on the loop (another request's stream, say) was held up.  Used by the
tests and ``benchmarks/async_loop_lag.py`` to show that blocking I/O stays off the loop.
"""
from __future__ import annotations

import asyncio
import time
from typing import Awaitable, Callable, TypeVar

T = TypeVar("T")


async def loop_lags(work: Callable[[], Awaitable[T]], period_s: float, lead_s: float = 0.01
                    ) -> tuple[list[float], T]:
    """Await ``work()`` with the ticker running (started ``lead_s`` before it); returns each
    tick's lag in seconds, in order, and what ``work()`` returned."""
    lags: list[float] = []
    done = asyncio.Event()

    async def tick() -> None:
        while not done.is_set():
            start = time.perf_counter()
            await asyncio.sleep(period_s)
            lags.append(time.perf_counter() - start - period_s)

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(lead_s)
    try:
        result = await work()
    finally:
        done.set()
        await ticker
    return lags, result
