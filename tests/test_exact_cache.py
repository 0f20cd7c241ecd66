import pytest

from llmlab import CacheOutcome, ConfigError, OutcomeKind
from llmlab.cache import CacheKeyPolicy, MemoryStore


def test_ttl_counts_from_write_and_a_hit_never_extends_it():
    store = MemoryStore(capacity=10, ttl_s=100)
    store.put("t", "k", "v", now=0)
    assert store.get("t", "k", now=60).value == "v"      # hit at 60 s
    assert store.get("t", "k", now=99.9).value == "v"
    assert store.get("t", "k", now=100.0) is None          # expired 100 s after the write, not after the hit
    stale = store.get("t", "k", now=500, allow_stale=True)
    assert stale is not None and stale.stale and stale.age_s == 500


def test_lru_eviction_at_capacity():
    store = MemoryStore(capacity=2, ttl_s=100)
    store.put("t", "a", 1, 0)
    store.put("t", "b", 2, 0)
    store.get("t", "a", 1)        # a is now most recent
    store.put("t", "c", 3, 2)     # evicts b
    assert store.get("t", "b", 3) is None
    assert store.get("t", "a", 3).value == 1 and store.get("t", "c", 3).value == 3
    assert store.stats["evictions"] == 1


def test_namespaces_are_isolated():
    store = MemoryStore()
    store.put("tenant-a", "k", "secret", 0)
    assert store.get("tenant-b", "k", 1) is None


def test_keys_cover_model_and_parameters():
    policy = CacheKeyPolicy("prompt_params")
    msgs = [{"role": "user", "content": "Where is my order?"}]
    base = policy.key(msgs, {"model": None, "temperature": 0})
    assert policy.key(msgs, {"model": "gpt-4o", "temperature": 0}) != base
    assert policy.key(msgs, {"model": None, "temperature": 0.7}) != base
    assert policy.key(msgs, {"model": None, "temperature": 0, "max_tokens": 50}) != base
    assert policy.key(msgs, {"model": None, "temperature": 0.0, "user": "u1"}) == base  # irrelevant params ignored
    assert policy.key([{"role": "user", "content": "  Where is   my order? "}], {"model": None, "temperature": 0}) == base
    assert policy.key([{"role": "system", "content": "x"}, *msgs], {"model": None, "temperature": 0}) != base


@pytest.mark.parametrize("mode", ["prompt_params", "exact"])
def test_a_key_does_not_depend_on_which_spelling_of_a_value_came_first(mode):
    """The params memo is a tuple of the items, where True == 1 == 1.0: whichever a policy met
    first fixed the digest of all three, so two processes (sharing a Redis cache) could key the
    same request apart.  They are one value in the key, as 1.0 and 1 already were."""
    msgs = [{"role": "user", "content": "Where is my order?"}]
    spellings = [True, 1, 1.0]
    keys = set()
    for first in spellings:
        policy = CacheKeyPolicy(mode)
        policy.key(msgs, {"model": None, "n": first})  # seen first: memoised
        keys.update(policy.key(msgs, {"model": None, "n": value}) for value in spellings)
    assert len(keys) == 1
    assert CacheKeyPolicy(mode).key(msgs, {"model": None, "n": 2}) not in keys


def test_keys_and_context_fingerprints_follow_the_whole_conversation():
    """Per-message digests: message boundaries, roles, order and every earlier turn count."""
    from llmlab.cache import context_fingerprint

    policy = CacheKeyPolicy("prompt_params")
    user = lambda text: {"role": "user", "content": text}  # noqa: E731
    said = lambda text: {"role": "assistant", "content": text}  # noqa: E731
    p = {"model": "gpt-4o"}
    keys = {policy.key(msgs, p) for msgs in (
        [user("refund my order")], [user("refund"), user("my order")], [user("refund my"), user("order")],
        [said("refund my order")], [user("hi"), said("hello"), user("refund my order")],
        [user("hi"), said("hello!"), user("refund my order")], [said("hello"), user("hi"), user("refund my order")])}
    assert len(keys) == 7
    history = [user("hi"), said("hello"), user("refund my order")]
    assert policy.key(history, p) == policy.key([user(" hi "), said("hello\n"), user("refund  my order")], p)
    assert context_fingerprint([user("refund my order")]) == ""
    assert context_fingerprint(history) == context_fingerprint([*history[:2], user("something else")])
    assert context_fingerprint(history) != context_fingerprint([user("hi"), said("hi there"), user("refund")])
    assert len(context_fingerprint(history)) == 16 and len(policy.key(history, p)) == 32
    assert policy.key([{"role": "user", "content": ["part", {"type": "text"}]}], p)  # non-text content still keys


