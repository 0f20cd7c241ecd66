"""The simulator's models against what they claim: the provider profiles against their cited
figures, the providers' rate limits and outage windows against what a real provider does, and
the traffic's diurnal profile, popularity and answer lengths against their parameters.

Statistical checks use fixed seeds and tolerances derived from the sample (standard errors,
chi-square quantiles), so they are deterministic and fail when a model drifts from its claim.
"""
from __future__ import annotations

import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import simpy
from test_sim_providers import call, provider

from llmlab.effects import CallResult, ErrorKind
from llmlab.sim.outages import Window
from llmlab.sim.providers import SimProvider, mix64

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PROFILES = ROOT / "datasets" / "providers"

#: chi-square 99.9 % quantile with 23 degrees of freedom (24 hours less one): Wilson-Hilferty,
#: 23 × (1 − 2/(9·23) + 3.0902·√(2/(9·23)))³ = 49.7 — a sound model fails it once in a thousand seeds
CHI2_23_999 = 49.7


def _serve_all(p: SimProvider, calls) -> list:
    """Serve ``(at, call, key)`` triples, each in its own process; results in the order given."""
    env = p.env
    out: list = [None] * len(calls)

    def one(k, at, c, key):
        if at:
            yield env.timeout(at)
        out[k] = yield from p.serve(c, key)

    for k, (at, c, key) in enumerate(calls):
        env.process(one(k, at, c, key))
    env.run()
    return out


# ----------------------------------------------------------------------------- rate limits
TOO_LARGE = """
name = "too-large"
[traffic]
requests = 12
rate_per_s = 1.0
fixed_prompt_tokens = 40000
fixed_answer_tokens = 100
max_tokens = 500
[[traffic.tenants]]
plan = "p"
[providers.tier1]
model = "gpt-4o"
tpm = 30000.0
[providers.other]
model = "gpt-4o"
[gateway.router]
type = "fixed"
deployment = "tier1"
[gateway.fallbacks]
tier1 = ["other"]
[gateway.retry]
max_retries = 2
max_retry_after_s = 120.0
[gateway.cache]
exact = false
[baseline]
enabled = false
"""


def test_a_request_larger_than_the_whole_token_limit_gets_no_retry_hint(tmp_path):
    """No wait makes 40,500 tokens fit a 30,000 tokens/min limit: OpenAI answers "Request too large
    … must be reduced" and llmlab's own limiter gives no retry hint.  The simulated provider said
    ``Retry-After: 60``, so a gateway willing to honour long hints waited two minutes per turn
    (122 s) before it fell back; now it retries after its short backoff and falls back."""
    from llmlab.sim import simulate

    path = tmp_path / "too_large.toml"
    path.write_text(TOO_LARGE)
    result = simulate(path, seed=0)
    assert (result.turns["deployment"] == "other").all()
    assert result.turns["latency_s"].max() < 10.0  # two backoffs of at most 0.5 s and 1 s, and the answer
    first = result.requests["attempts"].iloc[0][0]
    assert first["retry_after_s"] is None and "40500 tokens exceed the 30000 tokens/min limit" in first["error"]


def test_a_provider_request_limit_below_one_a_minute_is_refused_up_front():
    """A bucket holding less than one request never admits one: ``rpm = 0.5`` made every call a 429
    (with a 60 s hint), forever.  The gateway's own limits refuse it the same way."""
    from llmlab.sim import load_scenario
    from llmlab.sim.scenario import ScenarioError

    with pytest.raises(ScenarioError, match=r"^providers\.gpt-4o\.rpm: must be >= 1"):
        load_scenario("b2b-saas", {"providers.gpt-4o.rpm": 0.5, "gateway.cache.embedder": "hashed"})
    assert load_scenario("b2b-saas", {"providers.gpt-4o.rpm": 1.0, "gateway.cache.embedder": "hashed"})


