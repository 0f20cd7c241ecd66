"""Deadlines for blocking reads: one shared watchdog thread that cuts what a read waits on.

A synchronous read of a provider's stream blocks in the socket, and the HTTP client's timeout
is on each wait for bytes: a provider that keeps the connection busy (SSE keep-alive comments,
Anthropic's pings) before its first token is never cut off.  Nothing on the reading thread can
end that wait — but another thread can end it by cutting the connection under it
(``socket.shutdown``: the blocked read wakes at once and sees the end of the stream).

One daemon thread keeps every such deadline in a heap, not a thread per call: a server streaming
to hundreds of threads has one watchdog.  A deadline is settled exactly once, under one lock:
either its reader meets it (:meth:`Deadline.met`, the first token came) or the watchdog cuts
(the ``cut`` callable).  A reader who sees its deadline cut reports a timeout even if a token
arrived in the same instant: the connection is gone either way.  The reader ends its deadline
(:meth:`Deadline.end`) when its call is over, so a finished call's entry neither stays behind
nor cuts a connection that went back to the pool.
"""
from __future__ import annotations

import functools
import heapq
import itertools
import logging
import os
import threading
import time
import weakref
from typing import Callable

log = logging.getLogger("llmlab.deadlines")

__all__ = ["CUT", "NOT_YET", "NEVER", "Deadline", "Watchdog", "WATCHDOG"]

#: what a ``cut`` callable reports: it cut the connection; there is nothing to cut yet (the
#: request is still being sent, ask again shortly); it cannot cut this kind of connection
CUT, NOT_YET, NEVER = "cut", "not yet", "never"

_ARMED, _MET, _EXPIRED, _CUT, _UNCUTTABLE, _ENDED = range(6)


class Deadline:
    """One read's deadline; made by :meth:`Watchdog.arm`."""

    __slots__ = ("_cut", "_state", "_watchdog", "when")

    def __init__(self, watchdog: Watchdog, when: float, cut: Callable[[], str]) -> None:
        self._watchdog = watchdog
        self.when = when
        self._cut: Callable[[], str] | None = cut
        self._state = _ARMED

    def met(self) -> bool:
        """The awaited token came: True if in time (the deadline is off), False if it had passed
        and the connection is cut or being cut (the reader reports a timeout).  A deadline that
        could not cut its connection lets a late token through: it was waited for already."""
        with self._watchdog._lock:
            if self._state == _ARMED:
                self._settle(_MET)
            return self._state in (_MET, _UNCUTTABLE, _ENDED)

    @property
    def cut(self) -> bool:
        """Whether the deadline passed and the watchdog cut the connection: what the read then
        raises, or its quiet end, is the deadline's doing.  Asked under the lock: the watchdog
        marks the deadline cut only once its cut returned, and the read the cut ended may ask
        before then — it read "not cut", and a late first token was recorded as a dropped
        connection, not the deadline's timeout."""
        with self._watchdog._lock:
            return self._state == _CUT

    def end(self) -> None:
        """The call is over (answered, failed or left): the deadline is removed, and it will not
        cut the connection, which may go back to the pool."""
        with self._watchdog._lock:
            if self._state in (_ARMED, _EXPIRED):
                self._settle(_ENDED)

    def _settle(self, state: int) -> None:
        """Leave the heap (lazily: counted, and dropped when due or when the heap is compacted)."""
        self._state = state
        self._cut = None  # let go of the stream it would cut
        self._watchdog._settled()


class Watchdog:
    """A heap of :class:`Deadline` served by one daemon thread, started on first use.

    ``retry_s``: how soon a ``cut`` that found nothing to cut yet is asked again."""

    def __init__(self, retry_s: float = 0.05, clock: Callable[[], float] = time.monotonic) -> None:
        self.retry_s = retry_s
        self.clock = clock
        self._reset()
        # the thread does not survive a fork, and its lock may be held there: the child starts afresh
        os.register_at_fork(after_in_child=functools.partial(_after_fork, weakref.ref(self)))

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._heap: list[tuple[float, int, Deadline]] = []
        self._stale = 0  # settled deadlines still in the heap
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None

    def arm(self, seconds: float, cut: Callable[[], str]) -> Deadline:
        """A deadline ``seconds`` from now that calls ``cut`` when it passes unmet.  ``cut`` runs on
        the watchdog's thread under its lock: it must be quick and must not block (no I/O beyond
        a socket shutdown) nor arm or end deadlines; it returns :data:`CUT`, :data:`NOT_YET` or
        :data:`NEVER`."""
        when = self.clock() + max(0.0, seconds)
        with self._lock:
            deadline = Deadline(self, when, cut)
            self._push(deadline)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="llmlab-deadlines", daemon=True)
                self._thread.start()
            elif self._heap[0][2] is deadline:
                self._wake.notify()
        return deadline

    def __len__(self) -> int:
        """Deadlines armed or waiting to cut, not yet ended."""
        with self._lock:
            return len(self._heap) - self._stale

    def _push(self, deadline: Deadline) -> None:
        heapq.heappush(self._heap, (deadline.when, next(self._seq), deadline))

    def _settled(self) -> None:
        """One more settled deadline in the heap; compacted when they are most of it, so a
        server's stream of answered calls (each deadline far ahead) does not pile up."""
        self._stale += 1
        if self._stale > 64 and self._stale * 2 > len(self._heap):
            self._heap = [item for item in self._heap if item[2]._state in (_ARMED, _EXPIRED)]
            heapq.heapify(self._heap)
            self._stale = 0

    def _run(self) -> None:
        with self._lock:
            while True:
                while self._heap and self._heap[0][2]._state not in (_ARMED, _EXPIRED):
                    heapq.heappop(self._heap)
                    self._stale -= 1
                if not self._heap:
                    self._wake.wait()
                    continue
                wait = self._heap[0][0] - self.clock()
                if wait > 0:
                    self._wake.wait(wait)
                    continue
                self._fire(heapq.heappop(self._heap)[2])

    def _fire(self, deadline: Deadline) -> None:
        """Cut ``deadline``'s connection (under the lock: a reader cannot meet or end it meanwhile)."""
        deadline._state = _EXPIRED
        try:
            outcome = deadline._cut() if deadline._cut is not None else NEVER
        except Exception:  # a failing cut must not stop the watchdog serving every other deadline
            log.warning("a deadline could not cut its connection", exc_info=True)
            outcome = NEVER
        if outcome == NOT_YET:
            deadline.when = self.clock() + self.retry_s
            self._push(deadline)
            return
        deadline._state = _CUT if outcome == CUT else _UNCUTTABLE
        deadline._cut = None


def _after_fork(ref: weakref.ReferenceType[Watchdog]) -> None:
    watchdog = ref()
    if watchdog is not None:
        watchdog._reset()


#: the process's watchdog (its thread starts with the first deadline armed)
WATCHDOG = Watchdog()
