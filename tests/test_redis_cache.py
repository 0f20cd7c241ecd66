"""The exact cache on a real redis-server: TTL from the write, stale grace, tenant isolation, codec safety."""
from __future__ import annotations

import logging
import pickle
import time

import pytest

from llmlab import (CachedAnswer, CacheOutcome, ConfigError, Deployment, ErrorKind, FixedRouter, Gateway, OutcomeKind,
                    RetryPolicy)
from llmlab.backends import Backends, RedisUnavailable, from_url
from llmlab.backends.codec import CodecError, decode_entry, encode_entry
from llmlab.cache.store import MemoryStore
from llmlab.scripted import FakeClock, ScriptedDriver
from redis_fixtures import (any_redis_url, closed_port_url, prefix, redis_server, redis_url,  # noqa: F401
                            start_redis)

pytestmark = pytest.mark.redis

ANSWER = CachedAnswer("the answer", "gpt-4o", 12, 34, 0.00123, 1_700_000_000.0, {"intent": "refund", "n": [1, 2]})
DEPS = [Deployment("gpt-4o", "gpt-4o"), Deployment("mini", "gpt-4o-mini")]


def gateway(backends: Backends, clock: FakeClock, driver: ScriptedDriver | None = None, **kw) -> Gateway:
    return Gateway(DEPS, router=FixedRouter("gpt-4o"), fallbacks={"gpt-4o": ["mini"]}, clock=clock,
                   driver=driver or ScriptedDriver(clock=clock), seed=0, **backends.gateway_kwargs(), **kw)


def test_roundtrip_keeps_every_field(any_redis_url, prefix):
    store = from_url(any_redis_url, prefix).cache_store
    assert store.put("acme", "k1", ANSWER, 100.0) is True
    hit = store.get("acme", "k1", 130.0)
    assert hit.value == ANSWER and hit.age_s == 30.0 and not hit.stale
    assert store.link.client.exists(f"{prefix}:cache:acme:k1")


def test_ttl_counts_from_the_write_and_hits_never_extend_it(redis_url, prefix):
    backends = from_url(redis_url, prefix, cache_ttl_s=100, stale_grace_s=50)
    store, r = backends.cache_store, backends.client
    store.put("t", "k", ANSWER, 1000.0)
    pttl0 = r.pttl(store.redis_key("t", "k"))
    assert 149_000 < pttl0 <= 150_000  # Redis keeps it for ttl + grace (for the last resort)
    for now in (1010.0, 1050.0, 1099.0):  # hits ...
        assert store.get("t", "k", now) is not None
    assert r.pttl(store.redis_key("t", "k")) <= pttl0  # ... never push the Redis expiry out
    assert store.get("t", "k", 1100.0) is None  # 100 s after the write: a miss, however popular
    stale = store.get("t", "k", 1120.0, allow_stale=True)
    assert stale.stale and stale.age_s == 120.0 and stale.value == ANSWER  # the last resort may read it
    assert store.get("t", "k", 1150.0, allow_stale=True) is None  # beyond the grace period: gone
    assert store.stats["hits"] == 3 and store.stats["misses"] == 1 and store.stats["stale_served"] == 1


def test_namespaces_and_prefixes_never_share(any_redis_url, prefix):
    a = from_url(any_redis_url, prefix).cache_store
    other = from_url(any_redis_url, prefix + "x").cache_store
    a.put("tenant-a", "k", ANSWER, 0.0)
    assert a.get("tenant-b", "k", 1.0) is None
    assert other.get("tenant-a", "k", 1.0) is None
    # separators are escaped: ("a:b", "c") and ("a", "b:c") are different entries
    a.put("a:b", "c", ANSWER, 0.0)
    assert a.get("a", "b:c", 1.0) is None
    assert a.redis_key("a:b", "c") != a.redis_key("a", "b:c")
    assert a.clear("tenant-a") == 1 and a.get("tenant-a", "k", 1.0) is None and a.get("a:b", "c", 1.0) is not None


