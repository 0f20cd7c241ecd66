"""A scenario's monthly caps and a replayed log's tenants.

A tenant group's ``monthly_budget_usd`` caps the tenants the group generates (``paid-001`` …),
never a trace's: b2b-saas replaying the example log ran its five customers uncapped ("budget
rejections 0") and nothing said its caps had not applied.  Now the run warns, naming them.
"""
from __future__ import annotations

import logging
from pathlib import Path

import pytest

from llmlab.sim import simulate
from llmlab.sim import run as sim_run

TRACE = Path(__file__).resolve().parents[1] / "datasets" / "traces" / "example_trace.csv"
QUICK = {"gateway.cache.semantic": False, "outages.incidents": False}


@pytest.fixture(autouse=True)
def _fresh():
    # warned once per process: each test starts unwarned
    warned = [getattr(sim_run, "_warned_uncapped", set()), getattr(sim_run, "_warned_unknown_caps", set())]
    for w in warned:
        w.clear()
    yield
    for w in warned:
        w.clear()


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "monthly cap" in r.getMessage()]


def test_a_log_whose_tenants_no_cap_covers_is_warned_about_naming_them(caplog):
    caplog.set_level(logging.WARNING, logger="llmlab.sim")
    result = simulate("b2b-saas", trace=str(TRACE), requests=20, seed=0, baseline=False, overrides=QUICK)
    assert result.tenants()["monthly_cap_usd"].isna().all()
    [message] = _warnings(caplog)
    assert message.startswith("traffic.trace: 5 of the trace's 5 tenants have no monthly cap (acme-store, hanbit-mall,")
    assert "gateway.budget.caps, plan_caps or default_cap" in message


def test_caps_that_cover_every_tenant_say_nothing(caplog):
    caplog.set_level(logging.WARNING, logger="llmlab.sim")
    simulate("b2b-saas", trace=str(TRACE), requests=20, seed=0, baseline=False,
             overrides={**QUICK, "gateway.budget.plan_caps": {"paid": 5.0, "free": 0.5}})
    assert _warnings(caplog) == []


def test_a_cap_for_a_tenant_no_group_makes_is_warned_about_naming_it(caplog):
    """Synthetic traffic: ``gateway.budget.caps`` keyed by a real customer's name (as the way to
    live traffic suggests) is never applied in the run — said once, naming it and how the
    groups' tenants are named."""
    caplog.set_level(logging.WARNING, logger="llmlab.sim")
    result = simulate("b2b-saas", requests=40, seed=0, baseline=False,
                      overrides={**QUICK, "gateway.budget.caps": {"acme": 0.0, "paid-001": 0.0}})
    [message] = [r.getMessage() for r in caplog.records if "gateway.budget.caps" in r.getMessage()]
    assert "no tenant group makes acme, so this cap is never applied" in message and "named like paid-001" in message
    tenants = result.tenants().set_index("tenant")
    assert tenants["monthly_cap_usd"].get("paid-001", 0.0) == 0.0  # the known name's cap applied
    assert tenants["monthly_cap_usd"].get("paid-002") == 0.5
    simulate("b2b-saas", requests=40, seed=1, baseline=False, overrides={**QUICK, "gateway.budget.caps": {"acme": 0.0}})
    assert len([r for r in caplog.records if "gateway.budget.caps" in r.getMessage()]) == 1  # once per process
