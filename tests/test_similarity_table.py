"""The similarity table: the simulator's catalogue fast path must find what the product finds."""
from __future__ import annotations

import numpy as np
import pytest

from llmlab.cache import table as table_module
from llmlab.cache.index import settled_unit
from llmlab.cache.semantic import SemanticCache
from llmlab.cache.table import SimilarityTable
from llmlab.errors import ConfigError


class _Dim:
    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.name = "test"


def catalogue(n: int = 300, dim: int = 32, seed: int = 5) -> tuple[list[str], list[np.ndarray]]:
    """Clustered unit vectors as (1, dim) read-only rows, the way the simulator's embed memo keeps them."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((12, dim))
    texts, rows = [], []
    for i in range(n):
        x = (centres[i % 12] + 0.25 * rng.standard_normal(dim)).astype(np.float32)
        row = settled_unit(x)[None, :].copy()
        row.flags.writeable = False
        texts.append(f"query {i}")
        rows.append(row)
    return texts, rows


def test_rows_are_the_catalogue_products_and_read_only():
    texts, rows = catalogue(n=300)
    t = SimilarityTable(texts, rows)
    m = np.vstack(rows)
    for i in (0, 127, 128, 299):  # first, block edges, last
        sims = t.similarities(i)
        assert sims.shape == (300,) and not sims.flags.writeable
        np.testing.assert_allclose(sims, m @ m[i], atol=1e-6)
        assert t.similarities(i) is sims  # memoised
    assert np.array_equal(t.unit(7), rows[7][0])


def test_only_the_tables_own_vectors_are_recognised():
    texts, rows = catalogue(n=10)
    t = SimilarityTable(texts, rows)
    assert t.id_of("query 3", rows[3]) == 3
    assert t.id_of("query 3", rows[3][0]) == 3           # the view the pipeline passes on
    assert t.id_of("query 3", rows[3][0].copy()) is None  # equal values, not the table's array
    assert t.id_of("query 3", rows[4][0]) is None         # another text's vector
    assert t.id_of("unknown", rows[3][0]) is None


def test_bad_tables_are_typed_errors(monkeypatch):
    texts, rows = catalogue(n=4)
    with pytest.raises(ConfigError, match="rows"):
        SimilarityTable(texts, rows[:3])
    with pytest.raises(ConfigError, match="distinct"):
        SimilarityTable(["a", "a", "b", "c"], rows)
    monkeypatch.setattr(table_module, "MAX_TABLE_TEXTS", 3)
    with pytest.raises(ConfigError, match="at most 3"):
        SimilarityTable(texts, rows)
    with pytest.raises(ConfigError, match="table"):
        SemanticCache(_Dim(8), table="not a table")
    monkeypatch.setattr(table_module, "MAX_TABLE_TEXTS", 100)
    with pytest.raises(ConfigError, match="dimension 32"):
        SemanticCache(_Dim(8), table=SimilarityTable(texts, rows))


def test_a_cache_with_the_table_serves_exactly_what_one_without_serves():
    """Same stores and lookups (evictions included) into a cache with the table and one without:
    the same hits, the same matched entries, similarities equal to float32 rounding."""
    texts, rows = catalogue(n=300)
    t = SimilarityTable(texts, rows)
    fast = SemanticCache(_Dim(32), threshold=0.8, guard=None, capacity=150, candidates=4, table=t)
    plain = SemanticCache(_Dim(32), threshold=0.8, guard=None, capacity=150, candidates=4)
    rng = np.random.default_rng(9)
    hits = 0
    for step in range(4000):
        ns = f"tenant{rng.integers(6)}|"
        i = int(rng.integers(len(texts)))
        vector = rows[i][0]
        if rng.random() < 0.4:
            fast.store(ns, texts[i], vector, f"answer {i}", float(step))
            plain.store(ns, texts[i], vector, f"answer {i}", float(step))
            continue
        a = fast.lookup(ns, texts[i], vector, float(step))
        b = plain.lookup(ns, texts[i], vector, float(step))
        assert (a is None) == (b is None)
        if a is not None:
            hits += 1
            assert a.matched_text == b.matched_text and a.value == b.value
            assert a.similarity == pytest.approx(b.similarity, abs=1e-6)
    assert hits > 500
    assert fast.stats["evictions"] == plain.stats["evictions"] > 0
    assert fast.stats["table_searches"] > 1000 and plain.stats["table_searches"] == 0


def test_a_namespace_holding_a_foreign_vector_falls_back_to_the_product():
    texts, rows = catalogue(n=20)
    t = SimilarityTable(texts, rows)
    c = SemanticCache(_Dim(32), threshold=0.8, guard=None, table=t)
    c.store("ns", texts[0], rows[0][0], "from the table", 0.0)
    c.store("ns", "a caller's own text", rows[1][0].copy(), "foreign", 0.0)  # not the table's vector
    before = c.stats["table_searches"]
    hit = c.lookup("ns", texts[1], rows[1][0], 1.0)
    assert hit is not None and hit.value == "foreign"  # found through the product
    assert c.stats["table_searches"] == before
    c.store("other", texts[2], rows[2][0], "keyed", 0.0)
    assert c.lookup("other", texts[2], rows[2][0], 1.0).value == "keyed"
    assert c.stats["table_searches"] == before + 1


def test_the_simulator_searches_through_the_table_and_matches_a_run_without_it(monkeypatch):
    from llmlab.sim import run as run_module
    from llmlab.sim.driver import EmbedModel
    from llmlab.sim.scenario import load_scenario

    sc = load_scenario("b2b-saas").with_overrides({"gateway.cache.embedder": "hashed"})
    traffic = run_module.make_traffic(sc, requests=3000, seed=4)
    caches = []
    real_build = run_module.build_semantic_cache

    def build(*args, **kwargs):
        caches.append(real_build(*args, **kwargs))
        return caches[-1]

    monkeypatch.setattr(run_module, "build_semantic_cache", build)
    _, with_table = run_module.run_once(sc, traffic, seed=4, embed_model=run_module._embed_model(sc, traffic))
    monkeypatch.setattr(EmbedModel, "similarity_table", lambda self: None)
    _, without = run_module.run_once(sc, traffic, seed=4, embed_model=run_module._embed_model(sc, traffic))
    assert caches[0].table is not None and caches[0].stats["table_searches"] > 300
    assert caches[1].table is None and caches[1].stats["table_searches"] == 0
    for key in ("cache_hit_rate", "semantic_hit_rate", "false_hit_rate", "cost_usd", "p95_latency_s"):
        assert with_table[key] == pytest.approx(without[key], rel=1e-3, abs=1e-4), key