def test_two_gateways_share_the_cache_but_never_across_tenants(any_redis_url, prefix):
    clock = FakeClock()
    d1, d2 = ScriptedDriver(clock=clock, default="from gateway one"), ScriptedDriver(clock=clock, default="two")
    gw1 = gateway(from_url(any_redis_url, prefix, cache_ttl_s=60), clock, d1)
    gw2 = gateway(from_url(any_redis_url, prefix, cache_ttl_s=60), clock, d2)
    first = gw1.complete("Where is my order 1234?", tenant="acme")
    assert first.cache is CacheOutcome.MISS and first.text == "from gateway one"
    shared = gw2.complete("where is my   order 1234?".replace("where", "Where"), tenant="acme")
    assert shared.cache is CacheOutcome.EXACT_HIT and shared.text == "from gateway one" and not d2.calls
    other = gw2.complete("Where is my order 1234?", tenant="globex")
    assert other.cache is CacheOutcome.MISS and other.text == "two"
    clock.advance(60)
    assert gw2.complete("Where is my order 1234?", tenant="acme").cache is CacheOutcome.MISS  # TTL from the write


def test_a_cache_prefix_keeps_answers_apart_and_the_budgets_shared(any_redis_url, prefix):
    """A canary on another model shares the tenants' budgets with the fleet but not its answers:
    a key covers the request, not which model a deployment calls."""
    from llmlab import BudgetPolicy

    clock = FakeClock()
    fleet, canary = ScriptedDriver(clock=clock, default="from the fleet"), ScriptedDriver(clock=clock, default="new")
    policy = BudgetPolicy(default_cap=1.0)
    gw1 = gateway(from_url(any_redis_url, prefix, cache_ttl_s=60), clock, fleet, budget=policy)
    gw2 = gateway(from_url(any_redis_url, prefix, cache_ttl_s=60, cache_prefix=prefix + "-canary"), clock, canary,
                  budget=policy)
    spent = gw1.complete("Where is my order 1234?", tenant="acme")
    assert spent.cache is CacheOutcome.MISS and spent.cost_usd > 0
    other = gw2.complete("Where is my order 1234?", tenant="acme")
    assert other.cache is CacheOutcome.MISS and other.text == "new"
    assert gw2.budgets.spent("acme", clock()) == pytest.approx(spent.cost_usd + other.cost_usd)
    assert gw2.complete("Where is my order 1234?", tenant="acme").text == "new"  # its own entry


def test_stale_entry_is_the_last_resort_when_every_provider_fails(redis_url, prefix):
    clock = FakeClock()
    driver = ScriptedDriver(clock=clock, default="fresh answer")
    gw = gateway(from_url(redis_url, prefix, cache_ttl_s=10, stale_grace_s=3600), clock, driver,
                 retry=RetryPolicy(max_retries=0))
    gw.complete("status of ticket 7", tenant="t")
    clock.advance(20)
    driver.default = ErrorKind.SERVER
    out = gw.complete("status of ticket 7", tenant="t")
    assert out.kind is OutcomeKind.LAST_RESORT and out.text == "fresh answer"


def test_codec_is_json_and_rejects_anything_else(redis_url, prefix):
    data = encode_entry(ANSWER, 5.0)
    assert data.startswith(b"{") and decode_entry(data) == (ANSWER, 5.0)
    assert decode_entry(encode_entry({"plain": [1, "x"]}, 1.0)) == ({"plain": [1, "x"]}, 1.0)
    odd = CachedAnswer("t", "m", 1, 1, 0.0, 0.0, {"obj": object(), "nan": float("nan"), 3: ("a", None)})
    decoded, _ = decode_entry(encode_entry(odd, 0.0))
    assert decoded.metadata["3"] == ["a", None] and decoded.metadata["nan"] == "nan"
    for bad in (b"", b"\x80\x81", b"[1,2]", b'{"f": 2}', b'{"f":1,"w":"x","t":"answer","v":{}}',
                b'{"f":1,"w":1,"t":"answer","v":{"text":1,"model":"m"}}',
                b'{"f":1,"w":1,"t":"answer","v":{"text":"a","model":"m","prompt_tokens":true,'
                b'"completion_tokens":1,"cost_usd":0,"created_at":0}}', b"[" * 100_000):
        with pytest.raises(CodecError):
            decode_entry(bad)


