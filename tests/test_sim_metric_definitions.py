"""The summary's definitions on scenarios small enough to check by hand.

One model at $1/M input and $2/M output, 1,000 prompt and 100 answer tokens a turn, a fixed
0.5 s first token and 100 tokens/s: every answered turn takes 1.5 s and costs $0.0012.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from llmlab.report import summary_table
from llmlab.sim import load_scenario, simulate
from llmlab.sim.metrics import mean_ci
from llmlab.sim.run import make_traffic

TRACE = Path(__file__).resolve().parents[1] / "datasets" / "traces" / "example_trace.csv"


def provider(name: str, input_per_1m: float, output_per_1m: float, group: str = "") -> str:
    """A provider whose every answer takes 0.5 s to its first token and 100 tokens/s after it."""
    return (f'[providers.{name}]\nmodel = "{name}"\n' + (f'provider = "{group}"\n' if group else "")
            + f"price = {{ input_per_1m = {input_per_1m}, output_per_1m = {output_per_1m} }}\n"
            'ttft_s = 0.5\nttft_dist = "fixed"\ntokens_per_s = 100.0\ntokens_per_s_sigma = 0.0\nerror_rate = 0.0\n')


BASE = """
name = "by-hand"
start = 2025-03-03T00:00:00+00:00
[traffic]
requests = 400
rate_per_s = 1.0
diurnal = "flat"
fixed_prompt_tokens = 1000
fixed_answer_tokens = 100
answer_tokens_sigma = 0.0
[[traffic.tenants]]
name = "t"
plan = "p"
""" + provider("m", 1.0, 2.0) + """[gateway.router]
type = "fixed"
deployment = "m"
[gateway.cache]
exact = false
semantic = false
[gateway.retry]
max_retries = 0
[baseline]
model = "m"
"""

TURN_COST = 1000 * 1.0 / 1e6 + 100 * 2.0 / 1e6
MONTH_S = 30 * 86_400.0


def scenario(tmp_path: Path, extra: str = "", **overrides):
    path = tmp_path / "by_hand.toml"
    path.write_text(BASE + extra)
    return load_scenario(str(path), overrides or None)


def test_the_slo_violation_rate_is_a_share_of_the_turns_the_slo_judges(tmp_path):
    # a tiny cap: most turns are refused for budget; the few answered take 1.5 s against a 1 s SLO
    sc = scenario(tmp_path, '[gateway.budget]\non_exceed = "reject"\n[slo]\nlatency_s = 1.0\nmetric = "latency"\n',
                  **{"traffic.tenants[0].monthly_budget_usd": 0.05})
    r = simulate(sc, seed=0, parallel=False)
    s, turns = r.summary, r.turns
    refused = turns["error_code"] == "budget_exceeded"
    assert 0 < (~refused).sum() < refused.sum()  # mostly refusals, some answers
    assert (turns.loc[~refused, "latency_s"] > 1.0).all()
    assert s["slo_value_s"] == pytest.approx(1.5) and s["slo_met"] is False
    assert s["slo_violation_rate"] == 1.0  # every judged turn was late; over every turn it read 8 %
    assert s["baseline_slo_violation_rate"] == 1.0


def test_no_violation_rate_when_the_policy_refused_every_turn(tmp_path):
    sc = scenario(tmp_path, '[gateway.budget]\non_exceed = "reject"\n', **{"traffic.tenants[0].monthly_budget_usd": 0.0})
    s = simulate(sc, requests=50, seed=0, baseline=False).summary
    assert s["budget_rejections"] == 50
    assert math.isnan(s["slo_violation_rate"]) and math.isnan(s["slo_value_s"])
    # nothing got through at its plan's price: the month's cost is unknown, not free
    assert math.isnan(s["projected_monthly_uncapped_cost_usd"])


CASCADE = "\n" + provider("m2", 2.0, 4.0, group="other")


def test_a_cascade_counts_a_failed_or_skipped_cheap_stage_as_a_fallback_alike(tmp_path):
    # m is down from 100 s to 200 s: the cheap stage fails at first, then its breaker skips it
    sc = scenario(tmp_path, CASCADE + '[[outages.windows]]\ntarget = "m"\nstart_s = 100.0\nend_s = 200.0\n',
                  **{"gateway.router.type": "cascade", "gateway.router.stages": ["m", "m2"],
                     "gateway.router.deployment": None})
    r = simulate(sc, seed=0, baseline=False, keep_requests=True, parallel=False)
    attempts = r.requests.set_index("turn")["attempts"]
    inside = r.turns[r.turns["during_outage"] & (r.turns["deployment"] == "m2")]
    kinds = {tuple(a["purpose"] for a in attempts.loc[t]) for t in inside["turn"]}
    assert ("cascade", "answer") in kinds and ("skip", "answer") in kinds  # both paths were taken
    # m2 answered only because m could not (failed, or skipped while its breaker was open, which
    # outlasts the window by its cooldown): a fallback either way, and m's own answers none
    turns = r.turns
    assert len(inside) and (turns["fallback"] == (turns["deployment"] == "m2")).all()
    assert (turns.loc[~turns["during_outage"] & (turns["arrival_s"] < 100.0), "deployment"] == "m").all()


def test_a_cascade_escalating_on_a_rejected_answer_is_no_fallback(tmp_path):
    # m always answers "I'm not sure": the cascade's check rejects it and m2 answers, by design
    sc = scenario(tmp_path, CASCADE.replace("[providers.m2]", "[providers.m.refusal_rate]\nfaq = 1.0\ngeneral = 1.0\n"
                                            "complex = 1.0\n\n[providers.m2]"),
                  **{"gateway.router.type": "cascade", "gateway.router.stages": ["m", "m2"],
                     "gateway.router.deployment": None})
    r = simulate(sc, requests=100, seed=0, baseline=False, keep_requests=True, parallel=False)
    purposes = [tuple(a["purpose"] for a in attempts) for attempts in r.requests["attempts"]]
    assert all(p == ("cascade", "check", "answer") for p in purposes)
    assert (r.turns["deployment"] == "m2").all()
    assert r.summary["fallback_rate"] == 0.0


def test_a_cascades_cost_savings_and_calls_add_up_by_hand(tmp_path):
    """Regression guard (it held before): every turn pays the cheap stage m, a rejected one m2 on
    top; the escalations count in ``retry_amplification`` as calls, not in ``fallback_rate``."""
    sc = scenario(tmp_path, CASCADE.replace("[providers.m2]", "[providers.m.refusal_rate]\nfaq = 0.4\ngeneral = 0.4\n"
                                            "complex = 0.4\n\n[providers.m2]"),
                  **{"gateway.router.type": "cascade", "gateway.router.stages": ["m", "m2"],
                     "gateway.router.deployment": None, "baseline.model": "m2"})
    r = simulate(sc, requests=120, seed=0, keep_requests=True, parallel=False)
    s, n = r.summary, 120
    escalated = sum(any(a["purpose"] == "check" for a in attempts) for attempts in r.requests["attempts"])
    assert 0 < escalated < n
    m2_turn = 1000 * 2.0 / 1e6 + 100 * 4.0 / 1e6
    assert s["variable_cost_usd"] == pytest.approx(n * TURN_COST + escalated * m2_turn)
    assert s["baseline_cost_usd"] == pytest.approx(n * m2_turn)
    assert s["savings_pct"] == pytest.approx(100 * (1 - s["cost_usd"] / s["baseline_cost_usd"]))
    assert s["retry_amplification"] == pytest.approx((n + escalated) / n) and s["fallback_rate"] == 0.0
    assert s["model_share"] == pytest.approx({"m2": escalated / n, "m": 1 - escalated / n})


def test_the_uncapped_month_prices_a_downgraded_turn_at_its_plans_own_price(tmp_path):
    extra = ('[providers.cheap]\nmodel = "cheap"\nprice = { input_per_1m = 0.1, output_per_1m = 0.2 }\n'
             '[gateway.budget]\non_exceed = "downgrade"\ndowngrade_to = "cheap"\n')
    r = simulate(scenario(tmp_path, extra, **{"traffic.tenants[0].monthly_budget_usd": 0.2}), seed=0, parallel=False)
    s, turns = r.summary, r.turns
    assert 0 < turns["downgraded"].sum() < len(turns)
    assert (turns.loc[turns["downgraded"], "deployment"] == "cheap").all()
    assert not (turns.loc[~turns["downgraded"], "deployment"] == "cheap").any()
    no_caps = TURN_COST * 1.0 * MONTH_S  # one turn a second at m's price: what no cap would cost
    assert s["projected_monthly_uncapped_cost_usd"] == pytest.approx(no_caps)  # was 12 % low
    assert s["baseline_projected_monthly_cost_usd"] == pytest.approx(no_caps)
    assert s["projected_monthly_cost_usd"] == pytest.approx(0.2)  # held to the cap


@pytest.fixture(scope="module")
def compressed():
    """The example trace at three speeds, with b2b-saas's scheduled outage (600–780 s of the trace)."""
    return {speedup: simulate("b2b-saas", trace=str(TRACE), seed=0, parallel=False,
                              overrides={"traffic.speedup": speedup, "gateway.cache.embedder": "hashed"}).summary
            for speedup in (1.0, 10.0, 1000.0)}


