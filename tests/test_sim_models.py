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

from llmlab.effects import Call, CallResult, ErrorKind
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


SAME_ACCOUNT = """
name = "same-account"
[traffic]
requests = 40
rate_per_s = 2.0
fixed_prompt_tokens = 200
fixed_answer_tokens = 50
[[traffic.tenants]]
plan = "p"
[providers.key-a]
model = "gpt-4o"
rpm = 10.0
[providers.key-b]
model = "gpt-4o"
rpm = 10.0
[gateway.router]
type = "fixed"
deployment = "key-a"
[gateway.fallbacks]
key-a = ["key-b"]
[gateway.retry]
max_retries = 0
[gateway.cache]
exact = false
[baseline]
enabled = false
"""


def test_deployments_of_one_account_share_its_rate_limits(tmp_path):
    """Providers count requests per account and model, not per gateway deployment: two
    deployments of gpt-4o on one key drain one 10-requests/min limit, and falling back from one
    to the other meets the same 429s.  Each had its own bucket, so the fallback doubled the
    limit a scenario described."""
    from llmlab.sim import simulate

    path = tmp_path / "same_account.toml"
    path.write_text(SAME_ACCOUNT)
    apart = simulate(path, seed=0).turns
    shared = simulate(path, seed=0, overrides={"providers.key-a.rate_limit_group": "acct",
                                               "providers.key-b.rate_limit_group": "acct"}).turns
    # 40 turns in ≈ 20 s: a full bucket of 10 plus ≈ 3.3 refilled (10 a minute) is 13 answers a
    # bucket — 13 from each key apart, 13 in all when they share one
    served_apart = apart[apart["outcome"] == "model"]["deployment"].value_counts().to_dict()
    served_shared = shared[shared["outcome"] == "model"]["deployment"].value_counts().to_dict()
    assert served_apart == {"key-a": 13, "key-b": 13}
    assert served_shared == {"key-a": 13}
    assert (shared["outcome"] == "error").sum() == 27


def test_a_rate_limit_group_must_agree_on_its_limits(tmp_path):
    from llmlab.sim import load_scenario
    from llmlab.sim.scenario import ScenarioError

    path = tmp_path / "same_account.toml"
    path.write_text(SAME_ACCOUNT)
    groups = {"providers.key-a.rate_limit_group": "acct", "providers.key-b.rate_limit_group": "acct"}
    with pytest.raises(ScenarioError, match=r"^providers\.key-b\.tpm: the value of providers\.key-a\.tpm \(None\): "
                                            r"deployments of rate_limit_group 'acct' share one account's limits"):
        load_scenario(path, {**groups, "providers.key-b.tpm": 50_000.0})
    with pytest.raises(ScenarioError, match=r"^providers\.key-b\.rpm: the value of providers\.key-a\.rpm \(10\.0\)"):
        load_scenario(path, {**groups, "providers.key-b.rpm": 20.0})
    with pytest.raises(ScenarioError, match=r"^providers\.key-a\.rate_limit_group"):
        load_scenario(path, {"providers.key-a.rate_limit_group": ""})


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



def test_the_deployments_output_limit_cuts_a_call_that_asks_for_more_or_sets_no_bound():
    """A provider cuts an answer at its model's output limit (``max_output_tokens``) whatever the
    call asks: sent without ``max_tokens``, with only ``max_completion_tokens``, or with a larger
    ``max_tokens``, the 160-token answer came back whole — billed, timed and ``stop`` past a limit
    the real model cannot exceed."""
    env = simpy.Environment()
    p = provider(env, max_output_tokens=50)
    bare = call()
    newer = Call(bare.deployment, bare.messages, {"max_completion_tokens": 30}, metadata=bare.metadata)
    unbound, larger, smaller = _serve_all(p, [(0.0, bare, 1), (0.0, call(max_tokens=100), 2), (0.0, newer, 3)])
    assert (unbound.finish_reason, unbound.completion_tokens) == ("length", 50)
    assert unbound.latency_s == pytest.approx(0.4 + 50 / 80.0)
    assert (larger.finish_reason, larger.completion_tokens) == ("length", 50)
    assert (smaller.finish_reason, smaller.completion_tokens) == ("length", 30)


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


