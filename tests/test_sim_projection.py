"""The projected month is held to each tenant's monthly cap (llmlab.sim.projection)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from llmlab.report import summary_table
from llmlab.sim import simulate
from llmlab.sim.projection import TenantCaps, project_month

MONTH = 400.0  # turns in the projected month


def caps_of(table: dict[str, float]) -> TenantCaps:
    names = ["a", "b", "c"]
    return TenantCaps(np.array([0, 1, 2]), names, ["paid", "paid", "free"], lambda name, plan: table.get(name))


def test_without_caps_it_is_the_lectures_formula() -> None:
    cost = np.array([1.0, 2.0, 0.0, 3.0])
    month = project_month(np.arange(4), cost, np.zeros(4, bool), turns_per_month=MONTH, caps=None)
    assert month.capped_usd == month.uncapped_usd == pytest.approx(cost.sum() / 4 * MONTH)


def test_a_tenant_past_its_cap_pays_the_cap_and_one_under_it_its_demand() -> None:
    tenant_of_turn = np.array([0, 0, 0, 1])  # turn → tenant: a sends three turns, b one
    caps = TenantCaps(tenant_of_turn, ["a", "b"], ["paid", "paid"], lambda name, plan: {"a": 50.0, "b": 500.0}[name])
    cost = np.array([1.0, 1.0, 1.0, 1.0])
    month = project_month(np.arange(4), cost, np.zeros(4, bool), turns_per_month=MONTH, caps=caps)
    demand_a, demand_b = 3 / 4 * MONTH * 1.0, 1 / 4 * MONTH * 1.0
    assert month.uncapped_usd == pytest.approx(demand_a + demand_b)
    assert month.capped_usd == pytest.approx(50.0 + demand_b)


def test_a_refused_turn_is_demand_at_its_plans_served_price() -> None:
    # b's only turn was refused for budget (cost 0): the month still sees b ask, at what a served
    # paid turn cost (a's 2.0); free tenant c pays its own plan's price
    caps = caps_of({})
    cost = np.array([2.0, 0.0, 0.5])
    refused = np.array([False, True, False])
    month = project_month(np.arange(3), cost, refused, turns_per_month=MONTH, caps=caps)
    assert month.uncapped_usd == pytest.approx((2.0 + 2.0 + 0.5) / 3 * MONTH)
    assert month.capped_usd == month.uncapped_usd  # nobody has a cap


def test_a_plan_with_every_turn_refused_is_priced_at_the_runs_served_average() -> None:
    caps = caps_of({"c": 1e9})
    cost = np.array([2.0, 4.0, 0.0])
    refused = np.array([False, False, True])
    month = project_month(np.arange(3), cost, refused, turns_per_month=MONTH, caps=caps)
    assert month.uncapped_usd == pytest.approx((2.0 + 4.0 + 3.0) / 3 * MONTH)


def test_a_tenant_seen_under_two_plans_has_one_cap() -> None:
    # a trace where tenant "a" upgraded: two rows of the tenant table, one budget
    caps = TenantCaps(np.array([0, 1]), ["a", "a"], ["free", "paid"], lambda name, plan: 10.0 if plan == "paid" else 1.0)
    month = project_month(np.array([0, 1]), np.array([1.0, 1.0]), np.zeros(2, bool), turns_per_month=MONTH, caps=caps)
    assert month.uncapped_usd == pytest.approx(MONTH)
    assert month.capped_usd == pytest.approx(10.0)  # one cap (its latest plan's), not one per plan


def test_no_rate_no_projection() -> None:
    month = project_month(np.arange(2), np.ones(2), np.zeros(2, bool), turns_per_month=math.nan, caps=caps_of({}))
    assert math.isnan(month.capped_usd) and math.isnan(month.uncapped_usd)


def test_a_short_runs_projection_matches_a_simulated_month() -> None:
    """Three days of b2b-saas traffic project a month its caps bind; a simulated 30-day month (its
    own seed, caps resetting on the 1st) spends what the projection says, the uncapped one twice that."""
    overrides = {"traffic.rate_per_s": 0.01, "start": "2025-03-01T00:00:00+00:00",
                 "gateway.cache.embedder": "hashed"}
    short = simulate("b2b-saas", requests=3000, seed=0, baseline=False, keep_requests=False, overrides=overrides).summary
    month = simulate("b2b-saas", hours=720, seed=100, baseline=False, keep_requests=False, overrides=overrides).summary
    fixed_month = month["fixed_cost_usd"]  # the self-hosted standby's 720 hours
    assert short["projected_monthly_cost_usd"] - fixed_month == pytest.approx(month["variable_cost_usd"], rel=0.10)
    assert short["projected_monthly_uncapped_cost_usd"] - fixed_month > 1.5 * month["variable_cost_usd"]
    assert month["budget_rejections"] > 0


def test_caps_that_never_bind_change_nothing() -> None:
    overrides = {"traffic.tenants.0.monthly_budget_usd": 1e9, "traffic.tenants.1.monthly_budget_usd": 1e9,
                 "gateway.cache.embedder": "hashed"}
    s = simulate("b2b-saas", requests=800, seed=3, keep_requests=False, overrides=overrides).summary
    assert s["projected_monthly_cost_usd"] == pytest.approx(s["projected_monthly_uncapped_cost_usd"])
    assert s["baseline_projected_monthly_cost_usd"] > s["projected_monthly_cost_usd"]  # caching and routing save


# ----------------------------------------------------------------------------- refused_savings_pct
def test_the_savings_say_how_much_of_them_is_refused_service() -> None:
    hashed = {"gateway.cache.embedder": "hashed"}
    loose = simulate("b2b-saas", requests=1500, seed=4, keep_requests=False, overrides=hashed)
    tight = simulate("b2b-saas", requests=1500, seed=4, keep_requests=False,
                     overrides={**hashed, "traffic.tenants.0.monthly_budget_usd": 0.02})
    for r in (loose, tight):
        refused = r.turns["error_code"].isin(["budget_exceeded", "rate_limited", "guardrail_blocked"]).to_numpy()
        priced = r.baseline_turns["cost_usd"].to_numpy()[refused].sum()
        assert r.summary["refused_savings_pct"] == pytest.approx(100 * priced / r.summary["baseline_cost_usd"])
    # smaller paid caps refuse more of the turns the baseline paid for
    assert tight.summary["refused_savings_pct"] > loose.summary["refused_savings_pct"] > 0
    assert "of which refused requests" in summary_table(tight.summary)


def test_nothing_refused_no_refused_savings() -> None:
    overrides = {"traffic.tenants.0.monthly_budget_usd": 1e9, "traffic.tenants.1.monthly_budget_usd": 1e9,
                 "gateway.cache.embedder": "hashed"}
    r = simulate("b2b-saas", requests=600, seed=5, keep_requests=False, overrides=overrides)
    assert r.summary["refused_savings_pct"] == 0.0
    assert "refused" not in summary_table(r.summary)
    alone = simulate("b2b-saas", requests=300, seed=5, keep_requests=False, baseline=False, overrides=overrides)
    assert math.isnan(alone.summary["refused_savings_pct"])  # no baseline to price them


# ----------------------------------------------------------------------------- savings_per_answered_pct
def test_savings_per_answered_turn_when_the_baseline_answered_far_less() -> None:
    """OpenAI four times slower all run, a 3 s timeout: the baseline (gpt-4o, no fallback) answers a
    few turns and bills little, the policy falls back to Azure and answers all — savings_pct is
    hugely negative and says nothing; per answered turn is what each answer cost."""
    slow = {"traffic.rate_per_s": 6.0, "outages.incidents": False, "gateway.router.type": "fixed",
            "gateway.router.deployment": "gpt-4o-mini", "gateway.cache.embedder": "hashed",
            "outages.windows": [{"target": "openai", "start_s": 0.0, "end_s": 1e6, "kind": "slow",
                                 "latency_factor": 4.0}]}
    r = simulate("realtime-chat", requests=600, seed=2, keep_requests=False, overrides=slow)
    s, b = r.summary, r.baseline_summary
    assert s["availability"] - b["availability"] > 0.5 and s["savings_pct"] < -100
    answered, base_answered = (r.turns["outcome"] != "error").sum(), (r.baseline_turns["outcome"] != "error").sum()
    expected = 100 * (1 - (s["cost_usd"] / answered) / (b["cost_usd"] / base_answered))
    assert s["savings_per_answered_pct"] == pytest.approx(expected)
    assert s["savings_per_answered_pct"] > s["savings_pct"]
    rows = [line for line in summary_table(s).splitlines() if line.startswith("  per answered turn")]
    assert len(rows) == 1 and rows[0].endswith(f" {s['savings_per_answered_pct']:.1f} %")


def test_the_per_answered_row_shows_only_when_the_availabilities_differ() -> None:
    calm = {"outages.incidents": False, "outages.windows": [], "gateway.cache.embedder": "hashed",
            "traffic.tenants.0.monthly_budget_usd": 1e9, "traffic.tenants.1.monthly_budget_usd": 1e9}
    r = simulate("b2b-saas", requests=400, seed=6, keep_requests=False, overrides=calm)
    s = r.summary
    assert abs(s["availability"] - s["baseline_availability"]) < 0.01
    assert math.isfinite(s["savings_per_answered_pct"]) and "per answered turn" not in summary_table(s)
    alone = simulate("b2b-saas", requests=100, seed=6, keep_requests=False, baseline=False, overrides=calm)
    assert math.isnan(alone.summary["savings_per_answered_pct"])
