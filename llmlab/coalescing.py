"""Request coalescing ("single flight"): identical requests in flight at once make one provider call.

The caches answer a question asked *after* its answer was stored.  A burst of one new question —
a status-page link posted in a support channel, a product launch, a retry storm — arrives before
any answer exists: every request misses and every one goes to the provider (300 at once: 300
calls, each billed), the cache-stampede problem.  With ``Gateway(coalesce=Coalesce())`` the
first such request *leads*: it goes on to the model path as usual.  An identical request that
misses the caches while the leader is still in flight *follows*: it waits (the
:class:`~llmlab.effects.JoinFlight` effect) until the leader lands, up to ``max_wait_s``, then
looks in the caches again, where the leader's answer now is.  The follower's outcome is that
cache hit, free, with ``Outcome.coalesced_with`` naming the leader's request id.  The flight
carries the answer it put in the caches too: when the caches lost it — a Redis that went away
mid-burst drops the write, a full in-memory cache evicts it before the followers wake — the
followers are answered from the flight, not sent to the provider one each.

Identical means what the exact cache means by it: the same tenant (no follower is ever answered
with another tenant's answer) and the same cache key (the masked messages and the parameters the
key mode keeps).  Only requests that use the caches take part, and only those that could find an
answer there afterwards: an exact key, or an embedding for the semantic cache (with a semantic
cache alone, a turn with no text or an embedder that failed leaves neither).

When the leader leaves no answer in the caches:

* its caller left, every provider failed (also when a stale or similar last-resort answer was
  served instead), no deployment took the gateway's key (the keys were refused, not the
  request), or the admission refused it a place — a failure that says nothing of the
  followers' fate: a follower boards again — the first to do so leads the next flight and the
  others follow it — so an outage or a cancelled leader costs one call at a time, not one per
  request; a follower still waiting at ``max_wait_s`` after it first boarded goes on alone;
* anything else — an answer that is never cached (a tool call, an empty answer), a rule's
  answer, an answer the output guards blocked, a provider's refusal of the request (a 400), the
  tenant's budget: each follower goes on alone at once.  The same request would fare the same,
  and waiting for one another would only queue them.

A leader that has not landed when a follower's ``max_wait_s`` runs out — a hung provider, a
stream its caller holds unread, a task on an event loop that was closed — hands its flight to
that follower, which calls on its own: the identical requests after it wait for that call, not
``max_wait_s`` each for a landing that may never come.

Streamed requests take no part unless ``streams=True``: a follower gets the leader's answer
whole when it lands, so its first token comes only then — fine for a batch job, not for a chat
whose first-token time is its objective.  Coalescing is per gateway process (the caches may be
shared through Redis; the flights are not), and the simulator runs the same code: set
``gateway.coalesce`` in a scenario to see what it saves on bursty traffic.
"""
from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from typing import Callable

from . import _validate as v
from .provider_errors import MAX_WAIT_S


@dataclass(frozen=True, slots=True)
class Coalesce:
    """``Gateway(coalesce=Coalesce(max_wait_s=30))``: an identical request already in flight
    answers this one too (see :mod:`llmlab.coalescing`).  ``max_wait_s`` is the longest a
    request waits for others' flights before it goes on alone; ``streams`` lets streamed requests
    take part (their first token then waits for the leader's whole answer)."""

    max_wait_s: float = 30.0
    streams: bool = False

    def __post_init__(self) -> None:
        v.number("coalesce.max_wait_s", self.max_wait_s, lo=0.0, hi=MAX_WAIT_S, lo_open=True)
        v.flag("coalesce.streams", self.streams)


