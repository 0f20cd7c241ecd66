"""Admission control for the async API: how many requests a gateway works on at once.

litellm does a few milliseconds of its own work per call on the event loop.  Started all at
once, a burst of ≈ 1,500 ``acomplete`` calls held one process's loop for up to 9 s: calls timed
out waiting for the loop, not for the provider, and those timeouts opened a healthy
deployment's breaker.  An :class:`Admission` is a bulkhead in front of the model path: at most
``max_in_flight`` requests are admitted, up to ``max_waiting`` more wait their turn in arrival
order for at most ``max_wait_s``, and the rest are refused at once with
:class:`~llmlab.errors.Overloaded` — recorded like any refusal, before any provider call,
budget hold or breaker count, so an overload sheds load instead of spreading failure.

The pipeline asks for admission with the :data:`~llmlab.effects.ADMIT` effect (answered by the
run loops, never by a driver) after the input guards, the rate limiter and the caches: a cache
hit never queues (it costs microseconds and no provider), and a request waits before it holds
any budget.  The wait counts in the request's latency.  Only the async run loops wait; a
synchronous caller is bounded by its own threads.

One admission may serve requests from several event loops (threads each running their own): the
counts are kept under a thread lock and a waiter is woken on its own loop.
"""
from __future__ import annotations

import asyncio
import collections
import threading

from ._validate import integer, number
from .errors import Overloaded
from .provider_errors import MAX_WAIT_S

#: bounds of the settings (a typo of a few zeros is a ConfigError, not a silent non-limit)
MAX_IN_FLIGHT = 1_000_000
MAX_WAITING = 10_000_000


class _Waiter:
    """One request waiting for a place; ``granted`` is set (under the admission's lock) when a
    leaving request hands it its place, so a wait that times out at that moment keeps it."""

    __slots__ = ("loop", "future", "granted")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.future: asyncio.Future[None] = loop.create_future()
        self.granted = False


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Admission:
    """At most ``max_in_flight`` async requests on the model path at once; ``max_waiting`` more
    wait up to ``max_wait_s`` seconds for a place (first come, first served), and the rest are
    refused with :class:`~llmlab.errors.Overloaded` (``retry_after_s`` = ``retry_after_s``).

    ``max_waiting=0`` or ``max_wait_s=0`` sheds at once whatever finds every place taken.
    Pass it as ``Gateway(admission=Admission(…))``; read :attr:`in_flight`, :attr:`waiting`,
    :attr:`peak_in_flight` and :attr:`refused` for a dashboard.
    """

    def __init__(self, max_in_flight: int = 256, *, max_waiting: int = 1_024, max_wait_s: float = 5.0,
                 retry_after_s: float = 1.0) -> None:
        self.max_in_flight = integer("admission.max_in_flight", max_in_flight, lo=1, hi=MAX_IN_FLIGHT)
        self.max_waiting = integer("admission.max_waiting", max_waiting, lo=0, hi=MAX_WAITING)
        # at most a day, as every live wait (llmlab.provider_errors.MAX_WAIT_S)
        self.max_wait_s: float = number("admission.max_wait_s", max_wait_s, lo=0, hi=MAX_WAIT_S)  # type: ignore[assignment]
        self.retry_after_s: float = number("admission.retry_after_s", retry_after_s, lo=0, hi=MAX_WAIT_S)  # type: ignore[assignment]
        self._lock = threading.Lock()
        self._in_flight = 0
        self._waiters: collections.deque[_Waiter] = collections.deque()
        #: requests refused so far (queue full or waited too long)
        self.refused = 0
        #: the most requests admitted at once so far
        self.peak_in_flight = 0

    def __repr__(self) -> str:
        return (f"Admission(max_in_flight={self.max_in_flight}, max_waiting={self.max_waiting}, "
                f"max_wait_s={self.max_wait_s:g}, in_flight={self._in_flight}, waiting={len(self._waiters)})")

    @property
    def in_flight(self) -> int:
        """Requests admitted and not yet finished."""
        return self._in_flight

    @property
    def waiting(self) -> int:
        """Requests waiting for a place."""
        return len(self._waiters)

    async def enter(self) -> Overloaded | None:
        """Wait for a place: None once admitted (the caller must :meth:`leave`), else the refusal.
        A cancel while waiting gives the place up and goes through.

        Not ``asyncio.wait_for``: on Python 3.11 it swallows a cancel that arrives as the wait ends,
        admitting a request whose caller had left."""
        with self._lock:
            if self._in_flight < self.max_in_flight and not self._waiters:
                self._admit()
                return None
            if len(self._waiters) >= self.max_waiting or self.max_wait_s == 0:
                return self._refuse("all places taken and no room to wait")
            loop = asyncio.get_running_loop()
            waiter = _Waiter(loop)
            self._waiters.append(waiter)
        timer = loop.call_later(self.max_wait_s, self._expire, waiter)
        try:
            await waiter.future
        except asyncio.CancelledError:
            with self._lock:
                if not waiter.granted:  # still in the queue (unless its time ran out just before): leave it
                    self._drop(waiter)
            if waiter.granted:  # handed a place just as the caller left: pass it on
                self.leave()
            raise
        finally:
            timer.cancel()
        with self._lock:
            if waiter.granted:
                return None
            return self._refuse(f"waited {self.max_wait_s:g} s for a place")

    def _expire(self, waiter: _Waiter) -> None:
        """The waiter's time is up (on its own loop): out of the queue, unless a place reached it first."""
        with self._lock:
            if waiter.granted:
                return
            self._drop(waiter)
        _wake(waiter.future)

    def _drop(self, waiter: _Waiter) -> None:
        """Out of the queue, if still there (a cancel and the end of its wait may both come)."""
        try:
            self._waiters.remove(waiter)
        except ValueError:
            pass

    def leave(self) -> None:
        """An admitted request finished: its place goes to the longest waiter, else is freed."""
        with self._lock:
            while self._waiters:
                waiter = self._waiters.popleft()
                try:
                    waiter.loop.call_soon_threadsafe(_wake, waiter.future)
                except RuntimeError:  # its loop is closed: nobody is left to take the place
                    continue
                waiter.granted = True
                return
            self._in_flight -= 1

    def _admit(self) -> None:
        self._in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self._in_flight)

    def _refuse(self, why: str) -> Overloaded:
        self.refused += 1
        return Overloaded(f"{why} ({self._in_flight} requests in flight, at most {self.max_in_flight}; "
                          f"{len(self._waiters)} waiting, at most {self.max_waiting})", retry_after_s=self.retry_after_s)


class Ticket:
    """One async request's pass through an :class:`Admission`: its place, once entered, is given
    back exactly once when the request is over."""

    __slots__ = ("admission", "holds")

    def __init__(self, admission: Admission) -> None:
        self.admission = admission
        self.holds = False

    async def enter(self) -> Overloaded | None:
        """:meth:`Admission.enter` for this request: None once admitted, else the refusal."""
        refusal = await self.admission.enter()
        self.holds = refusal is None
        return refusal

    def leave(self) -> None:
        """Idempotent: the request's place, if it had one, is given back once."""
        if self.holds:
            self.holds = False
            self.admission.leave()
