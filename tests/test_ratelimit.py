import pytest

from llmlab import ConfigError, RateLimit, RateLimited, RateLimiter


def test_requests_per_minute_bucket_with_exact_retry_time():
    rl = RateLimiter(default=RateLimit(rpm=2))
    assert rl.acquire("t", "free", 10, now=0) is None
    assert rl.acquire("t", "free", 10, now=0) is None
    refusal = rl.acquire("t", "free", 10, now=0)
    assert refusal.limit == "requests/min" and refusal.retry_after_s == pytest.approx(30.0)
    assert rl.acquire("t", "free", 10, now=29.9) is not None
    assert rl.acquire("t", "free", 10, now=30.0) is None
    assert rl.acquire("other", "free", 10, now=0) is None  # per tenant


def test_tokens_per_minute_and_refusal_consumes_nothing():
    rl = RateLimiter(per_plan={"free": RateLimit(rpm=100, tpm=1000)})
    assert rl.acquire("t", "free", 900, now=0) is None
    refusal = rl.acquire("t", "free", 200, now=0)
    assert refusal.limit == "tokens/min" and refusal.retry_after_s == pytest.approx(6.0)
    assert rl.acquire("t", "free", 100, now=0) is None  # the refused request took no request slot or tokens
    assert rl.acquire("t", "paid", 10**9, now=0) is None  # paid plan: unlimited


def test_bad_limits_are_config_errors():
    with pytest.raises(ConfigError) as info:
        RateLimit(rpm=-5)
    assert info.value.field == "rate_limit.rpm"
    with pytest.raises(ConfigError):
        RateLimit(tpm="lots")


def test_gateway_returns_typed_rate_limited_outcome(make_gateway, clock):
    gw = make_gateway(rate_limiter=RateLimiter(default=RateLimit(rpm=1)))
    assert gw.complete("one", tenant="t").ok
    out = gw.complete("two", tenant="t")
    assert not out.ok and isinstance(out.error, RateLimited)
    assert out.error.retry_after_s == pytest.approx(60.0)
    with pytest.raises(RateLimited):
        out.raise_for_error()
    clock.advance(60)
    assert gw.complete("three", tenant="t").ok


def test_buckets_of_idle_tenants_are_dropped_so_memory_follows_the_last_minute():
    """A long-running gateway sees ever new tenants: each used to keep its two buckets for good."""
    rl = RateLimiter(default=RateLimit(rpm=10, tpm=10_000))
    now = 0.0
    for batch in range(40):  # 20,000 tenants over 40 minutes, 500 active in any one minute
        for i in range(500):
            assert rl.acquire(f"t{batch}-{i}", "free", 100, now) is None
        now += 61.0
    assert len(rl._buckets) <= 4 * 2 * 500  # the last minute's buckets, at most doubled between sweeps


def test_dropping_idle_buckets_keeps_the_limits_of_busy_tenants():
    rl = RateLimiter(default=RateLimit(rpm=2))
    assert rl.acquire("busy", "free", 1, now=0.0) is None
    assert rl.acquire("busy", "free", 1, now=0.0) is None
    for i in range(3 * RateLimiter.SWEEP_MIN):  # new tenants within the same minute: sweeps run
        rl.acquire(f"other{i}", "free", 1, now=1.0 + i / 1e6)
    assert rl.acquire("busy", "free", 1, now=2.0).retry_after_s == pytest.approx(28.0)  # still empty
    assert len(rl._buckets) > RateLimiter.SWEEP_MIN  # nobody was full yet: nothing dropped
    assert rl.acquire("other0", "free", 1, now=2.0) is None  # its second of two
    assert rl.acquire("other0", "free", 1, now=2.0) is not None


def test_a_sweep_between_a_requests_two_buckets_does_not_drop_the_first_it_took():
    """A sweep runs when a new bucket would grow the table past its mark: a tenant's new
    tokens/min bucket could trigger it right after its requests/min bucket was made, full, and
    dropped with the idle ones; the request was then counted on a bucket no longer in the table."""
    rl = RateLimiter(per_tenant={"odd": RateLimit(rpm=100)}, default=RateLimit(rpm=1, tpm=10_000))
    assert rl.acquire("odd", "free", 1, now=0.0) is None  # one bucket: the table's size is odd from here
    for i in range(RateLimiter.SWEEP_MIN):
        assert rl.acquire(f"t{i}", "free", 100, now=0.0) is None
        assert rl.acquire(f"t{i}", "free", 100, now=0.0) is not None, f"tenant {i}'s second request passed"


