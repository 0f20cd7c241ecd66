"""The simulator against theory: Erlang C, Little's law, the monthly cost formula, reproducibility."""
from __future__ import annotations

import json
import math
import textwrap

import numpy as np
import pytest
import simpy

from llmlab.effects import Call, Deployment
from llmlab.pricing import monthly_cost
from llmlab.sim import load_scenario, simulate
from llmlab.sim.providers import SimProvider, mix64
from llmlab.sim.run import make_traffic, run_once
from llmlab.sim.scenario import ProviderConfig

FIXED = """
name = "fixed-tokens"
[traffic]
requests = 1000
rate_per_s = 4.0
fixed_prompt_tokens = 500
fixed_answer_tokens = 200
max_tokens = 1000
[[traffic.tenants]]
plan = "paid"
count = 5
[providers.gpt-4o]
model = "gpt-4o"
ttft_s = 0.4
tokens_per_s = 80.0
[gateway.router]
type = "fixed"
deployment = "gpt-4o"
[gateway.cache]
exact = false
[baseline]
model = "gpt-4o"
"""


def erlang_c_wait(lam: float, mu: float, c: int) -> float:
    """Mean wait in queue of M/M/c (Erlang C)."""
    a = lam / mu
    top = a ** c / math.factorial(c) * c / (c - a)
    return top / (sum(a ** k / math.factorial(k) for k in range(c)) + top) / (c * mu - lam)


def run_pool(n: int, servers: int, rho: float, mean_s: float, seed: int, sample_every_s: float = 0.0):
    """Poisson arrivals straight into one SimProvider (the class the pipeline uses), exponential service."""
    env = simpy.Environment()
    cfg = ProviderConfig(model="m", ttft_s=mean_s, ttft_dist="exponential", capacity=servers, timeout_s=1e9,
                         tokens_per_s=1.0, tokens_per_s_sigma=0.0)
    pool = SimProvider(env, "pool", cfg)
    lam = rho * servers / mean_s
    call = Call(Deployment("pool", "m", timeout_s=1e9), ({"role": "user", "content": "q"},), {},
                metadata={"prompt_tokens": 10, "answer_tokens": 0})
    rng = np.random.default_rng(seed)
    gaps = rng.exponential(1.0 / lam, n).tolist()
    sojourn = []
    samples = []

    def customer(i):
        r = yield from pool.serve(call, mix64(seed * 1_000_003 + i))
        sojourn.append(r.latency_s)

    def source():
        for i, g in enumerate(gaps):
            yield env.timeout(g)
            env.process(customer(i))

    def sampler(end):
        while env.now < end:
            yield env.timeout(float(rng.exponential(sample_every_s)))
            samples.append(pool.in_system)

    env.process(source())
    if sample_every_s:
        env.process(sampler(sum(gaps)))
    env.run()
    return pool, lam, np.array(sojourn), np.array(samples)


@pytest.mark.slow
def test_mean_queueing_delay_matches_erlang_c_over_200k_requests():
    # M/M/2 at 50 % load: across seeds the 200k-request estimate scatters with SD ≈ 1.2 %
    pool, lam, _, _ = run_pool(200_000, servers=2, rho=0.5, mean_s=1.0, seed=0)
    assert pool.served == 200_000
    theory = erlang_c_wait(lam, 1.0, 2)
    assert pool.wait_total / pool.served == pytest.approx(theory, rel=0.03)


def test_littles_law_on_the_provider_pool():
    pool, lam, sojourn, samples = run_pool(40_000, servers=3, rho=0.7, mean_s=0.5, seed=4, sample_every_s=0.5)
    # L (time average, sampled at Poisson instants: PASTA) = lambda x W
    assert samples.mean() == pytest.approx(lam * sojourn.mean(), rel=0.04)


def test_littles_law_through_the_whole_pipeline():
    sc = load_scenario("b2b-saas", {"outages.windows": [], "outages.incidents": False})
    traffic = make_traffic(sc, requests=6000, seed=2)
    samples = []

    def observe(env, app):
        rng = np.random.default_rng(9)

        def probe():
            while env.now < traffic.horizon_s:
                yield env.timeout(float(rng.exponential(0.5)))
                samples.append(app.in_flight)

        env.process(probe())

    from llmlab.sim.run import _embed_model

    rec, summary = run_once(sc, traffic, seed=2, keep_requests=False, embed_model=_embed_model(sc, traffic),
                            observe=observe)
    cols = rec.columns()
    lam = len(traffic) / traffic.horizon_s
    assert np.mean(samples) == pytest.approx(lam * cols["latency_s"].mean(), rel=0.08)


def test_total_cost_equals_the_monthly_formula_for_fixed_token_lengths(tmp_path):
    path = tmp_path / "fixed.toml"
    path.write_text(textwrap.dedent(FIXED))
    result = simulate(path, seed=3)
    s = result.summary
    assert s["requests"] == 1000 and s["availability"] == 1.0
    per_request = 500 * 2.5e-6 + 200 * 10e-6
    assert s["cost_usd"] == pytest.approx(1000 * per_request, rel=1e-9)
    assert s["projected_monthly_cost_usd"] == pytest.approx(monthly_cost(4.0 * 86_400, 500, 200, "gpt-4o"), rel=1e-9)
    # the same gateway as the baseline: common random numbers make the two runs identical
    assert s["baseline_cost_usd"] == pytest.approx(s["cost_usd"], rel=1e-12)
    assert result.turns["latency_s"].to_numpy() == pytest.approx(result.baseline_turns["latency_s"].to_numpy())


def test_same_seed_same_summary_different_seed_different():
    def summary(seed):
        result = simulate("b2b-saas", requests=800, seed=seed)
        assert result.wall_s > 0
        return json.dumps(result.summary, sort_keys=True)  # byte for byte: nothing run-dependent in it

    a, b, c = summary(5), summary(5), summary(6)
    assert a == b
    assert a != c and json.loads(a)["cost_usd"] != json.loads(c)["cost_usd"]


def test_common_random_numbers_keep_per_request_draws_across_policies():
    """Switching the cache on changes which requests reach the provider, not what each one draws."""
    base = {"outages.windows": [], "outages.incidents": False, "gateway.budget": {}, "gateway.cache.semantic": False,
            "providers.gpt-4o.rpm": 1e9, "providers.gpt-4o-mini.rpm": 1e9}
    off = simulate("b2b-saas", requests=1500, seed=1, baseline=False,
                   overrides={**base, "gateway.cache.exact": False}).turns.set_index("turn")
    on = simulate("b2b-saas", requests=1500, seed=1, baseline=False,
                  overrides={**base, "gateway.cache.exact": True}).turns.set_index("turn")
    both = (on["outcome"] == "model") & (off["outcome"] == "model") & (on["calls"] == 1) & (off["calls"] == 1)
    assert both.sum() > 1000 and (on["cache"] == "exact_hit").sum() > 50
    assert on.loc[both, "latency_s"].to_numpy() == pytest.approx(off.loc[both, "latency_s"].to_numpy(), abs=1e-6)
