"""Hedged calls raced on the event loop, for :class:`~llmlab.live.LiteLLMDriver` (:mod:`llmlab.hedging`).

The first call goes out at once; if it has not started answering after ``after_s`` — its first
token when streamed, its whole answer otherwise — the second goes out too.  The first to start
answering wins: the other is cancelled at once (its task, and with it its HTTP request or
stream, so its connection goes back to the pool) and billed what
:func:`~llmlab.hedging.lost` says.  A call that fails leaves the race to the other.

A caller who cancels, or closes a streamed race, cancels both calls and waits until they are
closed, a second cancel meanwhile included (:mod:`llmlab.asyncwait`).  A cancel that comes once
the race is decided still bills both calls: a streamed race yields its decision before closing
the loser (:class:`~llmlab.effects.RaceDecided`), and an unstreamed one raises the cancel with
its results (``raced``), which the run loop records as the caller's leaving.  The synchronous
API sends no hedge: a blocked call on a thread cannot be cancelled when the other wins.
"""
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, AsyncIterator

from .asyncwait import finish, wait_out
from .effects import Call, CallError, CallResult, RaceDecided, RaceResult
from .fallback import counted_prompt
from .hedging import lost, prompt_only

if TYPE_CHECKING:
    from .effects import Race
    from .live import LiteLLMDriver


async def arace(driver: "LiteLLMDriver", race: "Race") -> RaceResult:
    """Race two non-streamed calls (see the module's docstring)."""
    started = [driver.clock()]
    tasks = [asyncio.ensure_future(driver.aperform(race.first))]
    calls = (race.first, race.second)
    try:
        await asyncio.wait(tasks, timeout=race.after_s)
        if tasks[0].done() or not race.second_due():  # answered or failed before the hedge was due, or none
            return RaceResult(await tasks[0])
        started.append(driver.clock())
        tasks.append(asyncio.ensure_future(driver.aperform(race.second)))
        winner = None
        while winner is None:
            await asyncio.wait([t for t in tasks if not t.done()], return_when=asyncio.FIRST_COMPLETED)
            winner = next((k for k, t in enumerate(tasks) if t.done() and t.result().ok), None)
            if winner is None and all(t.done() for t in tasks):
                return RaceResult(tasks[0].result(), tasks[1].result())
        results: list[CallResult | CallError] = []
        cancelled = False
        for k, task in enumerate(tasks):
            if k == winner or (task.done() and not task.result().ok):  # the answer, or a failure of its own
                results.append(task.result())
            elif task.done():  # answered in the same moment: billed in full, not served
                results.append(lost(calls[winner].deployment, task.result()))
            else:
                task.cancel()
                cancelled = await wait_out(task)
                part = prompt_only(counted_prompt(calls[k]), driver.clock() - started[k])
                results.append(lost(calls[winner].deployment, part))
        if cancelled:  # the caller's cancel came during the loser's: both calls were billed all the same
            error = asyncio.CancelledError()
            error.raced = RaceResult(*results)  # type: ignore[attr-defined]  # read by the run loop
            raise error
        return RaceResult(*results)
    except BaseException:  # the caller cancelled: neither call goes on without it
        for task in tasks:
            task.cancel()
        for task in tasks:
            await wait_out(task)
        raise


class _Contender:
    """One streamed call of a race: its stream, read in a task of its own up to its first token."""

    def __init__(self, driver: "LiteLLMDriver", call: Call) -> None:
        self.call = call
        self.started = driver.clock()
        self.stream = driver.astream_call(call)
        self.state: Any = None  # the driver's _StreamState, yielded first
        self.text: list[str] = []  # what it streamed before the race was decided
        self.result: CallResult | CallError | None = None  # its end, when it ended before
        self.task = asyncio.ensure_future(self._until_answering())

    async def _until_answering(self) -> None:
        from .live import _StreamState

        async for item in self.stream:  # left suspended, not closed, when the first token comes
            if isinstance(item, _StreamState):
                self.state = item
                if item.answering():  # a tool call's or thinking token: no text yet
                    return
            elif isinstance(item, str):
                self.text.append(item)
                return
            else:  # its end: read on, so the stream returns and closes its response (and connection)
                self.result = item  # now — stopped at its error, it held them until garbage collection

    @property
    def answering(self) -> bool:
        """Started answering (a first token), or ended with an answer."""
        return self.task.done() and (self.result is None or self.result.ok)

    @property
    def out(self) -> bool:
        """Ended with a failure: the race is the other's."""
        return self.task.done() and self.result is not None and not self.result.ok

    def bill(self, now: float) -> CallResult:
        """What its provider bills for it if cancelled now: its prompt (as reported, else counted)
        and what it streamed."""
        if self.state is not None:
            return self.state.part(now - self.started)
        return prompt_only(counted_prompt(self.call), now - self.started)

    async def close(self) -> bool:
        """Cancel its read and close its stream (and connection); True when a cancel of the
        caller's arrived meanwhile."""
        self.task.cancel()
        cancelled = await wait_out(self.task)
        try:
            await finish(self.stream.aclose())
        except asyncio.CancelledError:
            cancelled = True
        return cancelled


async def astream_race(driver: "LiteLLMDriver", race: "Race") -> AsyncIterator[Any]:
    """Race two streamed calls; yield the :class:`~llmlab.effects.RaceDecided` when both were sent,
    the winner's stream as ``astream_call`` yields one (its state, its text), and last a
    :class:`~llmlab.effects.RaceResult` (see the module's docstring)."""
    contenders = [_Contender(driver, race.first)]
    try:
        await asyncio.wait([contenders[0].task], timeout=race.after_s)
        if not contenders[0].task.done() and race.second_due():
            contenders.append(_Contender(driver, race.second))
        # (the first alone, when no hedge went out: to its first token)
        while not any(c.answering for c in contenders) and not all(c.out for c in contenders):
            await asyncio.wait([c.task for c in contenders if not c.task.done()], return_when=asyncio.FIRST_COMPLETED)
        winner = next((c for c in contenders if c.answering or len(contenders) == 1), None)
        results: dict[int, CallResult | CallError] = {}
        for k, c in enumerate(contenders):
            if c is not winner:  # a failure of its own, or cancelled now: billed its prompt and what it streamed
                results[k] = c.result if c.out else lost(winner.call.deployment, c.bill(driver.clock()))
        if winner is not None:
            k = contenders.index(winner)
            # before the loser's close, which a caller's cancel does not cut short but follows: a
            # caller who leaves from then on is billed the loser, and the winner from its state
            if len(contenders) == 2:
                yield RaceDecided(k, results[1 - k])
            if winner.state is not None:
                yield winner.state
        cancelled = False
        for c in contenders:
            if c is not winner and not c.out:
                cancelled = await c.close() or cancelled
        if cancelled:
            raise asyncio.CancelledError()
        if winner is not None:
            for piece in winner.text:
                yield piece
            result = winner.result
            if result is None:
                async for item in winner.stream:
                    if isinstance(item, (CallResult, CallError)):
                        result = item
                    else:
                        yield item
            results[k] = result
        yield RaceResult(results[0], results.get(1))
    except BaseException:  # the caller left or cancelled: neither stream goes on without it
        for c in contenders:
            await c.close()
        raise