@pytest.mark.parametrize("written_at", [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"9" * 400])
def test_an_entry_written_at_a_non_finite_time_is_a_miss_not_forever_fresh(redis_url, prefix, written_at):
    """json reads NaN/Infinity/1e400 as floats; every age comparison with a NaN write time is
    false, so such an entry was served as fresh (and as the last resort) until Redis expired it."""
    backends = from_url(redis_url, prefix)
    store = backends.cache_store
    body = encode_entry(ANSWER, 1.0).replace(b'"w":1.0', b'"w":' + written_at)
    backends.client.set(store.redis_key("t", "k"), body)
    assert store.get("t", "k", 1e9) is None and store.get("t", "k", 1e9, allow_stale=True) is None
    assert store.stats["corrupt"] == 2


@pytest.mark.parametrize("field, value", [("prompt_tokens", b"-5"), ("cost_usd", b"Infinity"), ("cost_usd", b"-1.0")])
def test_an_answer_with_negative_or_infinite_numbers_is_refused(field, value):
    body = encode_entry(ANSWER, 1.0)
    start = body.index(f'"{field}":'.encode()) + len(field) + 3
    end = min(i for i in (body.index(b",", start), body.index(b"}", start)))
    with pytest.raises(CodecError, match=field):
        decode_entry(body[:start] + value + body[end:])


def test_a_plain_json_value_at_a_gateway_cache_key_is_a_miss(redis_url, prefix, caplog):
    """The codec also carries plain JSON values; one written at a gateway's cache key (by another
    tool) was served as a hit and failed every identical request as an internal error."""
    clock = FakeClock()
    backends = from_url(redis_url, prefix)
    gw = gateway(backends, clock)
    assert gw.complete("hello there").ok
    r = backends.client
    for key in r.scan_iter(f"{prefix}:cache:*"):
        r.set(key, encode_entry({"text": "planted"}, clock()))
    with caplog.at_level(logging.WARNING, "llmlab.backends"):
        again = gw.complete("hello there")
    assert again.ok and again.cache is CacheOutcome.MISS, again.error
    assert backends.cache_store.stats["corrupt"] == 1


class _Boom:
    triggered = False

    def __reduce__(self):
        return (_trigger, ())


def _trigger():  # would run if anything unpickled the value
    _Boom.triggered = True
    return "pwned"


def test_a_pickled_value_planted_in_redis_is_never_unpickled(redis_url, prefix, caplog):
    backends = from_url(redis_url, prefix)
    store = backends.cache_store
    backends.client.set(store.redis_key("t", "k"), pickle.dumps(_Boom()))
    with caplog.at_level(logging.WARNING, "llmlab.backends"):
        assert store.get("t", "k", 0.0) is None and store.get("t", "k", 0.0, allow_stale=True) is None
    assert not _Boom.triggered and store.stats["corrupt"] == 2
    assert sum("undecodable" in r.getMessage() for r in caplog.records) == 1  # rate-limited warning


def test_unreachable_redis_at_start_up_is_a_typed_error_naming_the_url():
    url = closed_port_url()
    with pytest.raises(RedisUnavailable) as info:
        from_url(url, connect_timeout_s=0.2)
    message = str(info.value)
    assert url.replace(":hunter2@", ":***@") in message and "hunter2" not in message
    assert "on_unavailable='degrade'" in message and isinstance(info.value, ConnectionError)


