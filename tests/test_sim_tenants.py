"""result.tenants() / tenants.csv: one row per tenant, adding up to the run's summary."""
from __future__ import annotations

import math

import pytest

from llmlab.sim import simulate
from llmlab.sim.tenants import COLUMNS


@pytest.fixture(scope="module")
def capped():
    # free tenants' caps small enough that some are refused within the run
    return simulate("b2b-saas", requests=1_500, seed=3,
                    overrides={"traffic.tenants[1].monthly_budget_usd": 0.002})


def test_the_rows_add_up_to_the_summary_dearest_first(capped):
    table, s = capped.tenants(), capped.summary
    assert list(table.columns) == list(COLUMNS) and table["tenant"].is_unique
    assert table["turns"].sum() == s["requests"] == len(capped.turns)
    assert table["cost_usd"].sum() == pytest.approx(s["variable_cost_usd"], rel=1e-9)
    assert table["baseline_cost_usd"].sum() == pytest.approx(capped.baseline_summary["variable_cost_usd"], rel=1e-9)
    assert table["budget_rejections"].sum() == s["budget_rejections"] > 0
    assert table["cost_usd"].is_monotonic_decreasing


def test_each_tenant_carries_its_plan_its_cap_and_its_refusals(capped):
    table = capped.tenants().set_index("tenant")
    groups = capped.scenario.traffic.tenants
    for group in groups:
        for name in group.tenant_names():
            if name in table.index:
                assert table.loc[name, "plan"] == group.plan
                assert table.loc[name, "monthly_cap_usd"] == pytest.approx(group.monthly_budget_usd)
    refused = table[table["budget_rejections"] > 0]
    assert len(refused) and (refused["availability"] < 1).all() and (refused["plan"] == groups[1].plan).all()
    turns = capped.turns
    one = refused.index[0]
    mine = turns[turns["tenant"] == one]
    assert refused.loc[one, "turns"] == len(mine)
    assert refused.loc[one, "budget_rejections"] == (mine["error_code"] == "budget_exceeded").sum()


def test_an_uncapped_scenario_and_replications():
    r = simulate("realtime-chat", requests=300, seed=1, replications=2, parallel=False)
    table = r.tenants()
    assert table["monthly_cap_usd"].map(math.isnan).all()  # realtime-chat caps nobody
    assert table["baseline_cost_usd"].map(math.isnan).all()  # a replicated baseline table is the first run's only
    assert table["turns"].sum() == pytest.approx(r.summary["requests"])  # per-run means
