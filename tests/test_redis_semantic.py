"""The semantic cache shared through Redis: replicas see each other's entries, tenants never do."""
from __future__ import annotations

import logging
import time

import pytest

from llmlab import CachedAnswer, CacheOutcome, Deployment, FixedRouter, Gateway, OutcomeKind
from llmlab.backends import encode_entry, from_url
from llmlab.scripted import FakeClock, ScriptedDriver
from redis_fixtures import any_redis_url, prefix, redis_server, redis_url, start_redis  # noqa: F401

pytestmark = pytest.mark.redis


def semantic(ttl_s: float = 3_600, **kw):
    from llmlab.cache.embedders import HashedNgramEmbedder
    from llmlab.cache.semantic import SemanticCache

    return SemanticCache(HashedNgramEmbedder(), threshold=0.6, guard=None, ttl_s=ttl_s, **kw)


def replica(url: str, prefix: str, clock: FakeClock, answer: str, **kw) -> Gateway:
    backends = from_url(url, prefix, semantic_cache=semantic(), **kw)
    return Gateway([Deployment("gpt-4o", "gpt-4o")], router=FixedRouter("gpt-4o"), fallbacks={}, clock=clock,
                   driver=ScriptedDriver(clock=clock, default=answer), seed=0, **backends.gateway_kwargs())


def test_a_paraphrase_hits_an_entry_written_by_another_replica(any_redis_url, prefix):
    clock = FakeClock()
    one, two = replica(any_redis_url, prefix, clock, "from one"), replica(any_redis_url, prefix, clock, "from two")
    assert one.complete("How do I reset my password?", tenant="acme").text == "from one"
    hit = two.complete("how can I reset my password", tenant="acme")
    assert hit.cache is CacheOutcome.SEMANTIC_HIT and hit.text == "from one" and hit.similarity >= 0.6
    other = two.complete("how can I reset my password", tenant="globex")  # same words, another tenant
    assert other.cache is CacheOutcome.MISS and other.text == "from two"
    assert two.pipeline.semantic_cache.stats["replicated_in"] == 1
    back = one.complete("how could I reset my password?", tenant="globex")  # one learns globex's entry from two
    assert back.cache is CacheOutcome.SEMANTIC_HIT and back.text == "from two"


def test_ttl_counts_from_the_original_write(redis_url, prefix):
    clock = FakeClock()
    one = replica(redis_url, prefix, clock, "old answer")
    one.complete("What are your opening hours?", tenant="t")
    clock.advance(4_000)  # past the local cache's 3,600 s TTL
    two = replica(redis_url, prefix, clock, "new answer")
    out = two.complete("what are your opening hours", tenant="t")
    assert out.text == "new answer" and out.cache is CacheOutcome.MISS  # replicated, but already expired


def test_redis_down_keeps_the_local_semantic_cache_working(start_redis):
    server = start_redis()
    clock = FakeClock()
    gw = replica(server.url, "p", clock, "answer", retry_interval_s=0.05)
    server.kill()
    assert gw.complete("How do I export my data?", tenant="t").cache is CacheOutcome.MISS
    hit = gw.complete("how can I export my data", tenant="t")
    assert hit.kind is OutcomeKind.CACHE and hit.cache is CacheOutcome.SEMANTIC_HIT
    server.start()
    time.sleep(0.06)
    assert gw.complete("How do I delete my account?", tenant="t").ok
    assert gw.pipeline.semantic_cache.stats["redis_up"]


def test_namespaces_tracked_for_replication_are_bounded(redis_url, prefix):
    """The namespace holds the conversation's context, so a chat service opens one per turn; the
    replica's map of 'last entry read' per namespace grew by one per request and never shrank.
    It is bounded (by default by the local cache's capacity: no more namespaces can hold
    entries), and a namespace it forgot still sees the other replica's entries."""
    clock = FakeClock()
    writer = from_url(redis_url, prefix, semantic_cache=semantic()).semantic_cache
    reader = from_url(redis_url, prefix, semantic_cache=semantic(capacity=20)).semantic_cache
    vec = reader.embedder.embed(["How do I reset my password?"])[0]
    for i in range(200):  # one conversation turn each
        assert reader.lookup(f"acme|{i:016x}|k", "How do I reset my password?", vec, clock()) is None
    assert len(reader._seen) == 20
    answer = CachedAnswer("the answer", "gpt-4o", 5, 7, 0.0001, clock())
    writer.store("acme|0000000000000000|k", "How do I reset my password?", vec, answer, clock())
    hit = reader.lookup("acme|0000000000000000|k", "how do I reset my password", vec, clock())
    assert hit is not None and hit.value == answer  # forgotten, backfilled again


def test_the_mark_of_the_last_entry_read_never_moves_back(redis_url, prefix):
    """Two lookups of one namespace can overlap now that a round trip lets the step lock go: the
    one that read less, finishing last, must not move the replica's mark back (the entries after
    it would be read again, and older copies replace what was stored locally since).  Stream ids
    are compared as numbers: ``…-10`` comes after ``…-2``."""
    cache = from_url(redis_url, prefix, semantic_cache=semantic()).semantic_cache
    cache._remember("ns", b"1700000000123-10")
    cache._remember("ns", b"1700000000123-2")
    assert cache._seen["ns"] == b"1700000000123-10"
    cache._remember("ns", b"1700000000124-0")
    assert cache._seen["ns"] == b"1700000000124-0"


def test_a_foreign_entry_in_a_semantic_stream_is_skipped_not_served(redis_url, prefix, caplog):
    """A plain-JSON value published to a tenant's stream (not by a gateway) was replicated and
    then served as a hit: the request failed as an internal error ('dict' has no 'text')."""
    clock = FakeClock()
    one = replica(redis_url, prefix, clock, "from one")
    assert one.complete("How do I reset my password?", tenant="acme").ok
    r = one.pipeline.semantic_cache.link.client
    (key,) = list(r.scan_iter(f"{prefix}:semantic:*"))
    (_, fields), = r.xrange(key)
    r.xadd(key, {**fields, b"o": b"someone-else", b"e": encode_entry({"text": "x"}, clock())})
    two = replica(redis_url, prefix, clock, "from two")
    with caplog.at_level(logging.WARNING, "llmlab.backends"):
        out = two.complete("how can I reset my password", tenant="acme")
    assert out.ok and out.text in ("from one", "from two"), out.error
    assert any("where an answer was expected" in rec.getMessage() for rec in caplog.records)