def test_a_compressed_traces_standby_is_paid_for_the_traces_real_span(compressed):
    real = compressed[1.0]
    for speedup in (10.0, 1000.0):
        # the drain after the last request is the providers' time, seconds at most: not scaled by S
        assert compressed[speedup]["fixed_cost_usd"] == pytest.approx(real["fixed_cost_usd"], rel=0.01)


def test_a_compressed_traces_outages_hit_the_same_requests(compressed):
    shares = {s: compressed[s]["outage_turn_share"] for s in compressed}
    assert shares[1.0] > 0
    assert shares[10.0] == shares[1000.0] == shares[1.0]  # were 5 %, 0 % and 0 %


def test_the_windows_are_compressed_with_the_trace():
    r = simulate("b2b-saas", trace=str(TRACE), seed=0, parallel=False, baseline=False,
                 overrides={"traffic.speedup": 10.0, "gateway.cache.embedder": "hashed", "outages.incidents": False})
    assert [(w.start_s, w.end_s) for w in r.outages] == [(60.0, 78.0)]  # the preset's 600–780 s
    inside = r.turns[r.turns["during_outage"]]
    assert len(inside) and inside["arrival_s"].between(60.0, 78.0).all()


def test_one_measured_value_has_a_mean_but_no_interval():
    m, lo, hi = mean_ci([0.25, math.nan, math.nan])
    assert m == 0.25 and math.isnan(lo) and math.isnan(hi)
    assert mean_ci([0.25, 0.35])[1] < 0.25  # two values: an interval


