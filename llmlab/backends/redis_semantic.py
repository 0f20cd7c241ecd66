"""A semantic cache shared by several replicas: each keeps its own vector index, Redis keeps the log.

:class:`~llmlab.cache.semantic.SemanticCache` holds its entries and index in the process (the
index must be in memory to search in microseconds).  :class:`SharedSemanticCache` wraps one
and replicates it through Redis, without changing it:

* ``store`` writes locally and appends the entry to a per-namespace Redis stream
  ``{prefix}:semantic:{namespace}`` (the same name on a Redis Cluster: every command, and the
  publishing transaction, touches that one key, so streams spread over the masters; the vector as float32 bytes, the value as codec JSON,
  the caller's ``written_at``), trimmed to about ``max_entries`` and expiring ``ttl_s +
  stale_grace_s`` after the last write;
* ``lookup`` / ``lookup_last_resort`` first read the stream past the last entry this replica
  has seen (one round trip; a namespace seen for the first time backfills its newest
  ``backfill`` entries), add other replicas' entries to the local cache with *their*
  ``written_at`` (so TTL is counted from the original write), then search locally.  Of several
  writes of one text the stream's last wins on every replica, the writer's too.

Isolation is the namespace's: the pipeline's semantic namespace starts with the tenant, and
each namespace is its own stream, so a lookup never reads another tenant's entries.  When
Redis is unreachable the cache works locally (replication resumes on reconnect; entries
written meanwhile are not re-sent).  Eventual consistency: an entry stored by another replica
becomes visible at this replica's next lookup in that namespace.
"""
from __future__ import annotations

import logging
import uuid
from collections import OrderedDict
from typing import Any

import numpy as np

from .. import _validate as v
from .codec import CodecError, decode_entry, encode_entry
from .redis_link import MAX_TTL_S, RedisLink, RedisUnavailable, key_part

log = logging.getLogger("llmlab.backends")


