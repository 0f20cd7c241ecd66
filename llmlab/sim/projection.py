"""A month of the run's traffic, held to the tenants' monthly caps.

A run much shorter than a month rarely reaches a tenant's monthly cap, so scaling its cost per
turn to a month (the lecture's ``daily × 30 × cost per request``) projects what the traffic would
cost *uncapped*.  A tenant's month cannot cost more than its cap (a downgrade, too, is made only
when the cheaper call fits under it): b2b-saas's 340 small caps hold the policy's variable spend
to ≈ $23 a month while the uncapped projection says thousands.  So the projection is made per
tenant:

* a tenant's monthly demand is its share of the run's turns × the month's turns × what a turn of
  its plan costs when the caps let it through (the plan's cost over its turns neither refused
  nor downgraded for budget: a refused turn costs nothing in the run, and a downgraded one the
  cheaper model's price, yet either is demand the month would see at its plan's own price;
  priced at its own price, a downgrading run's uncapped month read 12 % low);
* a capped tenant's month is ``min(demand, cap)``; a tenant without a cap pays the demand.

Summed over tenants, the uncapped demand equals the old aggregate formula whenever no turn was
refused for budget, so the monthly-formula validation still holds exactly.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np


@dataclass(frozen=True)
class TenantCaps:
    """Who sent each turn, and each tenant's monthly cap.

    ``tenant_of_turn[t]`` indexes ``tenants``/``plans`` (the traffic's tables: a tenant that
    changed plan in a trace appears once per plan); ``cap(name, plan)`` is the gateway's cap for
    the tenant, or None; ``latest_plan[name]`` the plan of the tenant's latest turn
    (:meth:`~llmlab.sim.traffic.Traffic.latest_plans`), whose cap holds its month (None: each
    tenant's last pair in the tables, right when no tenant changed plan).
    """

    tenant_of_turn: np.ndarray
    tenants: Sequence[str]
    plans: Sequence[str]
    cap: Callable[[str, str], float | None]
    latest_plan: Mapping[str, str] | None = None


@dataclass(frozen=True)
class MonthlyProjection:
    capped_usd: float
    uncapped_usd: float


def project_month(turn: np.ndarray, cost: np.ndarray, budget_refused: np.ndarray, *, turns_per_month: float,
                  caps: TenantCaps | None, downgraded: np.ndarray | None = None) -> MonthlyProjection:
    """Variable cost of a month of this traffic, held to ``caps`` (see the module docstring).

    ``turn``, ``cost``, ``budget_refused`` and ``downgraded`` (served by the cheaper model because
    of a cap) are the run's per-turn columns.  NaN when the month's turns are unknown (a trace too
    short to have a rate), or when the caps let no turn through at its plan's price (no cost per
    turn was measured: 0 would read as a free month).
    """
    n = len(turn)
    if n == 0 or not math.isfinite(turns_per_month):
        return MonthlyProjection(math.nan, math.nan)
    if caps is None:  # no caps, no budget refusals: the run's cost per turn is the month's
        uncapped = float(cost.sum()) / n * turns_per_month
        return MonthlyProjection(uncapped, uncapped)
    tenant = np.asarray(caps.tenant_of_turn)[turn]
    plan_names, plan_of_tenant = np.unique(np.asarray(caps.plans, dtype=str), return_inverse=True)
    plan = plan_of_tenant[tenant]
    served = ~budget_refused if downgraded is None else ~(budget_refused | downgraded)
    served_turns = np.bincount(plan[served], minlength=len(plan_names))
    served_cost = np.bincount(plan[served], weights=cost[served], minlength=len(plan_names))
    # a plan none of whose turns got through has no observed cost per turn: its turns are priced
    # at the run's average served turn, the closest measurement there is
    if not served_turns.sum():
        return MonthlyProjection(math.nan, math.nan)
    overall = float(served_cost.sum()) / served_turns.sum()
    per_turn = np.where(served_turns > 0, served_cost / np.maximum(served_turns, 1), overall)
    # demand by tenant *name*: budgets are kept per tenant, whatever plan a trace row carried
    names, name_of_tenant = np.unique(np.asarray(caps.tenants, dtype=str), return_inverse=True)
    demand = np.bincount(name_of_tenant[tenant], weights=per_turn[plan], minlength=len(names)) / n * turns_per_month
    plan_of = caps.latest_plan if caps.latest_plan is not None else dict(zip(caps.tenants, caps.plans))
    limit = np.array([_or_inf(caps.cap(name, plan_of[name])) for name in names.tolist()], dtype=float)
    return MonthlyProjection(float(np.minimum(demand, limit).sum()), float(demand.sum()))


def _or_inf(cap: float | None) -> float:
    return math.inf if cap is None else float(cap)