def test_a_swept_bucket_keeps_the_tokens_a_request_used_beyond_its_hold():
    """Tokens used beyond what acquire took (retries, a cascade's two calls) are taken at settle,
    even when the bucket, refilled during a long request, was dropped by a sweep meanwhile."""
    rl = RateLimiter(default=RateLimit(tpm=6_000))
    assert rl.acquire("long", "free", 600, now=0.0) is None
    for i in range(RateLimiter.SWEEP_MIN):  # new tenants while the request streams: sweeps run
        rl.acquire(f"other{i}", "free", 1, now=30.0)
    rl.settle("long", "free", 600, 3_600, now=30.0)  # used 3,000 more than it took
    refusal = rl.acquire("long", "free", 6_000, now=30.0)
    assert refusal is not None and refusal.retry_after_s == pytest.approx(30.0)


def test_a_refusal_names_the_longest_wait_of_the_two_buckets():
    """rpm=2, tpm=60 after two 30-token requests: the requests/min bucket needs 30 s, the
    tokens/min one 60 s.  The first bucket's 30 s was reported, and a caller who waited it was
    refused again."""
    rl = RateLimiter(default=RateLimit(rpm=2, tpm=60))
    assert rl.acquire("t", "p", 30, now=0) is None and rl.acquire("t", "p", 30, now=0) is None
    refusal = rl.acquire("t", "p", 60, now=0)
    assert refusal.limit == "tokens/min" and refusal.retry_after_s == pytest.approx(60.0)
    assert rl.acquire("t", "p", 60, now=refusal.retry_after_s) is None


def test_a_request_too_large_for_tokens_per_minute_is_too_large_while_rpm_refuses_too():
    """It was told "retry in 30 s" by the empty requests/min bucket, then refused as too large."""
    rl = RateLimiter(default=RateLimit(rpm=2, tpm=1_000))
    assert rl.acquire("t", "p", 10, now=0) is None and rl.acquire("t", "p", 10, now=0) is None
    refusal = rl.acquire("t", "p", 5_000, now=0)
    assert refusal.limit == "tokens/min" and refusal.retry_after_s == float("inf")
    assert RateLimited("t", refusal.limit, refusal.retry_after_s, tokens=5_000).too_large


def test_waiting_exactly_retry_after_on_an_epoch_clock_admits():
    """On a clock in epoch seconds ``now + retry_after_s`` rounds to 0.24 µs: the exact wait fell
    short about one time in five (refused again, "retry in 4.8e-08 s")."""
    rl = RateLimiter(default=RateLimit(rpm=60, tpm=300))
    now = 1_700_000_000.0
    assert rl.acquire("t", "p", 299, now) is None
    refusal = rl.acquire("t", "p", 40, now + 0.1)  # 7.8 s from the level 0.5 + 0.1 × 5 tokens/s
    assert refusal.limit == "tokens/min"
    assert refusal.retry_after_s == pytest.approx(7.7, abs=1e-5)
    assert rl.acquire("t", "p", 40, now + 0.1 + refusal.retry_after_s) is None


def test_a_caller_whose_clock_is_behind_the_bucket_is_told_the_whole_wait():
    """Threads read the clock before taking the lock: one may arrive with a ``now`` earlier than the
    bucket's last update.  The refill counts from that update, so the wait does too."""
    rl = RateLimiter(default=RateLimit(rpm=1))
    assert rl.acquire("t", "p", 1, now=100.0) is None
    refusal = rl.acquire("t", "p", 1, now=99.0)
    assert refusal.retry_after_s == pytest.approx(61.0)
    assert rl.acquire("t", "p", 1, now=99.0 + refusal.retry_after_s) is None


def test_the_user_message_rounds_the_hint_to_whole_seconds_without_the_margin():
    """The hint is rounded up by a microsecond; a 30 s wait still reads "retry in 30 s"."""
    rl = RateLimiter(default=RateLimit(rpm=2))
    now = 1_700_000_000.0
    assert rl.acquire("t", "p", 1, now) is None and rl.acquire("t", "p", 1, now) is None
    refusal = rl.acquire("t", "p", 1, now)
    assert 30.0 < refusal.retry_after_s < 30.001
    assert RateLimited("t", refusal.limit, refusal.retry_after_s).user_message.endswith("retry in 30 s.")
    assert RateLimited("t", "requests/min", 30.002).user_message.endswith("retry in 31 s.")