class SharedSemanticCache:
    """Implements the pipeline's semantic slot (``embedder``, ``lookup``, ``store``, ``lookup_last_resort``)."""

    #: its calls wait on the network: a gateway using it runs async requests' steps on threads
    blocking_io = True

    def __init__(self, local: Any, link: RedisLink, *, prefix: str = "llmlab", max_entries: int = 10_000,
                 backfill: int = 1_000, stale_grace_s: float = 86_400.0, max_namespaces: int | None = None,
                 answers_only: bool = False) -> None:
        for name in ("lookup", "store", "lookup_last_resort"):
            if not callable(getattr(local, name, None)):
                from ..errors import ConfigError
                raise ConfigError("local", local, "a llmlab.cache.semantic.SemanticCache")
        self.local = local
        self.link = link
        self.prefix = prefix
        self.max_entries = v.integer("max_entries", max_entries, lo=1)
        self.backfill = v.integer("backfill", backfill, lo=0)
        ttl = float(getattr(local, "ttl_s", 86_400.0))
        grace = v.number("stale_grace_s", stale_grace_s, lo=0.0, hi=MAX_TTL_S)
        # a local cache that never expires (ttl_s=inf) still gets a stream expiry Redis can hold
        self._expire_ms = max(1, int(min(ttl + grace, MAX_TTL_S) * 1000))
        self.origin = uuid.uuid4().hex[:12].encode()
        self.answers_only = answers_only  # the gateway's cache: another replica's non-answer is foreign
        # namespace -> last stream id read, least recently looked up first.  Bounded: a namespace
        # includes the conversation's context, so a chat service opens one per turn of every
        # conversation, and an unbounded map grew by about one entry per request, for good.  The
        # default bound is the local cache's capacity (it cannot hold entries in more namespaces
        # than that); a namespace forgotten here is backfilled again at its next lookup (entries
        # already held locally are replaced, not duplicated).
        if max_namespaces is None:
            max_namespaces = max(1, int(getattr(local, "capacity", 10_000)))
        self.max_namespaces = v.integer("max_namespaces", max_namespaces, lo=1)
        self._seen: OrderedDict[str, bytes] = OrderedDict()
        self.replicated_in = 0
        self.replicated_out = 0
        self.errors = 0

    @property
    def embedder(self) -> Any:
        return self.local.embedder

    def key(self, namespace: str) -> str:
        return f"{self.prefix}:semantic:{key_part(namespace)}"

    # ------------------------------------------------------------------ replication
    def _remember(self, namespace: str, stream_id: bytes) -> None:
        seen = self._seen.get(namespace)
        if seen is not None and _stream_order(seen) > _stream_order(stream_id):
            stream_id = seen  # a sync that overtook this one (its read let the step lock go) read further
        self._seen[namespace] = stream_id
        self._seen.move_to_end(namespace)
        while len(self._seen) > self.max_namespaces:
            self._seen.popitem(last=False)

    def _sync(self, namespace: str) -> None:
        key = self.key(namespace)
        last = self._seen.get(namespace)
        try:
            if last is None:
                rows = self.link.call("semantic backfill", lambda r: r.xrevrange(key, "+", "-", count=self.backfill),
                                      key=key)
                rows = list(reversed(rows))
            else:
                rows = self.link.call("semantic sync", lambda r: r.xrange(key, b"(" + last, "+", count=self.max_entries),
                                      key=key)
        except RedisUnavailable as exc:
            self.errors += 1
            self.link.logs.warning("semantic-sync", "llmlab: semantic cache working locally, Redis unavailable (%s)",
                                   exc.reason)
            return
        self._remember(namespace, rows[-1][0] if rows else last or b"0-0")
        # only each text's last write in this read counts: replaying an older one would overwrite
        # what a later write left locally — ours above all, which is skipped below (so another
        # replica's earlier value replaced it here for good, while every other replica kept ours)
        latest = {fields.get(b"t"): i for i, (_, fields) in enumerate(rows)}
        for i, (stream_id, fields) in enumerate(rows):
            if latest[fields.get(b"t")] != i:
                continue  # superseded by a later write of the same text
            if fields.get(b"o") == self.origin:
                continue  # our own write, already in the local cache
            try:
                value, written_at = decode_entry(fields[b"e"], answer=self.answers_only)
                vector = np.frombuffer(fields[b"v"], dtype="<f4")
                text = fields[b"t"].decode("utf-8", "surrogatepass")
                self.local.store(namespace, text, vector, value, written_at)
                self.replicated_in += 1
            except (CodecError, KeyError, ValueError, UnicodeDecodeError) as exc:
                self.link.logs.warning("semantic-corrupt", "llmlab: ignoring an undecodable semantic entry (%s: %s)",
                                       type(exc).__name__, exc)
            except Exception as exc:  # e.g. DimensionMismatch: another replica runs another embedder
                self.link.logs.warning("semantic-reject", "llmlab: semantic entry not usable here (%s: %s)",
                                       type(exc).__name__, exc)

    # ------------------------------------------------------------------ the slot
    def lookup(self, namespace: str, text: str, vector: Any, now: float, *, threshold: float | None = None) -> Any:
        self._sync(namespace)
        return self.local.lookup(namespace, text, vector, now, threshold=threshold)

    def lookup_last_resort(self, namespace: str, text: str, vector: Any, now: float) -> Any:
        self._sync(namespace)
        return self.local.lookup_last_resort(namespace, text, vector, now)

    def store(self, namespace: str, text: str, vector: Any, value: Any, now: float) -> bool:
        """Store locally and publish; True when Redis acknowledged the publication.  What the local
        cache would not store (it returned False: a vector of the wrong dimension, an all-zero one)
        is not published either: every other replica would refuse it too."""
        if self.local.store(namespace, text, vector, value, now) is False:
            return False
        try:
            fields = {b"o": self.origin, b"t": text.encode("utf-8", "surrogatepass"), b"e": encode_entry(value, now),
                      b"v": np.asarray(vector, dtype="<f4").reshape(-1).tobytes()}
        except CodecError as exc:
            self.link.logs.warning("semantic-encode", "llmlab: semantic entry not published (%s)", exc)
            return False
        key = self.key(namespace)

        def publish(r: Any) -> Any:
            pipe = r.pipeline(transaction=True)
            pipe.xadd(key, fields, maxlen=self.max_entries, approximate=True)
            pipe.pexpire(key, self._expire_ms)
            return pipe.execute()

        try:
            self.link.call("semantic store", publish, key=key)
        except RedisUnavailable as exc:
            self.errors += 1
            self.link.logs.warning("semantic-put", "llmlab: semantic entry kept locally only, Redis unavailable (%s)",
                                   exc.reason)
            return False
        self.replicated_out += 1
        return True

    @property
    def stats(self) -> dict[str, Any]:
        out = dict(getattr(self.local, "stats", {}))
        out.update({"replicated_in": self.replicated_in, "replicated_out": self.replicated_out,
                    "redis_errors": self.errors, "redis_up": self.link.healthy})
        return out


def _stream_order(stream_id: bytes) -> tuple[int, int]:
    """A Redis stream id (``b"<ms>-<seq>"``) as a comparable pair."""
    ms, _, seq = stream_id.partition(b"-")
    return int(ms), int(seq or 0)
