"""Per-tenant results of a run: who spent what, who was refused, against which cap.

The summary's totals hide the customers a B2B operator asks about: the few heavy tenants that
make most of the bill, the free ones whose small caps refuse them mid-month.  One row per tenant
from the run's per-turn table, the dearest first; with replications, per-run means.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

from .metrics import POLICY_REFUSALS

if TYPE_CHECKING:
    import pandas as pd

    from .run import SimResult

#: the columns of :func:`tenant_table`, in order
COLUMNS = ("tenant", "plan", "turns", "cost_usd", "baseline_cost_usd", "budget_rejections", "availability",
           "p95_latency_s", "monthly_cap_usd")


def tenant_table(result: "SimResult") -> "pd.DataFrame":
    """One row per tenant of ``result``: ``plan`` (its last, should a trace change it), ``turns``,
    ``cost_usd`` (variable spend; fixed hourly costs are nobody's), ``baseline_cost_usd`` (the same
    turns in the baseline run; NaN without one, or for replications, whose baseline table is the
    first run's), ``budget_rejections``, ``availability`` (share of its turns answered),
    ``p95_latency_s`` (over turns not refused by a policy, as the summary's), ``monthly_cap_usd``
    (NaN: uncapped).  Counts and costs are per run: means over replications."""
    import pandas as pd

    from .build import budget_policy

    turns = result.turns
    if turns.empty:
        return pd.DataFrame(columns=list(COLUMNS))
    runs = turns["replication"].nunique() if "replication" in turns.columns else 1
    refused = turns["error_code"].isin(POLICY_REFUSALS)
    by = turns.groupby("tenant", sort=False)
    table = pd.DataFrame({
        "plan": by["plan"].last(),
        "turns": by.size() / runs,
        "cost_usd": by["cost_usd"].sum() / runs,
        "budget_rejections": (turns["error_code"] == "budget_exceeded").groupby(turns["tenant"]).sum() / runs,
        "availability": (turns["outcome"] != "error").groupby(turns["tenant"]).mean(),
        "p95_latency_s": turns["latency_s"][~refused].groupby(turns["tenant"][~refused]).quantile(0.95),
    })
    base = result.baseline_turns
    table["baseline_cost_usd"] = (base.groupby("tenant")["cost_usd"].sum() if base is not None and runs == 1
                                  else math.nan)
    policy = budget_policy(result.scenario)
    table["monthly_cap_usd"] = [math.nan if policy is None or (cap := policy.cap_for(t, plan)) is None else cap
                                for t, plan in zip(table.index, table["plan"])]
    table = table.rename_axis("tenant").reset_index()
    whole = table["turns"] == table["turns"].round()
    for col in ("turns", "budget_rejections"):
        if whole.all() and (table[col] == table[col].round()).all():
            table[col] = table[col].astype(int)
    return table.sort_values(["cost_usd", "tenant"], ascending=[False, True], ignore_index=True)[list(COLUMNS)]
