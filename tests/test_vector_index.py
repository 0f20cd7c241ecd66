"""The vector index: exact search, O(1) deletion with slot reuse, and the HNSW path."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from llmlab.cache import index as index_module
from llmlab.cache.index import ANNParams, DimensionMismatch, VectorIndex
from llmlab.errors import ConfigError

HAS_FAISS = importlib.util.find_spec("faiss") is not None


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
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "semantic_cache.py"
    res = subprocess.run([sys.executable, str(script), "--json", "--sizes", "1000,6000", "--queries", "40",
                          "--embedders", "hashed"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert {"lookup_us_p50_1k", "lookup_us_p99_1k", "lookup_us_p50_6k", "recall_at_1_6k", "bytes_per_entry",
            "embed_us_p50_hashed"} <= set(out)
    assert out["uses_ann_6k"] is True and out["uses_ann_1k"] is False
    assert out["recall_at_1_6k"] >= 0.95
    assert all(not isinstance(v, (dict, list)) for v in out.values())