def test_a_simulated_errors_kind_is_drawn_apart_from_its_delay():
    """A 500 and a 529 come back after the same spread of delays (``error_latency_s`` × U(0.5, 1.5)),
    and ``overloaded_share`` of them are 529s.  Both came from one draw: every 529 arrived in the
    first ``overloaded_share`` of the range (0.5–0.8 s here), every 500 after it.  The kind stays
    a function of the request key and the deployment (common random numbers)."""
    env = simpy.Environment()
    share, n = 0.3, 4_000
    p = provider(env, error_rate=1.0, overloaded_share=share, error_latency_s=1.0)
    calls = [(0.0, call(), mix64(k)) for k in range(n)]
    results = _serve_all(p, calls)
    kinds = np.array([r.status for r in results])
    delays = np.array([r.latency_s for r in results])
    assert set(kinds.tolist()) == {500, 529}
    overloaded = kinds == 529
    assert abs(overloaded.mean() - share) < 4 * math.sqrt(share * (1 - share) / n)
    sd = 1.0 / math.sqrt(12.0)  # of U(0.5, 1.5)
    se = sd * math.sqrt(1.0 / overloaded.sum() + 1.0 / (~overloaded).sum())
    assert abs(delays[overloaded].mean() - delays[~overloaded].mean()) < 4 * se
    assert delays[overloaded].max() > 1.4 and delays[~overloaded].min() < 0.6  # each over the whole range
    again = _serve_all(provider(simpy.Environment(), error_rate=1.0, overloaded_share=share, error_latency_s=1.0),
                       calls[:200])
    assert [r.status for r in again] == kinds[:200].tolist()


# ----------------------------------------------------------------------------- conversation history
def _billed_history(t, base_prompt):
    """Per turn with no context from before the run: its prompt tokens less its own prompt."""
    alone = ~np.isin(t.session, list(t.carried))
    return alone, t.prompt_tokens.astype(np.int64) - base_prompt


@pytest.mark.parametrize("max_tokens", [400, None])
def test_a_later_turn_carries_each_earlier_answer_as_the_user_got_it(max_tokens):
    """A follow-up's prompt holds each earlier turn's question and answer (+ 8 tokens of framing),
    the answer cut at ``max_tokens`` as the provider cuts it (finish reason ``length``): counted
    at its drawn length, 3.5 % of realtime-chat's answers were billed again in every later turn
    ≈ 170 tokens longer than any user saw.  Without ``max_tokens``, whole."""
    from llmlab.catalogue import load_catalogue

    sc, t = _traffic_of("realtime-chat", {"traffic.max_tokens": max_tokens}, requests=4_000, seed=3)
    by_id = {i.id: i for i in load_catalogue()}
    base_prompt = np.array([by_id[t.intents[k]].prompt_tokens for k in t.intent], dtype=np.int64)
    shown = t.answer_tokens.astype(np.int64) if max_tokens is None else np.minimum(t.answer_tokens, max_tokens)
    if max_tokens is not None:
        assert (t.answer_tokens > max_tokens).mean() > 0.02  # cut answers there are, and follow-ups of them
    alone, billed = _billed_history(t, base_prompt)
    followed_cut = 0
    for i in np.flatnonzero(alone & (t.prev >= 0)):
        earlier = t.history(i)
        expected = sum(t.text_tokens[t.text[j]] + int(shown[j]) + 8 for j in earlier)
        assert billed[i] == expected, i
        followed_cut += any(shown[j] < t.answer_tokens[j] for j in earlier)
    assert (followed_cut > 20) == (max_tokens is not None)