def test_degrade_at_start_up_runs_on_in_memory_backends(caplog):
    clock = FakeClock()
    with caplog.at_level(logging.WARNING, "llmlab.backends"):
        backends = from_url(closed_port_url(), on_unavailable="degrade", connect_timeout_s=0.2)
    assert backends.degraded and "unavailable" in backends.reason and isinstance(backends.cache_store, MemoryStore)
    assert any("degrading to in-memory" in r.getMessage() for r in caplog.records)
    gw = gateway(backends, clock)
    assert gw.complete("hello").ok and gw.complete("hello").cache is CacheOutcome.EXACT_HIT


@pytest.mark.parametrize("how", ["wrong password", "no permission", "no such database"])
@pytest.mark.parametrize("mode", ["raise", "degrade"])
def test_a_redis_that_refuses_the_urls_settings_is_a_config_error_even_under_degrade(redis_server, prefix, how,
                                                                                      mode):
    """'degrade' is for a Redis that cannot be reached.  One that answers but refuses the URL's
    settings (a typo'd password, an ACL, a database it does not have) was degraded to in-memory
    backends too, with a warning: every replica then kept its own budgets, so a tenant's cap was
    multiplied by the replica count until someone read the logs.  Now a ConfigError, either way."""
    user = f"u{prefix[-8:]}"
    admin = redis_server.client()
    admin.execute_command("ACL", "SETUSER", user, "on", ">right-pass", "~*",
                          "-@all" if how == "no permission" else "+@all")
    try:
        password, db = ("wrong-pass", 0) if how == "wrong password" else ("right-pass", 1)
        if how == "no such database":
            db = 7  # the fixture's server has 2
        url = f"redis://{user}:{password}@127.0.0.1:{redis_server.port}/{db}"
        with pytest.raises(ConfigError) as info:
            from_url(url, on_unavailable=mode)
        message = str(info.value)
        assert info.value.field == "url" and "Redis answered" in message
        assert "wrong-pass" not in message and "right-pass" not in message
    finally:
        admin.execute_command("ACL", "DELUSER", user)


@pytest.mark.parametrize("mode", ["raise", "degrade"])
def test_a_busy_redis_at_start_up_is_an_outage_not_a_config_error(start_redis, mode):
    """A Redis running a long script answers every client ``BUSY`` (a plain ResponseError) until
    it ends: an outage that waiting fixes.  It was read as refused settings — a ConfigError
    saying the password, user or database was wrong, even under on_unavailable='degrade'."""
    import threading

    server = start_redis()
    admin = server.client()
    admin.config_set("busy-reply-threshold", 50)  # ms: other clients hear BUSY after this
    hog = threading.Thread(target=lambda: server.client().eval(
        "local t = redis.call('TIME') while true do local n = redis.call('TIME') "
        "if (n[1] - t[1]) * 1000000 + n[2] - t[2] >= 1500000 then break end end", 0))
    hog.start()
    try:
        time.sleep(0.3)
        if mode == "raise":
            with pytest.raises(RedisUnavailable, match="BUSY"):
                from_url(server.url, on_unavailable=mode)
        else:
            backends = from_url(server.url, on_unavailable=mode)
            assert backends.degraded and "BUSY" in backends.reason
    finally:
        hog.join()


@pytest.mark.parametrize("mode", ["raise", "degrade"])
def test_a_database_number_a_redis_cluster_refuses_is_a_config_error(mode):
    """A cluster node refuses SELECT ("ERR SELECT is not allowed in cluster mode", a plain
    ResponseError) for a URL naming a database other than 0: a setting no wait fixes.  Only the
    standalone server's "DB index is out of range" was read as refused settings, so under
    'degrade' the gateway ran on in-memory budgets (a cap per replica) with a warning."""
    import socket
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:  # a node answering every command as a cluster node answers SELECT
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                while conn.recv(65536):
                    conn.sendall(b"-ERR SELECT is not allowed in cluster mode\r\n")

    threading.Thread(target=serve, daemon=True).start()
    try:
        with pytest.raises(ConfigError) as info:
            from_url(f"redis://127.0.0.1:{port}/1", on_unavailable=mode)
        assert info.value.field == "url" and "cluster mode" in str(info.value)
    finally:
        listener.close()