def test_exact_mode_is_strict():
    policy = CacheKeyPolicy("exact")
    msgs = [{"role": "user", "content": "Where is my order?"}]
    assert policy.key(msgs, {}) != policy.key([{"role": "user", "content": "Where is my order? "}], {})
    with pytest.raises(ConfigError) as info:
        CacheKeyPolicy("fuzzy")
    assert info.value.field == "cache_key_mode"


def test_gateway_cache_isolated_between_tenants_and_ttl_not_extended(make_gateway, driver, clock):
    gw = make_gateway(cache_ttl_s=60)
    a1 = gw.complete("What is your refund policy?", tenant="a")
    assert a1.kind is OutcomeKind.MODEL and a1.cache is CacheOutcome.MISS
    clock.advance(30)
    assert gw.complete("What is your refund policy?", tenant="a").cache is CacheOutcome.EXACT_HIT
    b = gw.complete("What is your refund policy?", tenant="b")
    assert b.cache is CacheOutcome.MISS and b.kind is OutcomeKind.MODEL
    clock.advance(30)  # 60 s after a's write, 30 s after its hit
    again = gw.complete("What is your refund policy?", tenant="a")
    assert again.cache is CacheOutcome.MISS
    assert len(driver.calls) == 3


def test_cache_bypass_per_request(make_gateway, driver):
    gw = make_gateway()
    gw.complete("hi there", tenant="a")
    out = gw.complete(gw.request("hi there", tenant="a", cache=False))
    assert out.cache is CacheOutcome.BYPASS and len(driver.calls) == 2


@pytest.mark.parametrize("mode", ["prompt_params", "exact"])
def test_one_pass_of_digests_gives_the_key_and_the_namespace_parts(mode):
    """The pipeline hashes a request's messages once (digests) for the exact key and the
    semantic namespace's context: each part equals what key() and context_fingerprint give alone."""
    from llmlab.cache import context_fingerprint

    policy = CacheKeyPolicy(mode)
    messages = [{"role": "system", "content": "Be  brief."}, {"role": "user", "content": "hi"},
                {"role": "assistant", "content": None,
                 "tool_calls": [{"id": "1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
                {"role": "user", "content": [{"type": "text", "text": "and this?"},
                                             {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]
    for params in ({"model": "m", "temperature": 0.2}, {"model": None, "tools": [{"type": "function"}]}):
        for n in range(len(messages) + 1):
            digests = policy.digests(messages[:n])
            assert policy.key_from(digests, params) == policy.key(messages[:n], params)
            assert policy.context_from(messages[:n], digests) == context_fingerprint(messages[:n])
            assert policy.context_from(messages[:n], None) == context_fingerprint(messages[:n])
        assert policy.namespace_key(params) == policy.key((), params)
        assert policy.namespace_key(params) != CacheKeyPolicy(mode).key((), {**params, "seed": 1})


def test_clear_drops_one_tenants_entries_or_all_as_the_redis_store_does():
    """Only the Redis store could drop a tenant's cached answers (a deletion request, a bad answer
    cached): the in-memory one had no ``clear``."""
    store = MemoryStore(capacity=10, ttl_s=100)
    for tenant in ("a", "a:b", "b"):
        store.put(tenant, "k", tenant, 0)
    store.put("a", "k2", "a2", 0)
    assert store.clear("a") == 2
    assert store.get("a", "k", 1) is None and store.get("a", "k2", 1) is None
    assert store.get("a:b", "k", 1).value == "a:b" and store.get("b", "k", 1).value == "b"
    assert store.clear() == 2 and len(store) == 0