class Flight:
    """One leading request on the model path, and the wake-ups of the requests that follow it.

    Followers register their wake-up from the run loop or driver that performs their wait, outside
    the gateway's step lock, while the leader lands inside a pipeline step on another thread
    perhaps: the flight's own lock orders the two, so no wake-up is registered after the landing
    and lost."""

    __slots__ = ("leader", "slot", "thread", "landed", "handed_on", "answer", "_wakers", "_lock")

    def __init__(self, leader: str, slot: tuple[str, str]) -> None:
        self.leader = leader  #: the leading request's id
        self.slot = slot  #: (tenant, cache key): what its followers share with it
        #: the thread the leader boarded on: a follower on it cannot wait for it (:meth:`wait`)
        self.thread = threading.get_ident()
        self.landed = False
        #: what the leader put in the caches (a :class:`~llmlab.effects.CachedAnswer`), None when it
        #: cached nothing: the followers' answer even when the caches lost it (a write Redis dropped)
        self.answer: object = None
        #: the leader failed in a way that says nothing of its followers' fate (its caller left, every
        #: provider failed, no admission): a follower that finds no answer boards again
        self.handed_on = False
        self._wakers: list[Callable[[], object]] = []
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Flight(leader={self.leader!r}, landed={self.landed}, followers={len(self._wakers)})"

    def on_landing(self, wake: Callable[[], object]) -> bool:
        """Call ``wake`` when the flight lands; False (``wake`` not kept) when it has landed already."""
        with self._lock:
            if self.landed:
                return False
            self._wakers.append(wake)
            return True

    def land(self, handed_on: bool) -> None:
        """The leader is done: wake every follower (in the order they boarded)."""
        with self._lock:
            self.landed, self.handed_on = True, handed_on
            wakers, self._wakers = self._wakers, []
        for wake in wakers:
            wake()

    def wait(self, timeout_s: float) -> bool:
        """Block this thread until the flight lands (True) or ``timeout_s`` passes (False).

        Not on a thread whose event loop is running (a synchronous ``complete()`` called from a
        coroutine, or from a notebook cell, where the kernel's loop runs): blocking it stalls the
        loop, and with it a leader served there (``acomplete``, an awaited cell), which then cannot
        land before the timeout — every request on that loop frozen for ``max_wait_s``.  False at
        once instead: the request calls on its own, as after a wait that ran out.  Nor on the
        thread the leader boarded on, while it is in flight: the leader is suspended there — a
        synchronous stream read halfway, or a request made from inside the leader's own (a
        guard) — and only this thread can move it on, so waiting would always run out.  (A
        server whose thread pool reads one stream's chunks on different threads may so send a
        follower on alone that could have waited: one call more, never a stall.)"""
        if _loop_running() or self.thread == threading.get_ident():
            return self.landed
        landed = threading.Event()
        if not self.on_landing(landed.set):
            return True
        return landed.wait(timeout_s)

    async def await_landing(self, timeout_s: float) -> bool:
        """Wait on this event loop until the flight lands (True) or ``timeout_s`` passes (False).
        A cancel goes through; the wake-up left behind finds its future done and does nothing."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()

        def wake() -> None:  # on the leader's thread, maybe another loop's
            try:
                loop.call_soon_threadsafe(_settle, future, True)
            except RuntimeError:  # this loop is closed: nobody is left waiting
                pass

        if not self.on_landing(wake):
            return True
        timer = loop.call_later(timeout_s, _settle, future, False)
        try:
            return await future
        finally:
            timer.cancel()


def _loop_running() -> bool:
    """Whether an event loop is running on this thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _settle(future: asyncio.Future[bool], landed: bool) -> None:
    if not future.done():
        future.set_result(landed)


class Flights:
    """The flights of one gateway: cache key → the request leading it.  Changed only inside
    pipeline steps (under the step lock); the counters are for a dashboard or a test."""

    def __init__(self, policy: Coalesce) -> None:
        self.policy = policy
        self._flights: dict[tuple[str, str], Flight] = {}
        #: flights led so far
        self.led = 0
        #: times a request waited for another's flight
        self.joined = 0
        #: requests answered by another's flight (from the cache it filled)
        self.served = 0

    def __repr__(self) -> str:
        return (f"Flights(max_wait_s={self.policy.max_wait_s:g}, in_flight={len(self._flights)}, led={self.led}, "
                f"joined={self.joined}, served={self.served})")

    @property
    def in_flight(self) -> int:
        """Flights whose leader has not landed yet."""
        return len(self._flights)

    def board(self, tenant: str, key: str, request_id: str) -> tuple[Flight, bool]:
        """The flight for ``(tenant, key)`` and whether this request leads it (a new flight) or
        follows the one already in the air."""
        flight = self._flights.get((tenant, key))
        if flight is not None:
            self.joined += 1
            return flight, False
        return self._lead((tenant, key), request_id), True

    def take_over(self, overstayed: Flight, request_id: str) -> Flight | None:
        """A follower whose wait for ``overstayed`` ran out calls on its own: it leads the flight of
        the same slot from now on, so that the identical requests after it wait for its call, not
        for a leader that may never land (a hung provider, a stream its caller holds unread, a task
        on a loop that was closed).  None, and nothing changed, when another follower has taken
        over already; ``overstayed`` still wakes its own followers when it lands."""
        current = self._flights.get(overstayed.slot)
        if current is not None and current is not overstayed:
            return None
        return self._lead(overstayed.slot, request_id)

    def _lead(self, slot: tuple[str, str], request_id: str) -> Flight:
        flight = self._flights[slot] = Flight(request_id, slot)
        self.led += 1
        return flight

    def land(self, flight: Flight, handed_on: bool) -> None:
        """The leader of ``flight`` is done; a later identical request leads a new flight."""
        if self._flights.get(flight.slot) is flight:
            del self._flights[flight.slot]
        flight.land(handed_on)
