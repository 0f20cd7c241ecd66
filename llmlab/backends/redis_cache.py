"""The exact cache in Redis: same contract as :class:`llmlab.cache.store.MemoryStore`.

Key layout: ``{prefix}:cache:{tenant}:{key}`` (tenant and key percent-encoded, so a tenant
named ``a:b`` can never collide with tenant ``a``), on one Redis and on a Redis Cluster alike:
every command touches one key, so no hash tag is needed, and a tenant's entries spread over
the cluster's masters key by key instead of filling the one node its tag would pick.  The
value is versioned JSON (:mod:`llmlab.backends.codec`) carrying ``written_at``, the caller's
clock at the write.

* Fresh: ``now - written_at < ttl_s``.  A hit never extends an entry: ``GET`` leaves the
  Redis expiry alone, and freshness is judged from ``written_at``.
* Stale: kept in Redis for ``stale_grace_s`` more (Redis expiry ``ttl_s + stale_grace_s``
  from the write), readable only with ``allow_stale=True`` — the fallback chain's last resort.
* Capacity: entries expire by their TTL; there is no per-process LRU.  With ``maxmemory``
  set, use ``maxmemory-policy volatile-lru`` (entries have a TTL and are evicted; the budgets
  of the month being counted have none and are not) or ``noeviction`` (a full Redis drops
  writes here, logged); never ``allkeys-*`` (see :mod:`llmlab.backends`).

When Redis is unreachable ``get`` is a miss and ``put`` is dropped with a rate-limited
warning; requests are still answered, and the link reconnects by itself (:mod:`.redis_link`).
"""
from __future__ import annotations

import logging
from typing import Any

from .. import _validate as v
from ..cache.store import StoreHit
from .codec import CodecError, decode_entry, encode_entry
from .redis_link import MAX_TTL_S, RedisLink, RedisUnavailable, key_part

log = logging.getLogger("llmlab.backends")


class RedisStore:
    """Tenant-namespaced exact cache in Redis (implements ``KeyValueStore``)."""

    #: its calls wait on the network: a gateway using it runs async requests' steps on threads
    blocking_io = True

    def __init__(self, link: RedisLink, *, prefix: str = "llmlab", ttl_s: float = 3_600.0,
                 stale_grace_s: float = 86_400.0, answers_only: bool = False) -> None:
        self.link = link
        self.answers_only = answers_only  # the gateway's cache: any other value is foreign, a miss
        self.prefix = prefix
        self.ttl_s = v.number("cache_ttl_s", ttl_s, lo=0.0, lo_open=True, hi=MAX_TTL_S)
        self.stale_grace_s = v.number("stale_grace_s", stale_grace_s, lo=0.0, hi=MAX_TTL_S)
        self._expire_ms = max(1, int(round((self.ttl_s + self.stale_grace_s) * 1000)))
        self.hits = 0
        self.misses = 0
        self.stale_served = 0
        self.puts = 0
        self.dropped_puts = 0
        self.errors = 0
        self.corrupt = 0

    def __bool__(self) -> bool:  # ``cache_store or MemoryStore(...)`` must keep this object
        return True

    def redis_key(self, namespace: str, key: str) -> str:
        return f"{self.prefix}:cache:{key_part(namespace)}:{key_part(key)}"

    def get(self, namespace: str, key: str, now: float, *, allow_stale: bool = False) -> StoreHit[Any] | None:
        rkey = self.redis_key(namespace, key)
        try:
            data = self.link.call("cache get", lambda r: r.get(rkey), key=rkey)
        except RedisUnavailable:
            self.errors += 1
            if not allow_stale:
                self.misses += 1
            return None
        if data is None:
            if not allow_stale:
                self.misses += 1
            return None
        try:
            value, written_at = decode_entry(data, answer=self.answers_only)
        except CodecError as exc:
            self.corrupt += 1
            self.link.logs.warning("corrupt", "llmlab: ignoring an undecodable cache entry (%s)", exc)
            if not allow_stale:
                self.misses += 1
            return None
        age = now - written_at
        stale = age >= self.ttl_s
        if (stale and not allow_stale) or age >= self.ttl_s + self.stale_grace_s:
            if not allow_stale:
                self.misses += 1
            return None
        if stale:
            self.stale_served += 1
        elif not allow_stale:
            self.hits += 1
        return StoreHit(value, max(0.0, age), stale)

    def put(self, namespace: str, key: str, value: Any, now: float) -> bool:
        """Store ``value``; return True when Redis acknowledged it (False: dropped, logged)."""
        try:
            data = encode_entry(value, now)
        except CodecError as exc:
            self.dropped_puts += 1
            self.link.logs.warning("encode", "llmlab: not caching a value that cannot be encoded (%s)", exc)
            return False
        rkey = self.redis_key(namespace, key)
        try:
            self.link.call("cache put", lambda r: r.set(rkey, data, px=self._expire_ms), key=rkey)
        except RedisUnavailable as exc:
            self.errors += 1
            self.dropped_puts += 1
            self.link.logs.warning("put", "llmlab: cache write dropped, Redis unavailable (%s)", exc.reason)
            return False
        self.puts += 1
        return True

    def clear(self, namespace: str | None = None) -> int:
        """Delete this prefix's cache entries (one tenant's with ``namespace``); returns the count.

        On a cluster ``scan_iter`` walks every master in turn (redis-py's ``RedisCluster``) and
        ``delete`` splits its keys by slot, so entries on every node go."""
        pattern = f"{self.prefix}:cache:{key_part(namespace)}:*" if namespace is not None else f"{self.prefix}:cache:*"

        def run(r: Any) -> int:
            n = 0
            batch: list[Any] = []
            for k in r.scan_iter(match=pattern, count=500):
                batch.append(k)
                if len(batch) >= 500:
                    n += r.delete(*batch)
                    batch.clear()
            if batch:
                n += r.delete(*batch)
            return n

        return self.link.call("cache clear", run)

    @property
    def stats(self) -> dict[str, float]:
        lookups = self.hits + self.misses
        return {"hits": self.hits, "misses": self.misses, "hit_rate": self.hits / lookups if lookups else 0.0,
                "stale_served": self.stale_served, "puts": self.puts, "dropped_puts": self.dropped_puts,
                "errors": self.errors, "corrupt": self.corrupt, "redis_up": self.link.healthy}
