"""Simulated providers and outages: each behaviour in isolation, in virtual time."""
from __future__ import annotations

import math

import numpy as np
import pytest
import simpy

from llmlab.effects import Call, CallError, CallResult, Deployment, ErrorKind
from llmlab.sim.outages import (OutageState, Window, draw_incidents, expected_unavailability, lognormal_params,
                                scenario_windows)
from llmlab.sim.providers import SimProvider, SlotPool, mix64, uniforms
from llmlab.sim.scenario import IncidentConfig, ProviderConfig, load_scenario


def provider(env, windows=(), **kw) -> SimProvider:
    base = dict(model="gpt-4o", ttft_s=0.4, tokens_per_s=80.0, ttft_sigma=0.0, tokens_per_s_sigma=0.0)
    base.update(kw)
    return SimProvider(env, "dep", ProviderConfig(**base), list(windows))


def call(timeout_s=60.0, stream=False, max_tokens=None, purpose="answer", **meta) -> Call:
    metadata = {"prompt_tokens": 300, "answer_tokens": 160, "intent": "x.y.en", "answer_key": "x.y.en", **meta}
    params = {"max_tokens": max_tokens} if max_tokens else {}
    return Call(Deployment("dep", "gpt-4o", timeout_s=timeout_s), ({"role": "user", "content": "hi"},), params,
                stream=stream, purpose=purpose, metadata=metadata)


def serve(env, p, c, key=1, at=0.0):
    out = {}

    def proc():
        if at:
            yield env.timeout(at)
        out["r"] = yield from p.serve(c, key)

    env.process(proc())
    env.run()
    return out["r"]


def test_counter_based_draws_are_deterministic_and_uniform():
    assert uniforms(42) == uniforms(42)
    assert uniforms(42) != uniforms(43)
    u = np.array([uniforms(mix64(i)) for i in range(20_000)])
    assert ((u > 0) & (u < 1)).all()
    assert np.allclose(u.mean(axis=0), 0.5, atol=0.01)
    assert abs(np.corrcoef(u[:, 0], u[:, 1])[0, 1]) < 0.03


def test_latency_is_ttft_plus_tokens_over_speed_and_tokens_come_from_metadata():
    env = simpy.Environment()
    r = serve(env, provider(env), call(stream=True))
    assert isinstance(r, CallResult)
    assert r.prompt_tokens == 300 and r.completion_tokens == 160
    assert r.latency_s == pytest.approx(0.4 + 160 / 80.0)
    assert r.ttft_s == pytest.approx(0.4)
    env = simpy.Environment()
    whole = serve(env, provider(env), call())  # not streamed: its first token comes with the whole answer
    assert whole.latency_s == whole.ttft_s == pytest.approx(0.4 + 160 / 80.0)
    assert r.text.startswith("«x.y.en»")
    env = simpy.Environment()
    capped = serve(env, provider(env), call(max_tokens=40))
    assert capped.completion_tokens == 40


def test_timeout_whole_call_or_first_token_when_streaming():
    env = simpy.Environment()
    r = serve(env, provider(env), call(timeout_s=1.0))
    assert isinstance(r, CallError) and r.kind is ErrorKind.TIMEOUT and r.latency_s == pytest.approx(1.0)
    env = simpy.Environment()
    streamed = serve(env, provider(env), call(timeout_s=1.0, stream=True))
    assert isinstance(streamed, CallResult)  # the first token came in 0.4 s


def test_rate_limit_answers_429_with_the_wait():
    env = simpy.Environment()
    p = provider(env, rpm=2)
    results = []

    def burst():
        for k in range(3):
            results.append((yield from p.serve(call(), k)))

    env.process(burst())
    env.run()
    assert [isinstance(r, CallResult) for r in results] == [True, True, False]
    err = results[2]
    assert err.kind is ErrorKind.RATE_LIMIT and err.status == 429
    assert 0 < err.retry_after_s <= 30.0  # one request refills in 30 s at 2 rpm, minus the time already passed


def test_token_limit_counts_max_tokens():
    env = simpy.Environment()
    p = provider(env, tpm=1000)
    r = serve(env, p, call(max_tokens=900))  # 300 prompt + 900 max_tokens > 1000
    # larger than the whole limit: no wait makes it fit, so no Retry-After (test_sim_models has why)
    assert isinstance(r, CallError) and r.kind is ErrorKind.RATE_LIMIT and r.retry_after_s is None
    assert "1200 tokens exceed the 1000 tokens/min limit" in r.message


def test_capacity_queues_fifo_and_queue_wait_counts_toward_the_timeout():
    env = simpy.Environment()
    p = provider(env, capacity=1, ttft_dist="fixed", ttft_s=1.0)
    done = {}

    def one(k, c):
        done[k] = (yield from p.serve(c, k))

    c = call(answer_tokens=0)
    for k in range(3):
        env.process(one(k, c))
    env.process(one(9, call(answer_tokens=0, timeout_s=1.5)))  # would wait 3 s: gives up at 1.5 s
    env.run()
    assert [round(done[k].latency_s, 6) for k in range(3)] == [1.0, 2.0, 3.0]
    assert isinstance(done[9], CallError) and done[9].kind is ErrorKind.TIMEOUT
    assert done[9].latency_s == pytest.approx(1.5)
    assert p.slots.free == 1 and p.in_system == 0


