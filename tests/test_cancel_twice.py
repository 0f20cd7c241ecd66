"""A caller's task cancelled twice while its async stream is being closed.

Closing a provider's stream awaits (the HTTP response goes back to the pool).  A second cancel
arriving then — a server cancelling a task it already cancelled, a timeout meeting a client's
disconnect — cut the close short: the provider's stream stayed open, and when the caller had
left at a chunk (its ``async with`` closing the stream) the request was never recorded.  A stub
litellm stands in for the provider, its stream's close taking a few milliseconds as an HTTP
close may.
"""
from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import pytest

import llmlab.live as live
from llmlab import BudgetPolicy, Deployment, FixedRouter, Gateway, RetryPolicy


class SlowClosingStream:
    """A provider stream of ``n`` one-word chunks, ``gap_s`` apart, whose close takes ``close_s``."""

    def __init__(self, n: int = 50, gap_s: float = 0.01, close_s: float = 0.05) -> None:
        self.left, self.gap_s, self.close_s = n, gap_s, close_s
        self.closed = False

    def __aiter__(self) -> "SlowClosingStream":
        return self

    async def __anext__(self) -> SimpleNamespace:
        if self.left == 0:
            raise StopAsyncIteration
        self.left -= 1
        await asyncio.sleep(self.gap_s)
        delta = SimpleNamespace(content="word ", tool_calls=None)
        return SimpleNamespace(choices=[SimpleNamespace(index=0, delta=delta, finish_reason=None)], usage=None)

    async def aclose(self) -> None:
        await asyncio.sleep(self.close_s)
        self.closed = True


@pytest.fixture
def streams(monkeypatch):
    made: list[SlowClosingStream] = []

    async def acompletion(**kwargs):
        made.append(SlowClosingStream())
        return made[-1]

    monkeypatch.setattr(live, "_LITELLM", SimpleNamespace(acompletion=acompletion))
    return made


def gateway() -> Gateway:
    dep = Deployment("m", "gpt-4o-mini", {"api_key": "sk-test"}, timeout_s=5.0)
    return Gateway([dep], router=FixedRouter("m"), fallbacks={}, cache=False, input_guards=(),
                   retry=RetryPolicy(max_retries=0), budget=BudgetPolicy(caps={"acme": 5.0}))


async def cancel_twice(task: asyncio.Task, closing: SlowClosingStream) -> None:
    """Cancel ``task`` now, and again while ``closing`` is being closed."""
    task.cancel()
    await asyncio.sleep(closing.close_s / 2)
    assert not task.done(), "the stream's close did not wait: nothing to cancel twice"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.parametrize("where", ["at a chunk", "mid-read"])
def test_a_second_cancel_during_the_close_neither_loses_the_record_nor_leaves_the_stream_open(streams, where):
    gw = gateway()
    got: list[str] = []

    async def consume() -> None:
        async with gw.astream("tell me", tenant="acme") as response:
            async for chunk in response:
                got.append(chunk)
                if where == "at a chunk" and len(got) == 3:
                    await asyncio.sleep(30)  # the caller's own await (sending to its client), cancelled there

    async def main() -> None:
        task = asyncio.create_task(consume())
        while len(got) < 3:
            await asyncio.sleep(0.001)
        if where == "mid-read":
            await asyncio.sleep(0.005)  # inside the provider's wait for its next chunk
        await cancel_twice(task, streams[0])
        await asyncio.sleep(0.1)  # anything left running would finish here

    asyncio.run(main())
    records = list(gw.ledger)
    assert [o.error.code for o in records] == ["client_disconnected"]
    assert streams[0].closed  # the close was seen through: the connection went back to the pool
    assert records[0].attempts[-1].completion_tokens >= 3  # the streamed words are charged
    now = time.time()
    assert gw.budgets.reserved("acme", now) == 0.0
    assert gw.budgets.spent("acme", now) == pytest.approx(records[0].cost_usd) and records[0].cost_usd > 0

