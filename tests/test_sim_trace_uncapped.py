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
    warned = getattr(sim_run, "_warned_uncapped", set())  # warned once per process: each test starts unwarned
    warned.clear()
    yield
    warned.clear()


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