@pytest.mark.parametrize("kwargs", [
    {"url": "http://localhost:6379"}, {"url": "localhost:6379"}, {"url": 6379},
    {"prefix": ""}, {"prefix": "a b"}, {"prefix": "x*"}, {"prefix": "a\\"}, {"on_unavailable": "ignore"},
    {"budgets_on_error": "maybe"}, {"rate_limits_on_error": "sometimes"}, {"cache_ttl_s": 0},
    {"socket_timeout_s": -1}, {"stale_grace_s": float("nan")}, {"cache_ttl_s": float("inf")},
    {"stale_grace_s": float("inf")}, {"socket_timeout_s": float("inf")}, {"connect_timeout_s": 1e9},
    {"retry_interval_s": float("inf")}, {"cache_prefix": ""}, {"cache_prefix": "a*"},
    {"url": "redis+cluster://127.0.0.1:1", "cache_prefix": "{x}"},
])
def test_bad_settings_are_config_errors(kwargs):
    kwargs = {"url": "redis://127.0.0.1:1/0", **kwargs}
    with pytest.raises(ConfigError):
        from_url(**kwargs)


def test_request_metadata_never_reaches_the_shared_cache(redis_url, prefix):
    """Metadata is the caller's (user ids, e-mails) and travels to the ledger; the cache entries
    that every replica reads (exact and semantic) must not carry it, masked or not."""
    from llmlab.cache.embedders import HashedNgramEmbedder
    from llmlab.cache.semantic import SemanticCache

    clock = FakeClock()
    backends = from_url(redis_url, prefix, semantic_cache=SemanticCache(HashedNgramEmbedder()))
    gw = gateway(backends, clock)
    meta = {"user_email": "kim.minsu@example.com", "session": "sess-7f3a9c"}
    first = gw.complete("Where is my order?", tenant="acme", metadata=meta)
    assert first.ok and first.metadata == meta  # the ledger still has it
    r = backends.client
    stored = b"".join(r.get(k) for k in r.scan_iter(f"{prefix}:cache:*"))
    stored += b"".join(f for k in r.scan_iter(f"{prefix}:semantic:*") for _, row in r.xrange(k) for f in row.values())
    assert b"order" in stored or b"answer" in stored  # the entries were written
    assert b"kim.minsu" not in stored and b"sess-7f3a9c" not in stored
    hit = gw.complete("Where is my order?", tenant="acme", metadata={"user_email": "lee@example.com"})
    assert hit.cache is CacheOutcome.EXACT_HIT and hit.metadata == {"user_email": "lee@example.com"}


def test_a_tenant_id_with_a_lone_surrogate_is_served_like_any_other(redis_url, prefix):
    """json.loads('"\\ud800"') gives a lone surrogate and the gateway accepts any tenant string;
    the Redis keys percent-encoded it as UTF-8 and raised, an internal error for that tenant."""
    from llmlab import BudgetPolicy, RateLimit

    clock = FakeClock()
    backends = from_url(redis_url, prefix, default_limit=RateLimit(rpm=100, tpm=100_000))
    gw = gateway(backends, clock, budget=BudgetPolicy(default_cap=1.0))
    odd, other = "acme\ud800", "acme\udfff"
    first = gw.complete("Where is my order?", tenant=odd)
    assert first.ok and first.kind is OutcomeKind.MODEL, first.error
    assert gw.complete("Where is my order?", tenant=odd).cache is CacheOutcome.EXACT_HIT
    assert gw.complete("Where is my order?", tenant=other).cache is CacheOutcome.MISS  # its own keys
    assert backends.budgets.spent(odd, clock()) == pytest.approx(first.cost_usd)