def test_outage_numbers_measured_by_one_replication_have_no_interval_and_say_so(tmp_path):
    sc = scenario(tmp_path, **{"traffic.requests": 40})
    arrivals = [make_traffic(sc, seed=k).arrival_s for k in range(3)]
    # a window around one of seed 0's arrivals that none of seeds 1 and 2 reach
    others = np.concatenate(arrivals[1:])
    at = next(t for t in arrivals[0] if not (np.abs(others - t) < 0.2).any())
    window = f'[[outages.windows]]\ntarget = "m"\nstart_s = {at - 0.1}\nend_s = {at + 0.1}\n'
    r = simulate(scenario(tmp_path, window, **{"traffic.requests": 40}), seed=0, replications=3, parallel=False)
    assert (r.replications["outage_turn_share"].to_numpy() > 0).tolist() == [True, False, False]
    s = r.summary
    assert s["outage_runs"] == 1
    assert s["outage_availability"] == 0.0  # m down, no fallback: the one run's value
    assert "outage_availability" not in s["ci95"] and "availability" in s["ci95"]  # was [0, 0]
    assert "1 of 3 runs had any" in summary_table(s)


def test_an_slo_percentile_just_past_the_last_answered_turn_is_infinite_not_the_largest_float():
    """95 answered turns and 5 failures: P95 interpolates between the last answer and a failure.
    numpy's nan_to_num turned that +inf into 1.7976931348623157e+308, a 309-digit "latency" in the
    drill panel's headline, and a finite bar in notebook 06's chart."""
    import math

    import numpy as np

    from llmlab.sim.metrics import slo_value

    answered = np.array([True] * 95 + [False] * 5)
    value = slo_value(np.array([1.0] * 95 + [np.nan] * 5), answered, np.zeros(100, bool), 95.0)
    assert value == math.inf


def test_an_agent_turn_that_fell_back_and_then_failed_is_no_fallback(tmp_path):
    """``fallback_rate`` counts turns *answered* by a deployment other than the one routed to.  An
    agent turn's tool-choosing call fell back to m2, its answer (pinned to m2) failed, and the
    turn counted as a fallback: a failed turn in ``fallback_rate`` and, in the outage figure,
    "served by fallback" and "failed" at once."""
    extra = provider("m2", 1.0, 2.0) + """[gateway.fallbacks]
m = ["m2"]
[gateway.breaker]
failure_threshold = 1000
min_calls = 1000
[traffic.tools]
failure_rate = 0.0
[[outages.windows]]
target = "m"
start_s = 0.0
end_s = 1e9
"""
    s = scenario(tmp_path, extra, **{"providers.m2.error_rate": 0.5, "baseline.enabled": False})
    r = simulate(s, seed=2, keep_requests=True)
    turns, requests = r.turns, r.requests
    first = requests[requests["step"] == 0].set_index("turn")
    fell_back_then_failed = ((turns["steps"] == 2) & (turns["outcome"] == "error")
                             & first.loc[turns["turn"], "deployment"].eq("m2").to_numpy())
    assert fell_back_then_failed.sum() > 0  # the case is in the run
    assert not (turns["fallback"] & (turns["outcome"] == "error")).any()
    answered = turns["outcome"] != "error"
    assert r.summary["fallback_rate"] == pytest.approx((turns["fallback"] & answered).mean())
    assert r.summary["fallback_rate"] == pytest.approx(answered.mean())  # every answer came from m2