# ----------------------------------------------------------------------------- finish reason
def test_finish_reason_length_only_when_the_answer_was_cut():
    env = simpy.Environment()
    p = provider(env)
    exact, longer, shorter = _serve_all(p, [(0.0, call(max_tokens=160, answer_tokens=160), 1),
                                            (0.0, call(max_tokens=100, answer_tokens=160), 2),
                                            (0.0, call(max_tokens=200, answer_tokens=160), 3)])
    assert (exact.finish_reason, exact.completion_tokens) == ("stop", 160)
    assert (longer.finish_reason, longer.completion_tokens) == ("length", 100)
    assert (shorter.finish_reason, shorter.completion_tokens) == ("stop", 160)


def test_an_agents_tool_choice_is_not_reported_as_a_cut_answer():
    """realtime-chat sends its tool-choosing call with ``max_tokens`` = the choice's length: each one
    was ``length`` in the requests table, 37 % of the model answers where 3 % were really cut."""
    from llmlab.sim import simulate

    result = simulate("realtime-chat", requests=300, seed=0, baseline=False,
                      overrides={"gateway.cache.embedder": "hashed", "outages.windows": []})
    model = result.requests[result.requests["outcome"] == "model"]
    tool_choices = model["meta_step"] == "tool_call"
    assert tool_choices.sum() > 30 and (model.loc[tool_choices, "finish_reason"] == "stop").all()
    cut = model["meta_answer_tokens"] > result.scenario.traffic.max_tokens
    assert cut.any() and ((model["finish_reason"] == "length") == cut).all()


# ----------------------------------------------------------------------------- outage windows
def _queued_behind_a_long_call(windows, **kw):
    """A one-slot provider: a call holding the slot from 0 to 3 s (1 s first token + 160 tokens at
    80/s), and three calls sent at 0.1 s that queue behind it and are served at 3, 4 and 5 s."""
    env = simpy.Environment()
    p = provider(env, windows=windows, capacity=1, ttft_dist="fixed", ttft_s=1.0, **kw)
    calls = [(0.0, call(answer_tokens=160), 0)] + [(0.1, call(answer_tokens=0), k) for k in (1, 2, 3)]
    return _serve_all(p, calls)


def test_a_slowdown_applies_to_the_calls_the_server_handles_during_it_not_those_sent_before():
    """A queued call is served as the server is when it leaves the queue.  Read when it was sent,
    a slowdown that began while calls queued left them at full speed (and one that ended slowed
    the calls dequeued after it)."""
    began = _queued_behind_a_long_call([Window("dep", 2.0, 100.0, "slow", latency_factor=3.0)])
    assert [r.latency_s for r in began] == pytest.approx([3.0, 2.9 + 3.0, 5.9 + 3.0, 8.9 + 3.0])
    ended = _queued_behind_a_long_call([Window("dep", 0.0, 2.0, "slow", latency_factor=3.0)])
    assert [r.latency_s for r in ended] == pytest.approx([9.0, 9.9, 10.9, 11.9])  # the first was slowed ×3


def test_an_error_storm_that_ended_while_calls_queued_fails_none_of_them():
    storm = [Window("dep", 0.05, 2.0, "errors", error_rate=1.0)]  # the queued calls are sent during it
    first, *queued = _queued_behind_a_long_call(storm, error_latency_s=0.0)
    assert all(isinstance(r, CallResult) for r in [first, *queued])
    assert [r.latency_s for r in queued] == pytest.approx([3.9, 4.9, 5.9])


def test_a_call_dequeued_while_the_deployment_is_down_fails_as_down_and_frees_its_slot():
    first, *queued = _queued_behind_a_long_call([Window("dep", 2.0, 100.0, "down")])
    assert isinstance(first, CallResult) and first.latency_s == pytest.approx(3.0)
    # each queued call reaches the server at 3 s, 3.3 s and 3.6 s: a 503 after down_latency_s (0.3 s)
    assert [(r.status, round(r.latency_s, 6)) for r in queued] == [(503, 3.2), (503, 3.5), (503, 3.8)]


def test_a_down_answer_that_would_come_after_the_timeout_is_a_timeout():
    env = simpy.Environment()
    p = provider(env, windows=[Window("dep", 0.0, 10.0, "down")], down_latency_s=2.0)
    r, = _serve_all(p, [(1.0, call(timeout_s=0.5), 1)])
    assert r.kind is ErrorKind.TIMEOUT and r.latency_s == pytest.approx(0.5)
