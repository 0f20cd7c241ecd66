"""A tenant-namespaced key/value store with TTL and LRU eviction.

TTL is counted from the write: a hit never extends an entry's life (some gateways do, and a
popular wrong answer then lives forever).  Expired entries are not served as hits but stay
until evicted, so that the fallback chain's *last resort* may still serve a stale answer when
every provider is down.  All times come from the caller (``now``): the store never reads a
clock, so the simulator and tests control time.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from .. import _validate as v

T = TypeVar("T")


@dataclass(slots=True)
class _Entry(Generic[T]):
    value: T
    written_at: float


@dataclass(frozen=True, slots=True)
class StoreHit(Generic[T]):
    value: T
    age_s: float
    stale: bool


class KeyValueStore(Protocol[T]):
    """What the pipeline needs from an exact-cache backend (in-memory or Redis)."""

    def get(self, namespace: str, key: str, now: float, *, allow_stale: bool = False) -> StoreHit[T] | None: ...

    # ``object``: the result is not used (RedisStore says whether Redis took the write; a ``None``
    # here made mypy refuse Gateway(cache_store=RedisStore(…)))
    def put(self, namespace: str, key: str, value: T, now: float) -> object: ...


class MemoryStore(Generic[T]):
    """In-process TTL + LRU store; one LRU across namespaces, keys never shared between them."""

    def __init__(self, capacity: int = 10_000, ttl_s: float = 3_600.0) -> None:
        self.capacity = v.integer("cache_capacity", capacity, lo=1)
        self.ttl_s = v.positive("cache_ttl_s", ttl_s)
        self._entries: OrderedDict[tuple[str, str], _Entry[T]] = OrderedDict()
        self.hits = 0
        self.misses = 0
        self.stale_served = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return (f"MemoryStore(entries={len(self)}, capacity={self.capacity}, ttl_s={self.ttl_s:g}, "
                f"hits={self.hits}, misses={self.misses})")

    def get(self, namespace: str, key: str, now: float, *, allow_stale: bool = False) -> StoreHit[T] | None:
        entry = self._entries.get((namespace, key))
        if entry is None:
            if not allow_stale:
                self.misses += 1
            return None
        age = now - entry.written_at
        stale = age >= self.ttl_s
        if stale and not allow_stale:
            self.misses += 1
            return None
        self._entries.move_to_end((namespace, key))  # recency only; written_at is untouched
        if stale:
            self.stale_served += 1
        elif not allow_stale:
            self.hits += 1
        return StoreHit(entry.value, age, stale)

    def put(self, namespace: str, key: str, value: T, now: float) -> None:
        k = (namespace, key)
        self._entries[k] = _Entry(value, now)
        self._entries.move_to_end(k)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)
            self.evictions += 1

    def clear(self, namespace: str | None = None) -> int:
        """Delete every entry (one tenant's with ``namespace``); returns how many, as
        :meth:`RedisStore.clear <llmlab.backends.redis_cache.RedisStore.clear>` does — a tenant's
        cached answers could be dropped (a data-deletion request, a bad answer) only in Redis."""
        doomed = [k for k in self._entries if namespace is None or k[0] == namespace]
        for k in doomed:
            del self._entries[k]
        return len(doomed)

    @property
    def stats(self) -> dict[str, float]:
        lookups = self.hits + self.misses
        return {"entries": len(self._entries), "hits": self.hits, "misses": self.misses,
                "hit_rate": self.hits / lookups if lookups else 0.0, "evictions": self.evictions,
                "stale_served": self.stale_served}
