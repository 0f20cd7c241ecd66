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

SCENARIO = """
name = "plan-change"
[traffic]
max_tokens = 60
[providers.m]
profile = "openai-gpt-4o-mini"
price = { input_per_1m = 1.0, output_per_1m = 2.0 }
[gateway.router]
type = "fixed"
deployment = "m"
[gateway.cache]
exact = false
semantic = false
[gateway.budget]
plan_caps = { free = 0.05, paid = 100.0 }
[outages]
incidents = false
"""


def _replay(tmp_path: Path, plans: list[str], newest_first: bool):
    (tmp_path / "sc.toml").write_text(SCENARIO, encoding="utf-8")
    rows = [f"2025-03-04T09:{i:02d}:00Z,acme,{plan},question {i},100,50" for i, plan in enumerate(plans)]
    if newest_first:
        rows.reverse()
    trace = tmp_path / "t.csv"
    trace.write_text("timestamp,tenant,plan,prompt,prompt_tokens,output_tokens\n" + "\n".join(rows) + "\n",
                     encoding="utf-8")
    return simulate(str(tmp_path / "sc.toml"), trace=str(trace), seed=0, baseline=False, parallel=False)


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