LOW_LIMIT = """
name = "low-output-limit"
[traffic]
requests = 60
rate_per_s = 1.0
session_turns_mean = 3.0
think_time_s = 40.0
fixed_prompt_tokens = 100
fixed_answer_tokens = 300
[[traffic.tenants]]
plan = "p"
[providers.short]
model = "gpt-4o-mini"
max_output_tokens = 60
ttft_dist = "fixed"
ttft_s = 0.5
tokens_per_s = 100.0
tokens_per_s_sigma = 0.0
[gateway.router]
type = "fixed"
deployment = "short"
[gateway.cache]
exact = false
[baseline]
enabled = false
"""


@pytest.mark.parametrize("max_tokens", [1024, None])
def test_a_deployments_output_limit_cuts_the_answer_and_the_history_carries_the_cut(tmp_path, max_tokens):
    """A deployment's ``max_output_tokens`` is a provider's hard limit: the gateway sends
    ``max_tokens = min(request's, deployment's)``, so the 300-token answers come back cut at 60
    (billed 60, finish reason ``length``, timed for 60 tokens).  The next turn's history carried
    the whole 300 tokens the user never saw: every follow-up was billed 240 tokens too many per
    earlier answer."""
    from llmlab.sim import load_scenario, simulate
    from llmlab.sim.run import make_traffic

    path = tmp_path / "low_limit.toml"
    path.write_text(LOW_LIMIT)
    overrides = {"traffic.max_tokens": max_tokens}
    rows = simulate(path, seed=0, overrides=overrides).requests
    assert (rows["outcome"] == "model").all()
    assert (rows["completion_tokens"] == 60).all() and (rows["finish_reason"] == "length").all()
    assert np.allclose(rows["latency_s"], 0.5 + 60 / 100.0)
    t = make_traffic(load_scenario(path, overrides), requests=60, seed=0)
    followed = 0
    for i in range(len(t)):
        earlier = list(t.carried.get(int(t.session[i]), ([], []))[0]) + [int(t.text[j]) for j in t.history(i)]
        assert t.prompt_tokens[i] == 100 + sum(t.text_tokens[k] + 60 + 8 for k in earlier), i
        followed += bool(earlier)
    assert followed > 20
    assert (rows.sort_values("turn")["prompt_tokens"].to_numpy() == t.prompt_tokens).all()  # billed as counted


def test_the_history_cut_counts_only_deployments_that_answer(tmp_path):
    """The traffic is drawn before routing, for the run and its baseline: the history cuts an
    answer at the largest output limit among the deployments that can answer (route targets,
    fallbacks, the baseline) — a classifier only labels, its limit does not count."""
    from llmlab.sim import load_scenario
    from llmlab.sim.scenario import answer_cap, answer_deployments

    path = tmp_path / "low_limit.toml"
    path.write_text(LOW_LIMIT)
    assert answer_cap(load_scenario(path)) == 60
    assert answer_cap(load_scenario(path, {"traffic.max_tokens": 40})) == 40
    labelled = {"providers.labeller.model": "gpt-4o-mini", "providers.labeller.max_output_tokens": 500,
                "gateway.router": {"type": "classifier", "classifier": "labeller",
                                   "routes": {"faq": "short", "general": "short", "complex": "short"}},
                "baseline.model": "short"}
    sc = load_scenario(path, labelled)
    assert answer_deployments(sc) == ["short"] and answer_cap(sc) == 60
    assert answer_cap(load_scenario(path, {**labelled, "gateway.fallbacks.short": ["labeller"]})) == 500
    assert answer_cap(load_scenario(path, {**labelled, "baseline.model": "labeller"})) == 500


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


