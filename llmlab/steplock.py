"""The lock a gateway's stages run under, stepped aside from around user code.

Threads sharing one gateway (sync ``complete()`` from a thread pool, as a WSGI server calls it)
change the same in-memory state: budget reservations, rate buckets, caches, breakers, the
ledger.  The live drivers hold this lock while the pipeline generator runs between two effects
and never while an effect (a provider call, a sleep, an embedding) is performed.

User code called from a stage — guards, a router's ``decide``, a cascade's acceptance check, the
ledger's sink, log handlers — runs *outside* it (:meth:`StepLock.outside`): such code may block
on I/O, wait for another thread or event loop that serves requests through the same gateway, or
serve one itself.  Held across it, the lock serialised every request behind a slow guard and
deadlocked a guard that bridged to the application's event loop.

A network round trip made from a stage (a Redis command: a budget reservation, a cache read)
runs outside it too (:func:`outside_step_lock`, called by :class:`llmlab.backends.RedisLink`):
held across it, one process served at most one request per sum of its round trips, whatever
its threads (≈ 130 requests/s with 1 ms added to each command: benchmarks/redis_round_trips.py).
What such a backend keeps in process has locks of its own; the state a stage reads before the
round trip and uses after it is the request's own.
"""
from __future__ import annotations

import threading
from typing import Any, Callable, TypeVar

T = TypeVar("T")

#: per thread, the step locks it holds, innermost last (several only when a gateway's user code
#: serves a request through another gateway on the same thread)
_HELD = threading.local()


class StepLock:
    """Re-entrant per thread (a guard may serve a request through the same gateway on its own
    thread), with :meth:`outside` to run a callable with every level this thread holds let go."""

    __slots__ = ("_lock", "_local", "_used")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._local = threading.local()
        self._used = False  # never taken (the simulator's drivers do not): outside() is a plain call

    def __enter__(self) -> "StepLock":
        self._used = True
        local = self._local
        depth = getattr(local, "depth", 0)
        if depth == 0:
            self._lock.acquire()
            held = getattr(_HELD, "locks", None)
            if held is None:
                held = _HELD.locks = []
            held.append(self)
        local.depth = depth + 1
        return self

    def __exit__(self, *exc: Any) -> None:
        local = self._local
        local.depth -= 1
        if local.depth == 0:
            _HELD.locks.remove(self)
            self._lock.release()

    def held(self) -> bool:
        """Whether the calling thread holds the lock."""
        return self._used and getattr(self._local, "depth", 0) > 0

    def outside(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` with the lock let go if this thread holds it, taken back (at the
        same depth) afterwards."""
        if not self._used:
            return fn(*args, **kwargs)
        local = self._local
        depth = getattr(local, "depth", 0)
        if not depth:
            return fn(*args, **kwargs)
        local.depth = 0
        self._lock.release()
        try:
            return fn(*args, **kwargs)
        finally:
            self._lock.acquire()
            local.depth = depth


def outside_step_lock(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` with the step lock the calling thread holds let go (see :meth:`StepLock.outside`),
    for a call that waits on the network; a plain call on a thread that holds none (the
    simulator's, a background thread's, a caller's own)."""
    held = getattr(_HELD, "locks", None)
    if not held:
        return fn(*args)
    return held[-1].outside(fn, *args)
