"""State a gateway keeps while it stays up: what a request leaves behind once it is answered."""
from __future__ import annotations

import gc
import weakref

from llmlab import GatewayError, RateLimit, RateLimited, RateLimiter


class _Body(bytearray):
    """A caller's local (a web request's body) that a weak reference can watch."""


def test_raising_an_outcomes_error_does_not_pin_the_callers_frames_in_the_ledger(make_gateway):
    gw = make_gateway(rate_limiter=RateLimiter(default=RateLimit(rpm=1)))
    bodies: list[weakref.ref] = []

    def handler(i: int) -> str:
        body = _Body(10_000)
        bodies.append(weakref.ref(body))
        try:
            gw.complete(f"question {i}", tenant="t").raise_for_error()
        except GatewayError as exc:
            return exc.code
        return "ok"

    codes = [handler(i) for i in range(20)]
    gc.collect()
    assert codes == ["ok"] + ["rate_limited"] * 19
    assert len(gw.ledger.records) == 20
    assert sum(ref() is not None for ref in bodies) == 0  # each handler's locals were kept by its error
    error = gw.ledger.records[-1].error
    try:
        gw.ledger.records[-1].raise_for_error()
    except RateLimited as raised:  # the same error, by type and fields
        assert str(raised) == str(error) and raised.retry_after_s == error.retry_after_s
        assert raised.tenant == error.tenant and raised.limit == error.limit
    assert error.__traceback__ is None


def test_cache_keys_do_not_pin_every_long_prompt_they_were_computed_for():
    """The key memos hold their texts: 65,536 distinct 8 KB retrieved contexts (and 16,384
    normalised copies) stayed in memory in a process that never saw them again."""
    import tracemalloc

    from llmlab.cache.keys import CacheKeyPolicy

    policy = CacheKeyPolicy()
    context = "retrieved article text " * 500  # ≈ 11.5 KB
    first = policy.key([{"role": "system", "content": context + " 0"}, {"role": "user", "content": "q"}], {})
    assert first == policy.key([{"role": "system", "content": "  " + context.replace(" ", "\n") + " 0"},
                                {"role": "user", "content": "q"}], {})  # still normalised: the same key
    gc.collect()
    tracemalloc.start()
    try:
        for i in range(1, 800):
            policy.key([{"role": "system", "content": f"{context} {i}"}, {"role": "user", "content": "q"}], {})
        gc.collect()
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert held < 8_000_000  # ≈ 6 MB: the last 256 contexts and their normalised copies (≈ 18 MB before)
