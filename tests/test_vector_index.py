"""The vector index: exact search, O(1) deletion with slot reuse, and the HNSW path."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from llmlab.cache import index as index_module
from llmlab.cache.index import ANNParams, DimensionMismatch, VectorIndex
from llmlab.errors import ConfigError

HAS_FAISS = importlib.util.find_spec("faiss") is not None
unit_vector = index_module.unit


def unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def clustered(rng: np.random.Generator, n: int, dim: int, clusters: int = 20, noise: float = 0.5) -> np.ndarray:
    centres = unit(rng, clusters, dim)
    x = centres[rng.integers(0, clusters, n)] + noise * rng.standard_normal((n, dim)).astype(np.float32) / np.sqrt(dim)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_exact_search_matches_brute_force_and_is_sorted():
    rng = np.random.default_rng(0)
    data = unit(rng, 300, 32)
    idx = VectorIndex(32, ann_threshold=None)
    slots = [idx.add(v) for v in data]
    assert slots == list(range(300)) and len(idx) == 300
    for q in unit(rng, 20, 32):
        top, sims = idx.search(q, k=5)
        truth = np.argsort(-(data @ q))[:5]
        assert list(top) == list(truth)
        assert np.all(np.diff(sims) <= 1e-7)
        assert np.allclose(sims, data[truth] @ q, atol=1e-5)


def test_remove_frees_the_slot_for_reuse_and_never_returns_removed_vectors():
    rng = np.random.default_rng(1)
    data = unit(rng, 10, 16)
    idx = VectorIndex(16, ann_threshold=None)
    for v in data:
        idx.add(v)
    idx.remove(3)
    assert len(idx) == 9
    top, _ = idx.search(data[3], k=9)
    assert 3 not in top  # its own vector is gone, although the row was not compacted
    assert idx.add(data[0] * 2.0) == 3  # the freed slot is reused (stored normalised)
    assert np.allclose(idx.vector(3), data[0], atol=1e-6)
    with pytest.raises(KeyError):
        idx.remove(42)


def test_wrong_dimension_names_expected_and_got():
    idx = VectorIndex(8)
    with pytest.raises(DimensionMismatch) as info:
        idx.add(np.ones(9, dtype=np.float32))
    assert info.value.expected == 8 and info.value.got == 9
    assert isinstance(info.value, ValueError) and "9" in str(info.value) and "8" in str(info.value)
    idx.add(np.ones(8))
    with pytest.raises(DimensionMismatch):
        idx.search(np.ones(7))


def test_zero_vector_is_refused_and_empty_index_returns_nothing():
    idx = VectorIndex(4)
    top, sims = idx.search(np.ones(4))
    assert len(top) == 0 and len(sims) == 0
    with pytest.raises(ConfigError):
        idx.add(np.zeros(4))


def test_growth_keeps_contents():
    rng = np.random.default_rng(2)
    data = unit(rng, 200, 8)
    idx = VectorIndex(8, ann_threshold=None, initial_capacity=8)
    for v in data:
        idx.add(v)
    assert all(np.allclose(idx.vector(i), data[i], atol=1e-6) for i in range(200))


def test_growth_from_the_small_default_capacity_keeps_contents_and_holes():
    rng = np.random.default_rng(12)
    data = unit(rng, 70, 384)
    idx = VectorIndex(384, ann_threshold=None)
    assert idx._mat.shape[0] == 4 and idx.nbytes < 4 * 384 * 4 + 64  # a namespace starts small
    expected = {idx.add(v): v for v in data[:37]}
    assert idx._mat.shape[0] == 64  # 4 → 8 → 16 → 32 → 64: doubling
    for s in (0, 5, 36):
        idx.remove(s)
        del expected[s]
    slots = [idx.add(v) for v in data[37:]]
    assert sorted(slots[:3]) == [0, 5, 36]  # the holes are refilled first, then rows are appended
    expected.update(zip(slots, data[37:]))
    assert len(idx) == 67 and idx._mat.shape[0] == 128
    for s, v in expected.items():
        assert np.array_equal(idx.vector(s), unit_vector(v))
        assert idx.search(v, k=1)[0][0] == s
    tiny = VectorIndex(8, ann_threshold=None, initial_capacity=1)
    for v in unit(rng, 9, 8):
        tiny.add(v)
    assert tiny._mat.shape[0] == 16 and len(tiny) == 9


def test_unit_is_bit_identical_to_dividing_by_numpys_norm():
    rng = np.random.default_rng(13)
    for v in [*unit(rng, 50, 384), *(rng.standard_normal((50, 512)) * 7).astype(np.float32)]:
        got = unit_vector(v)
        assert got.dtype == np.float32 and np.array_equal(got, v / float(np.linalg.norm(v)))
    already = unit(rng, 200, 384)
    exact = [v for v in already if float(np.linalg.norm(v)) == 1.0]
    assert exact and all(unit_vector(v) is v for v in exact)  # a unit vector is neither divided nor copied
    assert unit_vector(np.zeros(8, np.float32)) is None
    assert unit_vector(np.full(8, np.inf, np.float32)) is None


def reference_search(idx: VectorIndex, q: np.ndarray, k: int, floor: float) -> tuple[list[int], list[float]]:
    """The general path (top-k, then the caller's threshold cut) that the floor shortcut must reproduce."""
    slots, sims = idx.search(q, k)
    keep = [(int(s), float(x)) for s, x in zip(slots, sims) if float(x) >= floor]
    return [s for s, _ in keep], [x for _, x in keep]


@pytest.mark.parametrize("dim", [16, 384])
def test_min_similarity_fast_path_agrees_with_the_general_path(dim):
    rng = np.random.default_rng(dim)
    for trial in range(60):
        n = int(rng.integers(1, 150))
        data = clustered(rng, n, dim, clusters=int(rng.integers(1, 6)), noise=float(rng.choice([0.1, 0.5, 1.0])))
        if trial % 3 == 0:  # exact duplicates: ties in similarity
            data[rng.integers(0, n, n // 3)] = data[0]
        idx = VectorIndex(dim, ann_threshold=None)
        for v in data:
            idx.add(v)
        for s in rng.choice(n, int(rng.integers(0, n)), replace=False)[: n - 1]:
            idx.remove(int(s))  # holes
        for q in [*data[rng.integers(0, n, 4)], *clustered(rng, 4, dim)]:
            qn = unit_vector(q.astype(np.float32))
            k = int(rng.choice([1, 2, 3, 8, 20]))
            exact_sims = idx._mat[: idx._hwm] @ qn
            for floor in (-1.0, 0.5, 0.9, float(rng.uniform(0.3, 1.0)), float(exact_sims.max()),
                          float(np.nextafter(exact_sims.max(), np.float32(2)))):
                slots, sims = idx.search_unit(qn, k, min_similarity=floor)
                assert (slots.tolist(), sims.tolist()) == reference_search(idx, q, k, floor)
                assert slots.dtype == np.int64 and sims.dtype == np.float32
                assert np.all(idx._alive[slots])


def test_min_similarity_compares_exactly_not_after_rounding_to_float32():
    idx = VectorIndex(4, ann_threshold=None)
    idx.add(np.array([1.0, 0.0, 0.0, 0.0], np.float32))
    idx.add(np.array([0.0, 1.0, 0.0, 0.0], np.float32))
    q = unit_vector(np.array([0.91, 0.3, 0.0, 0.0], np.float32))
    s = float(idx.search_unit(q, 2)[1][0])  # a float32 value
    assert idx.search_unit(q, 2, min_similarity=s)[0].tolist() == [0]
    just_above = s + 1e-12  # rounds to s in float32: a float32 comparison would wrongly keep it
    assert np.float32(just_above) == np.float32(s)
    assert len(idx.search_unit(q, 2, min_similarity=just_above)[0]) == 0
    assert len(idx.search(q, 2, min_similarity=just_above)[0]) == 0


@pytest.mark.skipif(not HAS_FAISS, reason="faiss not installed")
def test_min_similarity_on_the_ann_path_filters_the_unchanged_graph_result():
    rng = np.random.default_rng(14)
    data = clustered(rng, 300, 32)
    idx = VectorIndex(32, ann_threshold=100)
    idx.add_many(data)
    assert idx.uses_ann
    for q in clustered(rng, 30, 32):
        full_slots, full_sims = idx.search(q, 8)
        for floor in (0.0, 0.6, 0.8, 0.95):
            slots, sims = idx.search(q, 8, min_similarity=floor)
            keep = full_sims.astype(np.float64) >= floor
            assert slots.tolist() == full_slots[keep].tolist() and sims.tolist() == full_sims[keep].tolist()


@pytest.mark.skipif(not HAS_FAISS, reason="faiss not installed")
def test_ann_path_agrees_with_exact_search_on_a_small_index():
    rng = np.random.default_rng(3)
    dim = 48
    data = clustered(rng, 600, dim)
    idx = VectorIndex(dim, ann_threshold=100)
    for i, v in enumerate(data):
        idx.add(v)
        if i == 98:
            assert not idx.uses_ann
    assert idx.uses_ann and idx.rebuilds == 1
    queries = clustered(rng, 100, dim)
    agree = 0
    for q in queries:
        a_slots, a_sims = idx.search(q, k=1)
        e_slots, e_sims = idx.search_exact(q, k=1)
        agree += int(a_slots[0] == e_slots[0])
        assert a_sims[0] <= e_sims[0] + 1e-6  # ANN scores are exact re-ranks: never better than the truth
        assert a_sims[0] == pytest.approx(float(data[a_slots[0]] @ (q / np.linalg.norm(q))), abs=1e-5)
    assert agree >= 97
    # a stored vector is always found as its own nearest neighbour
    for s in rng.choice(600, 50, replace=False):
        assert idx.search(data[s], k=1)[0][0] == s


@pytest.mark.skipif(not HAS_FAISS, reason="faiss not installed")
def test_ann_deletions_are_tombstoned_then_rebuilt_and_slots_reused_correctly():
    rng = np.random.default_rng(4)
    dim = 32
    data = clustered(rng, 400, dim)
    idx = VectorIndex(dim, ann_threshold=100, ann_params=ANNParams(rebuild_fraction=0.25))
    for v in data:
        idx.add(v)
    removed = list(rng.choice(400, 90, replace=False))
    for s in removed:
        idx.remove(int(s))
    assert idx.uses_ann and idx.rebuilds == 1  # 90 tombstones < 25 % of 400: no rebuild yet
    for s in removed[:30]:
        top, _ = idx.search(data[s], k=5)
        assert not set(int(t) for t in top) & set(int(r) for r in removed)
    # reuse a freed slot for a different vector: the stale graph node must not leak the old score
    new = clustered(rng, 1, dim)[0]
    slot = idx.add(new)
    assert slot in [int(r) for r in removed]
    top, sims = idx.search(data[slot], k=1)
    if top[0] == slot:
        assert sims[0] == pytest.approx(float(new @ data[slot]), abs=1e-5)
    for s in removed[30:45]:
        idx.remove(int(idx.add(data[int(s)])))  # churn creates tombstones
    more = [int(s) for s in rng.choice([i for i in range(400) if i not in removed and i != slot], 20, replace=False)]
    for s in more:
        idx.remove(s)
    assert idx.rebuilds >= 2  # tombstones passed a quarter of the graph: rebuilt


@pytest.mark.skipif(not HAS_FAISS, reason="faiss not installed")
def test_ann_is_dropped_when_the_index_shrinks_below_half_the_threshold():
    rng = np.random.default_rng(5)
    data = unit(rng, 120, 16)
    idx = VectorIndex(16, ann_threshold=100)
    for v in data:
        idx.add(v)
    assert idx.uses_ann
    for s in range(80):
        idx.remove(s)
    assert not idx.uses_ann and len(idx) == 40
    top, _ = idx.search(data[100], k=1)
    assert top[0] == 100


@pytest.mark.skipif(not HAS_FAISS, reason="faiss not installed")
@pytest.mark.parametrize("quantize", [True, False])
def test_an_index_whose_threshold_is_one_can_lose_its_last_row(quantize):
    """Found by the simulator's scenario fuzz (``gateway.cache.options.ann_threshold = 1`` with a
    one-entry cache): evicting the only entry rebuilt the graph from no rows, and training the
    quantised graph on nothing raised inside the request (a gateway_error).  With no rows left the
    index drops its graph and searches exactly until enough rows are back."""
    rng = np.random.default_rng(9)
    a, b = unit(rng, 2, 16)
    idx = VectorIndex(16, ann_threshold=1, ann_params=ANNParams(quantize=quantize))
    slot = idx.add(a)
    assert idx.uses_ann
    idx.remove(slot)
    assert not idx.uses_ann and len(idx) == 0
    assert len(idx.search(a, k=1)[0]) == 0
    idx.rebuild_ann()  # asked for by hand on an empty index: still nothing to train on, no error
    assert not idx.uses_ann
    idx.add(b)
    assert idx.uses_ann
    top, sims = idx.search(b, k=1)
    assert len(top) == 1 and sims[0] == pytest.approx(1.0, abs=1e-3)


def test_without_faiss_the_index_stays_exact(monkeypatch):
    monkeypatch.setattr(index_module, "_faiss", lambda: None)
    rng = np.random.default_rng(6)
    data = unit(rng, 50, 8)
    idx = VectorIndex(8, ann_threshold=10)
    for v in data:
        idx.add(v)
    assert not idx.uses_ann
    assert idx.search(data[7])[0][0] == 7


def test_bad_settings_are_config_errors():
    with pytest.raises(ConfigError):
        VectorIndex(0)
    with pytest.raises(ConfigError) as info:
        VectorIndex(8, ann_threshold=0)
    assert info.value.field == "ann_threshold"


def test_add_many_fills_freed_slots_then_appends():
    rng = np.random.default_rng(7)
    data = unit(rng, 20, 8)
    idx = VectorIndex(8, ann_threshold=None)
    idx.add_many(data[:10])
    idx.remove(2)
    idx.remove(5)
    slots = idx.add_many(data[10:15])
    assert sorted(slots.tolist()) == [2, 5, 10, 11, 12] and len(idx) == 13
    for s, v in zip(slots, data[10:15]):
        assert idx.search(v)[0][0] == s
    with pytest.raises(DimensionMismatch):
        idx.add_many(np.ones((2, 9)))


@pytest.mark.skipif(not HAS_FAISS, reason="faiss not installed")
def test_add_many_builds_the_graph_once():
    rng = np.random.default_rng(8)
    data = clustered(rng, 300, 16)
    idx = VectorIndex(16, ann_threshold=100)
    idx.add_many(data)
    assert idx.uses_ann and idx.rebuilds == 1
    assert idx.search(data[123])[0][0] == 123


@pytest.mark.skipif(not HAS_FAISS, reason="faiss not installed")
def test_benchmark_script_prints_one_flat_json_object():
    from benchmark_runs import run_benchmark

    out = run_benchmark("semantic_cache.py", "--sizes", "1000,6000", "--queries", "40", "--embedders", "hashed")
    assert {"lookup_us_p50_1k", "lookup_us_p99_1k", "lookup_us_p50_6k", "recall_at_1_6k", "bytes_per_entry",
            "embed_us_p50_hashed", "small_lookup_us_p50_d384", "small_store_us_p50_d512",
            "small_ns_bytes_d512"} <= set(out)
    assert out["small_ns_bytes_d512"] < 64 * 512  # a one-entry namespace does not pre-allocate 64 rows
    assert out["uses_ann_6k"] is True and out["uses_ann_1k"] is False
    assert out["recall_at_1_6k"] >= 0.95
    assert all(not isinstance(v, (dict, list)) for v in out.values())


def test_ties_go_to_the_lower_slot_on_every_path():
    """Basis vectors give exact ties (a BLAS matvec may round equal rows differently otherwise)."""
    base, other = np.eye(8, dtype=np.float32)[0], np.eye(8, dtype=np.float32)[1]
    idx = VectorIndex(8, ann_threshold=None)
    for v in [other, base, other, base, base, other, base]:  # base at slots 1, 3, 4, 6
        idx.add(v)
    assert idx.search(base, 2)[0].tolist() == [1, 3]                                # top-k cut through a tie
    assert idx.search_unit(base, 3, min_similarity=0.99)[0].tolist() == [1, 3, 4]  # the floor path
    assert idx.search(other, 7)[0].tolist() == [0, 2, 5, 1, 3, 4, 6]
    idx.remove(3)
    assert idx.search(base, 3)[0].tolist() == [1, 4, 6]
    assert idx.search_unit(base, 2, min_similarity=0.5)[0].tolist() == [1, 4]


def test_float32_floor_compares_exactly_like_float64():
    """Thresholds are float64; similarities float32.  The float32 bound must select exactly the
    rows a float64 comparison selects, including rows one float32 step either side of it."""
    from llmlab.cache.index import float32_floor

    rng = np.random.default_rng(7)
    for f in [0.83, 0.9, 0.5, 1.0, 0.0, 0.1 + 1e-12, *rng.random(200).tolist()]:
        bound = float32_floor(f)
        assert float(bound) >= f and float(np.nextafter(bound, np.float32(-np.inf))) < f
        near = np.float32(f)
        sims = np.array([np.nextafter(near, np.float32(-1)), near, np.nextafter(near, np.float32(2)),
                         *rng.random(50)], dtype=np.float32)
        assert np.array_equal(sims >= bound, sims.astype(np.float64) >= f)


def test_holes_are_never_returned_and_reused_slots_are_found_again():
    idx = VectorIndex(8, ann_threshold=None)
    vecs = np.eye(8, dtype=np.float32)
    slots = [idx.add(v) for v in vecs]
    for s in slots[::2]:
        idx.remove(s)
    for v in vecs:  # a removed row is never found, even as the only row above the floor
        found, _ = idx.search(v, 8, min_similarity=0.0)
        assert not set(found.tolist()) & set(slots[::2])
    again = idx.add(vecs[0])  # reuses a freed slot, which must be searchable again
    found, sims = idx.search(vecs[0], 1, min_similarity=0.99)
    assert found.tolist() == [again] and sims[0] == pytest.approx(1.0)


@pytest.mark.skipif(not HAS_FAISS, reason="faiss not installed")
def test_a_pickled_index_carries_its_graph_once():
    """The index kept a handle on the HNSW graph inside its faiss ID map: pickle stored the graph
    twice, and the copy kept an orphaned second graph in memory.  The copy searches as the
    original, and takes inserts and removals."""
    import pickle

    rng = np.random.default_rng(5)
    idx = VectorIndex(32, ann_threshold=100)
    idx.add_many(clustered(rng, 300, 32))
    assert idx.uses_ann
    graph = len(pickle.dumps(idx._ann))
    rows = len(pickle.dumps({k: v for k, v in idx.__dict__.items() if k not in ("_ann", "_ann_inner")}))
    copied = pickle.loads(pickle.dumps(idx))
    assert len(pickle.dumps(idx)) < rows + 1.2 * graph
    assert copied.uses_ann
    for q in clustered(rng, 20, 32):
        assert [a.tolist() for a in copied.search(q, 5)] == [a.tolist() for a in idx.search(q, 5)]
    slot = copied.add(np.ones(32))
    copied.remove(3)
    assert copied.search(np.ones(32), 1)[0].tolist() == [slot]
