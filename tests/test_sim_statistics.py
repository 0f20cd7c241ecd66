"""The simulated world's statistics: what the scenario and the provider profiles describe is what
the simulator draws, checked with large samples (fixed seeds, tolerances from the sample size)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from test_sim_providers import call, provider
from test_sim_validation import FIXED

from llmlab.sim.outages import draw_incidents, lognormal_params
from llmlab.sim.scenario import IncidentConfig

MONTH_S = 30 * 86_400.0


def test_a_short_run_sees_its_share_of_incident_time_not_only_incidents_that_start_in_it():
    """Incidents are a stationary process: at any instant, one that began before the run may still
    be in force.  Drawing only the incidents that *start* inside a one-hour run gave it a fifth of
    the outage time the profile describes (0.6 % instead of 3.3 % for OpenAI's profile)."""
    profile = IncidentConfig(per_month=9.8, duration_p50_min=82, duration_p90_min=318)
    mu, sigma = lognormal_params(82 * 60.0, 318 * 60.0)
    steady = profile.per_month / MONTH_S * math.exp(mu + sigma * sigma / 2.0)  # share of time, overlaps counted twice
    horizon = 3_600.0
    covered = []
    for seed in range(6_000):
        windows = draw_incidents("openai", profile, horizon, np.random.default_rng(seed))
        assert all(0.0 <= w.start_s < horizon and w.end_s > w.start_s for w in windows)
        covered.append(sum(min(w.end_s, horizon) - w.start_s for w in windows) / horizon)
    covered = np.array(covered)
    se = covered.std(ddof=1) / math.sqrt(len(covered))  # ≈ 0.0017 here: 4 SE ≈ 20 % of the truth
    assert abs(covered.mean() - steady) < 4 * se


def _traffic(overrides, **size):
    from llmlab.sim import load_scenario
    from llmlab.sim.run import make_traffic

    sc = load_scenario("b2b-saas", {"gateway.cache.embedder": "hashed", **overrides})
    return sc, make_traffic(sc, **size)


def test_turns_arrive_at_rate_per_s_from_the_first_minute_when_conversations_are_long():
    """A run begins in the steady state: conversations that began before it send their later turns
    into it.  Starting empty, ten-turn conversations with two-minute pauses ran at a quarter of
    ``rate_per_s`` in the first ten minutes and a third short over the hour (4,800 turns, not 7,200)."""
    long_chats = {"traffic.diurnal": "flat", "traffic.session_turns_mean": 10.0, "traffic.think_time_s": 120.0}
    counts, early, first_turns = [], [], []
    for seed in range(12):
        _, t = _traffic(long_chats, hours=1.0, seed=seed)
        counts.append(len(t))
        early.append(int((t.arrival_s < 600.0).sum()))
        ongoing = np.isin(t.session, list(t.carried))
        first_turns.append(float(((t.prev < 0) & ~ongoing).mean()))
    # turns come in sessions, so the hour's count is overdispersed: SD ≈ sqrt(7200 × 19) ≈ 370 per run,
    # ≈ 107 for the mean of 12 (E[T²]/E[T] = 2m − 1 = 19); 3 SE ≈ 4.5 % of 7,200
    assert np.mean(counts) == pytest.approx(2.0 * 3_600, rel=0.045)
    assert np.mean(early) == pytest.approx(2.0 * 600, rel=0.12)  # SD of the mean ≈ 44 (3.6 %)
    # a conversation's first turn is one turn in session_turns_mean: the ongoing ones began before
    assert np.mean(first_turns) == pytest.approx(0.1, abs=0.02)


def test_a_conversation_in_progress_at_the_start_keeps_its_earlier_turns_as_context():
    from llmlab.sim.run import _App, _Rows

    _, t = _traffic({"traffic.diurnal": "flat", "traffic.session_turns_mean": 4.0, "traffic.think_time_s": 60.0},
                    hours=0.25, seed=3)
    ongoing = [i for i in range(len(t)) if t.prev[i] < 0 and int(t.session[i]) in t.carried]
    assert len(ongoing) > 20
    app = _App.__new__(_App)
    app.t, app.rows, app.system, app._user = t, _Rows(t), (), {}
    for i in ongoing[:20]:
        earlier = t.carried[int(t.session[i])]
        msgs = app.messages(i)
        assert len(msgs) == 2 * len(earlier[0]) + 1  # each earlier turn: the user's text and the answer
        assert [m["role"] for m in msgs[:2]] == ["user", "assistant"]
        # the prompt is billed with the context it carries
        assert t.prompt_tokens[i] > sum(t.text_tokens[x] for x in earlier[0])


FLASH_CROWDS = {"traffic.diurnal": "flat", "traffic.session_turns_mean": 1.0, "traffic.burst_rate_per_day": 12.0,
                "traffic.burst_duration_s": 1_800.0, "traffic.burst_multiplier": 3.0}


def test_a_short_run_sees_the_flash_crowds_already_going_when_it_starts():
    """Random bursts overlap and multiply: with ``a`` = bursts/day × duration / 86,400 in force on
    average, the rate is ``rate_per_s × e^(a (multiplier − 1))``.  Only bursts that started inside
    the run were drawn, so a 15-minute run saw a quarter of the half-hour crowds it should."""
    from llmlab.sim import load_scenario
    from llmlab.sim.traffic import session_starts

    cfg = load_scenario("b2b-saas", FLASH_CROWDS).traffic
    a = 12.0 * 1_800.0 / 86_400.0
    expected = 2.0 * math.exp(a * 2.0)  # 3.30 requests/s
    rates = np.array([len(session_starts(cfg, 900.0, 0.0, np.random.default_rng(seed))) / 900.0
                      for seed in range(1_500)])
    se = rates.std(ddof=1) / math.sqrt(len(rates))  # ≈ 0.09 (2.6 %): 4 SE is a third of the old bias (−32 %)
    assert abs(rates.mean() - expected) < 4 * se


def test_the_monthly_projection_counts_the_traffic_of_random_flash_crowds(tmp_path):
    from llmlab.pricing import monthly_cost
    from llmlab.sim import simulate
    from llmlab.sim.run import expected_rate_per_s

    path = tmp_path / "fixed.toml"
    path.write_text(FIXED)  # fixed token lengths: the projection has a closed form
    s = simulate(path, seed=3, baseline=False, overrides={"traffic.burst_multiplier": 3.0,
                                                          "traffic.burst_rate_per_day": 12.0,
                                                          "traffic.burst_duration_s": 1_800.0}).summary
    factor = math.exp(12.0 * 1_800.0 / 86_400.0 * 2.0)
    assert s["projected_monthly_cost_usd"] == pytest.approx(monthly_cost(4.0 * factor * 86_400, 500, 200, "gpt-4o"),
                                                            rel=1e-9)
    # scheduled bursts are events of this run, not a monthly rate: the projection leaves them out
    from llmlab.sim import load_scenario

    sc = load_scenario(str(path), {"traffic.burst_multiplier": 3.0,
                                   "traffic.bursts": [{"start_s": 10.0, "duration_s": 60.0, "multiplier": 5.0}]})
    assert expected_rate_per_s(sc.traffic) == 4.0


def _call(timeout_s=1e9, **meta):
    """test_sim_providers' call, with a short answer and prompt and no timeout to speak of."""
    return call(timeout_s=timeout_s, **{"prompt_tokens": 100, "answer_tokens": 10, **meta})


@pytest.mark.parametrize("limits", [{"rpm": 60.0}, {"tpm": 6_000.0}, {"rpm": 90.0, "tpm": 9_000.0}])
@pytest.mark.parametrize("latency_s", [0.0, 0.05])
def test_retry_after_is_when_the_limit_has_room_again_not_sooner_not_later(limits, latency_s):
    """A client that waits exactly ``Retry-After`` (from sending) must get in, and a retry 2 ms
    sooner must not: the wait was rounded to the nearest millisecond (a retry up to 0.5 ms early,
    and ``Retry-After: 0`` for waits under 0.5 ms), and the bucket's float arithmetic refused a
    retry at exactly the refill instant (the 2,875 retries of this loop all failed)."""
    import copy

    import simpy

    from llmlab.effects import CallError, CallResult, ErrorKind
    from llmlab.sim.providers import mix64

    env = simpy.Environment()
    p = provider(env, rate_limit_latency_s=latency_s, **limits)
    rng = np.random.default_rng(1)
    seen = []

    def client():
        for k in range(1_500):
            if rng.uniform() < 0.3:
                yield env.timeout(float(rng.exponential(0.3)))
            sent = env.now
            r = yield from p.serve(_call(), mix64(k))
            if isinstance(r, CallError):
                assert r.kind is ErrorKind.RATE_LIMIT and r.retry_after_s > 0
                buckets = [copy.copy(b) for b in (p.rpm, p.tpm) if b is not None]
                early = sent + r.retry_after_s - 0.002
                amounts = [1.0 if b is p.rpm else 110.0 for b in (p.rpm, p.tpm) if b is not None]
                assert any(c.wait_for(a, early) > 0 for c, a in zip(copy.deepcopy(buckets), amounts))
                yield env.timeout(max(0.0, sent + r.retry_after_s - env.now))
                again = yield from p.serve(_call(), mix64(10_000 + k))
                seen.append(isinstance(again, CallResult))

    env.process(client())
    env.run()
    assert len(seen) > 200 and all(seen)


def test_no_call_outlasts_its_timeout_when_an_error_follows_a_long_queue():
    """The gateway gives up on a call after ``timeout_s`` from sending it, queue included: a 500
    that would come later is a timeout.  The error's own delay was capped at the whole timeout,
    so a call that queued 9.9 s of a 10 s timeout failed at about 10.3 s, as a server error."""
    import simpy

    from llmlab.effects import CallError, ErrorKind
    from llmlab.sim.providers import mix64, uniforms

    env = simpy.Environment()
    p = provider(env, capacity=1, error_rate=0.5, error_latency_s=1.0)
    keys = [mix64(k) for k in range(200)]
    ok_key = next(k for k in keys if uniforms(k ^ p.salt)[2] >= 0.5)
    err_keys = [k for k in keys if uniforms(k ^ p.salt)[2] < 0.5][:40]
    out = []

    def caller(key, at, answer_tokens):
        yield env.timeout(at)
        out.append((yield from p.serve(_call(timeout_s=10.0, answer_tokens=answer_tokens), key)))

    # one long call holds the only slot for 9.9 s; each error call queues behind it and the ones before
    env.process(caller(ok_key, 0.0, int((9.9 - 0.4) * 80)))
    for k, key in enumerate(err_keys):
        env.process(caller(key, 0.001 * (k + 1), 10))
    env.run()
    failed = [r for r in out if isinstance(r, CallError)]
    assert len(failed) == 40
    assert max(r.latency_s for r in failed) <= 10.0 + 1e-9
    late = [r for r in failed if r.kind is ErrorKind.TIMEOUT]
    assert late and all(r.latency_s == pytest.approx(10.0) for r in late)


def test_an_exponential_ttft_is_independent_of_the_token_speed():
    """With ``ttft_dist = "exponential"`` the TTFT came from the same uniform as the angle of the
    Box-Muller pair that gives the token speed: a long TTFT (u₂ near 0) came with sin(2πu₂) near
    0⁺, i.e. a faster-than-median stream — latency = TTFT + tokens/speed had the wrong spread."""
    import simpy

    from llmlab.sim.providers import mix64

    env = simpy.Environment()
    p = provider(env, ttft_dist="exponential", ttft_s=0.5, tokens_per_s_sigma=0.3)
    res = []

    def many():
        for k in range(40_000):
            res.append((yield from p.serve(_call(answer_tokens=100, stream=True), mix64(k))))

    env.process(many())
    env.run()
    ttft = np.array([r.ttft_s for r in res])
    z = np.log(100.0 / (np.array([r.latency_s for r in res]) - ttft) / 80.0) / 0.3  # N(0, 1) if lognormal
    assert ttft.mean() == pytest.approx(0.5, rel=0.03)  # SE 0.5 %
    slow_start = ttft > 0.5 * math.log(20.0)  # the slowest 5 %: ≈ 2,000 calls, SE of their mean z ≈ 0.022
    assert abs(z[slow_start].mean()) < 0.1 and abs(z[~slow_start].mean()) < 0.03
    assert z.std() == pytest.approx(1.0, abs=0.03)


def test_deployments_of_one_provider_group_cannot_disagree_on_its_incidents():
    """Incidents are drawn once per provider group, from the first deployment's profile by name:
    ``--set providers.gpt-4o-mini.incidents.per_month=100`` was silently ignored next to gpt-4o."""
    from llmlab.sim import load_scenario
    from llmlab.sim.outages import scenario_windows
    from llmlab.sim.scenario import ScenarioError

    with pytest.raises(ScenarioError, match=r"^providers\.gpt-4o-mini\.incidents\.per_month: .*gpt-4o.*openai"):
        load_scenario("b2b-saas", {"providers.gpt-4o-mini.incidents.per_month": 100.0})
    both = load_scenario("b2b-saas", {"providers.gpt-4o-mini.incidents.per_month": 100.0,
                                      "providers.gpt-4o.incidents.per_month": 100.0, "outages.windows": []})
    assert len([w for w in scenario_windows(both, 86_400.0, 0) if w.target == "openai"]) > 1


def test_the_thinning_bound_is_the_largest_product_of_bursts_in_force():
    """Counted by multiplier (each start costs the distinct multipliers, not the bursts in force:
    a month of minute-long flash crowds took minutes), and still the brute-force product."""
    from llmlab.sim.traffic import _peak_multiplier

    rng = np.random.default_rng(5)
    for _ in range(20):
        n = int(rng.integers(1, 60))
        starts = rng.uniform(0, 100, n)
        bursts = [(float(s), float(s + rng.uniform(0.5, 40)), float(rng.choice([1.0, 1.5, 3.0, 7.0])))
                  for s in starts]
        instants = sorted({lo for lo, _, _ in bursts})  # the product peaks as some burst starts
        brute = max(math.prod(m for lo, hi, m in bursts if lo <= t < hi) for t in instants)
        assert _peak_multiplier(bursts) == pytest.approx(brute, rel=1e-12)
    assert _peak_multiplier([(0.0, 10.0, 3.0), (10.0, 20.0, 5.0)]) == 5.0  # one ends as the other starts
    assert _peak_multiplier([(0.0, 1.0, 100.0)] * 200) == math.inf  # past the float range, as a product is


def test_the_thinning_bound_benchmark_prints_both_timings_and_the_same_bound():
    """benchmarks/thinning_bound.py on a small run: one JSON object, both ways giving the same bound."""
    from benchmark_runs import run_benchmark

    out = run_benchmark("thinning_bound.py", "--days", "0.1", "--duration-s", "3600", "--multiplier", "1.5")
    assert out["identical"] is True and out["bursts"] > 100 and out["peak_multiplier"] > 1.5
