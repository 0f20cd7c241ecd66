"""A trace's tenant that changes plan: its month is held to the cap of its latest plan.

The monthly projection (and the budget overshoot) read a tenant's plan from the traffic's
``(tenant, plan)`` tables, in the order the file first showed each pair.  For a log exported
newest first, or a tenant that went paid → free → paid, that was not its current plan: an
upgrade from a $0.05 free cap to a $100 paid one projected $0.05 a month where the rows in time
order projected $1.98, for the same log — and the per-tenant table said the cap was $100.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from llmlab.sim import simulate
from trace_scenarios import scenario_file, trace_file


def _replay(tmp_path: Path, plans: list[str], newest_first: bool):
    sc = scenario_file(tmp_path, tables="""
[gateway.cache]
exact = false
semantic = false
[gateway.budget]
plan_caps = { free = 0.05, paid = 100.0 }
""")
    rows = [f"2025-03-04T09:{i:02d}:00Z,acme,{plan},question {i},100,50" for i, plan in enumerate(plans)]
    trace = trace_file(tmp_path, rows[::-1] if newest_first else rows)
    return simulate(sc, trace=trace, seed=0, baseline=False, parallel=False)


@pytest.mark.parametrize("plans, newest_first", [
    (["free"] * 10 + ["paid"] * 50, True),                  # an upgrade, exported newest first
    (["paid"] * 10 + ["free"] * 10 + ["paid"] * 40, False),  # back on paid, in time order
])
def test_a_tenant_that_changed_plan_is_projected_under_its_latest_plans_cap(tmp_path, plans, newest_first):
    result = _replay(tmp_path, plans, newest_first)
    s = result.summary
    # a month of one call a minute at $0.0002 a call is ≈ $8.79, far below paid's $100 cap: not held at all
    month = 0.0002 * len(plans) / (59 * 60) * 86_400 * 30
    assert s["projected_monthly_uncapped_cost_usd"] == pytest.approx(month)
    assert s["projected_monthly_cost_usd"] == pytest.approx(month)  # was free's $0.05
    tenants = result.tenants()
    assert tenants["plan"].tolist() == ["paid"] and tenants["monthly_cap_usd"].tolist() == [100.0]
