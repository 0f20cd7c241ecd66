"""Retries and backoff as specified, for any fault sequence (hypothesis, derandomized):

* a deployment gets at most ``max_retries + 1`` calls; 429, 5xx/529, timeouts, connection
  failures and malformed answers are retried; a bad request (a content filter's too) stops the
  request; refused credentials, a model that is gone (404), params refused before sending and a
  context overflow go straight to the next deployment;
* retry ``n`` waits a full-jitter draw from ``[0, min(cap_s, base_s · 2ⁿ)]``, or the provider's
  ``Retry-After`` when longer; a ``Retry-After`` above ``max_retry_after_s`` is not waited for:
  the next deployment is called at once;
* the same seed gives the same waits;
* in the simulator, ``retry_amplification`` is the provider calls actually made per turn.
"""
from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmlab import Deployment, FixedRouter, Gateway, RetryPolicy
from llmlab.effects import CallError, ErrorKind
from llmlab.scripted import FakeClock, ScriptedDriver

RETRIED = {ErrorKind.RATE_LIMIT, ErrorKind.TIMEOUT, ErrorKind.SERVER, ErrorKind.OVERLOADED, ErrorKind.CONNECTION,
           ErrorKind.MALFORMED}
NEXT = {ErrorKind.AUTH, ErrorKind.NOT_FOUND, ErrorKind.UNSUPPORTED, ErrorKind.CONTEXT_WINDOW}
REPLY = st.one_of(st.just("ok"), st.tuples(st.sampled_from(sorted(RETRIED | NEXT | {ErrorKind.BAD_REQUEST})),
                                           st.sampled_from([None, 0.0, 0.3, 2.5, 50.0])))
NEVER_OPENS = {"failure_threshold": 1_000, "min_calls": 1_000}


def serve(script: list, policy: RetryPolicy, seed: int):
    clock = FakeClock()
    replies = ["ok: answered" if r == "ok" else CallError(r[0], "scripted", 0.0, r[1]) for r in script]
    driver = ScriptedDriver(clock=clock, scripts={"a": replies}, default="ok: answered")
    gw = Gateway([Deployment("a", "gpt-4o", context_window=8_000), Deployment("b", "gpt-4o-mini")],
                 router=FixedRouter("a"), fallbacks={"a": ["b"]}, retry=policy, breaker=NEVER_OPENS, cache=False,
                 input_guards=(), clock=clock, driver=driver, seed=seed)
    return gw.complete("q"), clock.sleeps


@settings(max_examples=200, derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(script=st.lists(REPLY, max_size=6), max_retries=st.integers(0, 3), base_s=st.sampled_from([0.05, 0.5, 2.0]),
       cap_factor=st.sampled_from([1.0, 3.0, 100.0]), max_retry_after_s=st.sampled_from([0.0, 1.0, 5.0]),
       seed=st.integers(0, 3))
def test_attempts_and_waits_follow_the_retry_policy(script, max_retries, base_s, cap_factor, max_retry_after_s, seed):
    policy = RetryPolicy(max_retries=max_retries, base_s=base_s, cap_s=base_s * cap_factor,
                         max_retry_after_s=max_retry_after_s)
    out, sleeps = serve(script, policy, seed)
    # what the policy says happens at the primary, reply by reply
    calls, ending = 0, "ok"
    for n in range(max_retries + 1):
        reply = script[n] if n < len(script) else "ok"
        calls += 1
        if reply == "ok":
            ending = "ok"
            break
        kind, retry_after = reply
        ending = kind
        if kind not in RETRIED or n == max_retries or (retry_after is not None and retry_after > max_retry_after_s):
            break
    primary = [a for a in out.attempts if a.deployment == "a"]
    assert len(primary) == calls
    if ending == "ok":
        assert out.ok and out.deployment == "a"
    elif ending is ErrorKind.BAD_REQUEST:
        assert out.error.code == "provider_rejected" and len(out.attempts) == calls  # no fallback
    else:
        assert out.ok and out.deployment == "b"
    # each wait: before retry n, full jitter under the exponential cap, or the Retry-After when longer
    assert sleeps == [a.waited_s for a in primary[1:]]
    for n, (before, waited) in enumerate(zip(primary, sleeps)):
        ceiling = min(policy.cap_s, policy.base_s * 2 ** n)
        assert before.retry_after_s is None or before.retry_after_s <= max_retry_after_s
        assert (before.retry_after_s or 0.0) <= waited <= max(ceiling, before.retry_after_s or 0.0)
    assert abs(out.latency_s - sum(sleeps)) < 1e-6  # the fake clock moves only when the chain waits
    assert serve(script, policy, seed)[1] == sleeps  # the seed fixes the jitter


def test_retry_amplification_is_the_provider_calls_made(monkeypatch):
    """``retry_amplification`` counts the attempts the ledger records; the simulated providers
    count the calls they served (retries, fallbacks, a classifier's calls, hedges).  The two must
    be the same number."""
    from llmlab.sim import run as sim_run
    from llmlab.sim import simulate

    apps = []
    run_once = sim_run.run_once

    def observed(*args, **kwargs):
        kwargs["observe"] = lambda env, app: apps.append(app)
        return run_once(*args, **kwargs)

    monkeypatch.setattr(sim_run, "run_once", observed)
    overrides = {"gateway.cache.embedder": "hashed", "gateway.hedge.after_s": 0.8,
                 "providers.gpt-4o.error_rate": 0.2, "baseline.enabled": False}
    summary = simulate("realtime-chat", requests=600, seed=3, progress=False, overrides=overrides).summary
    (app,) = apps
    served = sum(p.calls for p in app.driver.providers.values())
    assert summary["retry_amplification"] > 1.5 and summary["hedge_rate"] > 0  # retries and hedges in the run
    assert round(summary["retry_amplification"] * summary["requests"]) == served
