"""A brute-force reference for the semantic cache, written from its documentation alone.

:class:`Reference` keeps every entry as ``(namespace, text) → (unit vector, value, written_at)``
and one LRU across namespaces, and answers a lookup by computing the cosine of the query with
*every* live entry of the namespace in float64: nothing is indexed, nothing is cached.  What
``SemanticCache`` documents, the reference does:

* a hit needs the same namespace, cosine ≥ the threshold, an entry younger than ``ttl_s``
  (from its write; a hit never extends it) and the guard's consent, among the ``candidates``
  nearest entries, best first (a vetoed or expired nearest neighbour does not hide a second);
* the last resort: its own threshold, expired entries allowed, the guard still on;
* a store (new text or replaced value) and a hit make the entry the most recently used; one LRU
  across namespaces evicts beyond ``capacity``; an all-zero vector is never stored;
* ``purge_expired`` drops entries at least ``ttl_s + keep_stale_s`` old; ``clear`` a namespace.

Similarities within :data:`EPS` of the threshold, or of each other, may be decided either way
by float32 rounding: :meth:`Reference.acceptable` returns every answer that rounding allows,
and whether a miss is allowed, rather than one answer.
"""
from __future__ import annotations

import zlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from llmlab.cache.guard import GuardDecision

#: float32 similarities differ from float64 ones by a few ulps: closer than this is a tie
EPS = 1e-5


class PairVeto:
    """A guard that vetoes a pseudo-random third of the (query, candidate) pairs, the same ones
    in every process (CRC-32, not ``hash``): it exercises the cache's walk past vetoed
    neighbours without depending on what the real guard's vocabulary says about a text."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def check(self, query: str, candidate: str) -> GuardDecision:
        ok = zlib.crc32(f"{self.seed}|{query}|{candidate}".encode()) % 3 != 0
        return GuardDecision(ok, "ok" if ok else "pair vetoed")


def unit64(vector: Any) -> np.ndarray | None:
    v = np.asarray(vector, dtype=np.float64).reshape(-1)
    norm = float(np.linalg.norm(v))
    return None if norm == 0.0 or not np.isfinite(norm) else v / norm


@dataclass
class RefEntry:
    vector: np.ndarray
    value: object
    written_at: float


@dataclass
class Verdict:
    """What the reference allows a lookup to return."""

    hits: dict[str, RefEntry]   # text → entry: any of them is a correct hit
    miss_ok: bool               # whether None is correct too
    best: float | None          # the best similarity any certain hit has (for recall checks)
    eligible: frozenset[str]    # fresh (or last resort), guard-approved, at the threshold: a valid
    #                             hit for an approximate index, which may not rank it right


class Reference:
    def __init__(self, *, ttl_s: float, capacity: int, candidates: int, threshold: float,
                 last_resort_threshold: float, guard: Callable[[str, str], bool] | None) -> None:
        self.ttl_s = ttl_s
        self.capacity = capacity
        self.candidates = candidates
        self.threshold = threshold
        self.last_resort_threshold = last_resort_threshold
        self.guard = guard
        self.entries: dict[str, dict[str, RefEntry]] = {}
        self.lru: OrderedDict[tuple[str, str], None] = OrderedDict()

    # ------------------------------------------------------------------ writes
    def store(self, ns: str, text: str, vector: Any, value: object, now: float) -> bool:
        u = unit64(vector)
        if u is None:
            return False
        space = self.entries.setdefault(ns, {})
        if text in space:  # overwritten: the value and write time (the vector is the text's)
            space[text] = RefEntry(space[text].vector, value, now)
            self.lru.move_to_end((ns, text))
            return True
        while len(self.lru) >= self.capacity:
            self._drop(*self.lru.popitem(last=False)[0])
        self.entries.setdefault(ns, {})[text] = RefEntry(u, value, now)
        self.lru[(ns, text)] = None
        return True

    def _drop(self, ns: str, text: str) -> None:
        del self.entries[ns][text]
        self.lru.pop((ns, text), None)
        if not self.entries[ns]:
            del self.entries[ns]

    def purge_expired(self, now: float, keep_stale_s: float) -> int:
        doomed = [(ns, t) for ns, space in self.entries.items() for t, e in space.items()
                  if now - e.written_at >= self.ttl_s + keep_stale_s]
        for ns, t in doomed:
            self._drop(ns, t)
        return len(doomed)

    def clear(self, ns: str | None) -> None:
        for name in [ns] if ns is not None else list(self.entries):
            for t in list(self.entries.get(name, {})):
                self._drop(name, t)

    def touch(self, ns: str, text: str) -> None:
        self.lru.move_to_end((ns, text))

    # ------------------------------------------------------------------ reads
    def acceptable(self, ns: str, text: str, vector: Any, now: float, *, threshold: float | None = None,
                   last_resort: bool = False) -> Verdict:
        """Every hit a correct cache may return for this lookup, and whether a miss is correct."""
        thr = self.last_resort_threshold if last_resort else (self.threshold if threshold is None else threshold)
        q = unit64(vector)
        space = self.entries.get(ns, {})
        if q is None or not space:
            return Verdict({}, True, None, frozenset())
        sims = {t: float(e.vector @ q) for t, e in space.items()}
        values = list(sims.values())
        certain: dict[str, float] = {}
        possible: dict[str, float] = {}
        eligible: set[str] = set()
        for t, s in sims.items():
            e = space[t]
            fresh = now - e.written_at < self.ttl_s
            if not (fresh or last_resort):
                continue
            if self.guard is not None and not self.guard(text, t):
                continue
            strictly_above = sum(x > s + EPS for x in values)   # surely ranked before it
            tied_or_above = sum(x >= s - EPS for x in values)   # perhaps ranked before it (it included)
            if s >= thr - EPS:
                eligible.add(t)
            if s >= thr - EPS and strictly_above < self.candidates:
                possible[t] = s
                if s >= thr + EPS and tied_or_above <= self.candidates:
                    certain[t] = s
        best = max(certain.values()) if certain else None
        hits = {t: space[t] for t, s in possible.items() if best is None or s >= best - 2 * EPS}
        return Verdict(hits, not certain, best, frozenset(eligible))

    def similarity(self, ns: str, text: str, vector: Any) -> float:
        q = unit64(vector)
        return float(self.entries[ns][text].vector @ q)

    def texts(self, ns: str) -> list[str]:
        """A namespace's texts, least recently used first (as ``SemanticCache.entries``)."""
        return [t for name, t in self.lru if name == ns]