def test_slot_pool_skips_waiters_that_gave_up():
    env = simpy.Environment()
    pool = SlotPool(env, 1)
    pool.free = 0
    dead, alive = [env.event(), False], [env.event(), True]
    pool.waiters.extend([dead, alive])
    pool.release()
    assert alive[0].triggered and not dead[0].triggered and pool.free == 0
    pool.release()
    assert pool.free == 1


def test_error_rate_and_outage_windows():
    env = simpy.Environment()
    p = provider(env, error_rate=0.2)
    results = []

    def many():
        for k in range(2000):
            results.append((yield from p.serve(call(answer_tokens=1), mix64(k))))

    env.process(many())
    env.run()
    share = sum(not r.ok for r in results) / len(results)
    assert 0.17 < share < 0.23
    assert {r.kind for r in results if not r.ok} <= {ErrorKind.SERVER, ErrorKind.OVERLOADED}

    down = [Window("dep", 10.0, 20.0, "down")]
    env = simpy.Environment()
    r = serve(env, provider(env, windows=down), call(), at=15.0)
    assert isinstance(r, CallError) and r.status == 503 and r.kind is ErrorKind.OVERLOADED
    env = simpy.Environment()
    assert isinstance(serve(env, provider(env, windows=down), call(), at=25.0), CallResult)
    env = simpy.Environment()
    hang = provider(env, windows=down, down_mode="hang")
    r = serve(env, hang, call(timeout_s=7.0), at=12.0)
    assert r.kind is ErrorKind.TIMEOUT and r.latency_s == pytest.approx(7.0)
    env = simpy.Environment()
    slow = serve(env, provider(env, windows=[Window("dep", 0.0, 99.0, "slow", latency_factor=3.0)]), call(), at=1.0)
    assert slow.latency_s == pytest.approx(3 * (0.4 + 160 / 80.0))


def test_classifier_answers_the_category_with_the_configured_accuracy():
    env = simpy.Environment()
    p = provider(env, classifier_accuracy=0.8)
    labels = []

    def many():
        for k in range(3000):
            r = yield from p.serve(call(purpose="classify", category="complex", query_tokens=12), mix64(k))
            labels.append(r.text)

    env.process(many())
    env.run()
    assert 0.76 < labels.count("COMPLEX") / len(labels) < 0.84
    assert set(labels) == {"FAQ", "GENERAL", "COMPLEX"}


def test_outage_state_combines_overlapping_windows():
    state = OutageState([Window("a", 0, 10, "errors", error_rate=0.2), Window("a", 5, 15, "slow", latency_factor=2),
                         Window("a", 8, 9, "down")])
    state.refresh(6.0)
    assert (state.down, state.error_rate, state.latency_factor, state.next_change) == (False, 0.2, 2.0, 8.0)
    state.refresh(8.5)
    assert state.down and state.next_change == 9.0
    state.refresh(12.0)
    assert (state.down, state.error_rate, state.latency_factor, state.next_change) == (False, 0.0, 2.0, 15.0)
    state.refresh(20.0)
    assert state.next_change == math.inf and state.latency_factor == 1.0


def test_incident_process_matches_its_parameters():
    profile = IncidentConfig(per_month=9.8, duration_p50_min=82, duration_p90_min=318)
    mu, sigma = lognormal_params(82 * 60.0, 318 * 60.0)
    assert math.exp(mu) == pytest.approx(82 * 60.0)
    windows = draw_incidents("openai", profile, 50 * 30 * 86_400.0, np.random.default_rng(3))  # 50 months
    assert 400 < len(windows) < 590
    durations = np.array([w.end_s - w.start_s for w in windows]) / 60.0
    assert np.median(durations) == pytest.approx(82, rel=0.2)
    assert np.percentile(durations, 90) == pytest.approx(318, rel=0.3)
    openai = load_scenario("b2b-saas").providers["gpt-4o"].incidents
    anthropic = load_scenario("b2b-saas").providers["claude-sonnet"].incidents
    assert 1 - expected_unavailability(openai) == pytest.approx(0.9965, abs=0.0005)
    assert 1 - expected_unavailability(anthropic) == pytest.approx(0.9938, abs=0.0005)


def test_scenario_windows_are_reproducible_per_seed():
    sc = load_scenario("b2b-saas")
    month = 30 * 86_400.0
    a, b, c = (scenario_windows(sc, month, s) for s in (1, 1, 2))
    assert a == b and a != c
    assert any(w.origin == "scheduled" for w in a) and any(w.origin == "incident" for w in a)