# ----------------------------------------------------------------------------- provider profiles
def _profile_table() -> dict[str, list[str]]:
    """``datasets/providers/README.md``'s table: profile → its cells."""
    rows = {}
    for line in (PROFILES / "README.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 6 and cells[0].startswith("`"):
            rows[cells[0].strip("`")] = cells
    return rows


def _numbers(text: str) -> list[float]:
    return [float(x) for x in re.findall(r"\d+(?:\.\d+)?", text)]


def test_the_profiles_readme_table_is_what_the_profile_files_say():
    table = _profile_table()
    assert sorted(table) == sorted(p.stem for p in PROFILES.glob("*.toml"))
    for name, (_, model, group, ttft, speed, incidents) in table.items():
        prof = tomllib.loads((PROFILES / f"{name}.toml").read_text(encoding="utf-8"))
        assert prof["provider"] == group, name
        assert _numbers(ttft)[0] == prof["ttft_s"], name
        assert _numbers(speed)[0] == prof["tokens_per_s"], name
        inc = prof.get("incidents")
        if inc is not None and "shares" not in incidents:
            stated = re.fullmatch(r"([\d.]+)/month, p50 ([\d.]+) min, p90 ([\d.]+) min", incidents)
            assert stated is not None, name
            assert [float(x) for x in stated.groups()] == [inc["per_month"], inc["duration_p50_min"],
                                                           inc["duration_p90_min"]], name
        elif inc is None:
            assert incidents in ("none recorded", "none"), name


#: the published medians the profiles cite (Artificial Analysis; /work/shared/FACTS.md, the README)
CITED = {"openai-gpt-4o": (0.39, (81.0, 81.0)), "azure-gpt-4o": (0.77, (115.0, 115.0)),
         "anthropic-claude-sonnet": (0.80, (64.0, 95.0)), "bedrock-claude-sonnet": (0.95, (53.0, 53.0))}


@pytest.mark.parametrize("name", sorted(p.stem for p in PROFILES.glob("*.toml")))
def test_each_profile_draws_the_first_token_and_speed_it_states(name):
    """Median TTFT and tokens/s as stated (and as cited), each lognormal with its σ, independent."""
    from llmlab.sim.scenario import ProviderConfig, load_profile

    # per stream: no concurrency limit here (the self-hosted profile queues beyond 8 streams)
    cfg = ProviderConfig(**{k: v for k, v in load_profile(name).items() if k not in ("name", "capacity")})
    env = simpy.Environment()
    p = SimProvider(env, name, cfg)
    n = 4_000
    # streamed: a call that is not shows its first token with its whole answer (TTFT = latency)
    big = call(timeout_s=1e9, stream=True, prompt_tokens=100, answer_tokens=1_000)
    res = [r for r in _serve_all(p, [(0.0, big, mix64(k)) for k in range(n)]) if r.ok]
    ttft = np.log([r.ttft_s for r in res])
    speed = np.log([1_000 / (r.latency_s - r.ttft_s) for r in res])
    # the sample median of a normal has SE σ·√(π/2)/√n, its SD's SE σ/√(2n): 4 SE each
    for logs, median, sigma in ((ttft, cfg.ttft_s, cfg.ttft_sigma), (speed, cfg.tokens_per_s, cfg.tokens_per_s_sigma)):
        assert abs(np.median(logs) - math.log(median)) < 4 * sigma * math.sqrt(math.pi / 2 / len(res))
        assert abs(logs.std() - sigma) < 4 * sigma / math.sqrt(2 * len(res))
    assert abs(np.corrcoef(ttft, speed)[0, 1]) < 4 / math.sqrt(len(res))
    if name in CITED:
        ttft_cited, (lo, hi) = CITED[name]
        assert cfg.ttft_s == pytest.approx(ttft_cited) and lo <= cfg.tokens_per_s <= hi


# ----------------------------------------------------------------------------- traffic
def _traffic(overrides, **size):
    return _traffic_of("b2b-saas", overrides, **size)


def _traffic_of(preset, overrides, **size):
    from llmlab.sim import load_scenario
    from llmlab.sim.run import make_traffic

    sc = load_scenario(preset, {"gateway.cache.embedder": "hashed", **overrides})
    return sc, make_traffic(sc, **size)


def test_hourly_turns_follow_the_diurnal_profile_in_local_time():
    """One-turn sessions: each hour's count is Poisson with mean ``rate × 3600 × profile[h] / mean``,
    the hour counted in the scenario's own time zone (b2b-saas starts at 09:00 in Seoul)."""
    from llmlab.sim.traffic import diurnal_profile

    sc, t = _traffic({"traffic.session_turns_mean": 1.0, "traffic.rate_per_s": 0.5}, hours=24.0, seed=4)
    assert sc.start.hour == 9
    hour = ((sc.start.hour + t.arrival_s / 3_600.0) % 24).astype(int)
    counts = np.bincount(hour, minlength=24)
    expected = 0.5 * 3_600.0 * diurnal_profile("business")
    assert ((counts - expected) ** 2 / expected).sum() < CHI2_23_999
    assert counts[10] > 5 * counts[3]  # 10:00 against 03:00: 2.0 against 0.08 in the profile


def _zipf_mle(counts: np.ndarray) -> tuple[float, float]:
    """Maximum-likelihood Zipf exponent over ranks 1…n and its standard error (Fisher information
    ``N·Var(ln r)`` under the fitted law)."""
    logr = np.log(np.arange(1, len(counts) + 1))
    n = counts.sum()

    def score(s):
        p = np.exp(-s * logr)
        p /= p.sum()
        return (p * logr).sum() - (counts * logr).sum() / n, p

    lo, hi = 0.0, 5.0
    for _ in range(60):  # the score falls as s rises: bisection
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if score(mid)[0] > 0 else (lo, mid)
    s = (lo + hi) / 2
    p = score(s)[1]
    return s, 1.0 / math.sqrt(n * ((p * logr ** 2).sum() - (p * logr).sum() ** 2))


def test_intent_popularity_and_tenant_skew_follow_their_zipf_exponents():
    from llmlab.catalogue import load_catalogue

    sc, t = _traffic({"traffic.languages": {"en": 1.0}}, requests=40_000, seed=2)
    ranked = sorted(load_catalogue().select(lang="en", domain="saas"), key=lambda i: i.popularity_rank)
    ids = {name: k for k, name in enumerate(t.intents)}
    counts = np.array([(t.intent == ids[i.id]).sum() if i.id in ids else 0 for i in ranked])
    s, se = _zipf_mle(counts)
    assert abs(s - sc.traffic.zipf_s) < 4 * se
    # the 40 paid tenants, Zipf with tenant_zipf_s = 1 over their numbers (per session: one turn a session here)
    one = _traffic({"traffic.session_turns_mean": 1.0}, requests=40_000, seed=2)[1]
    paid = np.array([one.tenants[k] for k in one.tenant])
    per = np.array([(paid == f"paid-{k:03d}").sum() for k in range(1, 41)])
    s, se = _zipf_mle(per)
    assert abs(s - 1.0) < 4 * se


def test_answer_lengths_keep_each_intents_mean_and_first_turns_its_prompt():
    """The lognormal jitter keeps each intent's catalogue mean (σ = answer_tokens_sigma); a turn
    without history is billed its intent's ``prompt_tokens`` exactly, later ones more."""
    from llmlab.catalogue import load_catalogue

    sc, t = _traffic({}, requests=40_000, seed=5)
    by_id = {i.id: i for i in load_catalogue()}
    typical = np.array([by_id[t.intents[k]].answer_tokens for k in t.intent], dtype=float)
    prompt = np.array([by_id[t.intents[k]].prompt_tokens for k in t.intent])
    ratio = t.answer_tokens / typical
    sigma = sc.traffic.answer_tokens_sigma
    sd = math.sqrt(math.exp(sigma ** 2) - 1)  # of the mean-one lognormal factor
    assert abs(ratio.mean() - 1.0) < 4 * sd / math.sqrt(len(ratio))
    assert abs(np.log(ratio).std() - sigma) < 0.01  # rounding to whole tokens blurs it slightly
    common = np.bincount(t.intent).argmax()  # the most asked intent alone: its own mean
    assert abs(ratio[t.intent == common].mean() - 1.0) < 4 * sd / math.sqrt((t.intent == common).sum())
    alone = (t.prev < 0) & ~np.isin(t.session, list(t.carried))
    assert (t.prompt_tokens[alone] == prompt[alone]).all() and (t.prompt_tokens[~alone] > prompt[~alone]).all()


# ----------------------------------------------------------------------------- incidents
@pytest.mark.parametrize("profile", ["openai-gpt-4o", "anthropic-claude-sonnet"])
def test_incidents_come_at_their_monthly_rate_and_last_their_published_median_and_p90(profile):
    """Over many seeds of ten days: incidents starting in the run are Poisson at ``per_month`` / 30
    days; with those already going at 0 (``rate × mean duration`` of them) the count's mean is
    ``rate × (horizon + mean duration)``; the durations of those that start in the run have the
    profile's median (41 or 82 min) and 90th percentile (251 or 318 min)."""
    from llmlab.sim.outages import SECONDS_PER_MONTH, draw_incidents, lognormal_params
    from llmlab.sim.scenario import IncidentConfig

    inc = IncidentConfig(**tomllib.loads((PROFILES / f"{profile}.toml").read_text(encoding="utf-8"))["incidents"])
    horizon, seeds = 10 * 86_400.0, 1_500
    rate = inc.per_month / SECONDS_PER_MONTH
    mu, sigma = lognormal_params(inc.duration_p50_min * 60.0, inc.duration_p90_min * 60.0)
    counts, started, durations = [], [], []
    for seed in range(seeds):
        windows = draw_incidents("g", inc, horizon, np.random.default_rng([seed, 99]))
        inside = [w for w in windows if w.start_s > 0.0]
        counts.append(len(windows))
        started.append(len(inside))
        durations += [(w.end_s - w.start_s) / 60.0 for w in inside]
        assert all(w.end_s > w.start_s >= 0.0 and w.start_s < horizon for w in windows)
    for observed, mean in ((started, rate * horizon), (counts, rate * (horizon + math.exp(mu + sigma ** 2 / 2)))):
        assert abs(np.mean(observed) - mean) < 4 * math.sqrt(mean / seeds)  # Poisson: variance = mean
    assert np.var(started) == pytest.approx(rate * horizon, rel=0.15)  # SE of a Poisson variance ≈ √(2/n) ≈ 4 %
    durations = np.array(durations)
    for minutes, share in ((inc.duration_p50_min, 0.5), (inc.duration_p90_min, 0.9)):
        below = (durations < minutes).mean()  # binomial: SE √(p(1 − p)/n)
        assert abs(below - share) < 4 * math.sqrt(share * (1 - share) / len(durations))


QUEUED = """
name = "queued"
[traffic]
requests = 20
rate_per_s = 5.0
fixed_prompt_tokens = 100
fixed_answer_tokens = 50
[[traffic.tenants]]
plan = "p"
[providers.standby]
model = "ft-model"
price = { input_per_1m = 0.0, output_per_1m = 0.0 }
hourly_cost_usd = 3600.0
capacity = 1
timeout_s = 600.0
ttft_dist = "fixed"
ttft_s = 0.1
tokens_per_s = 500.0
tokens_per_s_sigma = 0.0
[gateway.router]
type = "fixed"
deployment = "standby"
[gateway.cache]
exact = false
[baseline]
enabled = false
"""


def test_the_run_ends_with_its_last_turn_not_with_a_leftover_timer(tmp_path):
    """A call that queued for a slot left its 600 s queue timeout scheduled after the slot came;
    the run's duration was the clock's last event, so the standby's hourly cost ($1 a second
    here) was charged for ten idle minutes after the last answer."""
    from llmlab.sim import simulate

    path = tmp_path / "queued.toml"
    path.write_text(QUEUED)
    r = simulate(path, seed=0)
    end = float((r.turns["arrival_s"] + r.turns["latency_s"]).max())
    assert end <= r.summary["duration_s"] < 60.0  # the last answer, or the traffic's horizon after it
    assert r.summary["fixed_cost_usd"] == pytest.approx(r.summary["duration_s"])  # $1 a second
