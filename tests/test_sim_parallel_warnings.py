"""A configuration's warnings reach the caller when replications run in child processes.

A child interpreter's log goes to a temporary file that is shown only when the child fails
(:mod:`llmlab.sim.sidecar`).  ``simulate(replications=N)`` on a long run (``llmlab simulate
--replications N --no-baseline``, or any run on a machine with four CPUs or more) ran every
replication there, so a cap in ``gateway.budget.caps`` that no tenant group makes, or a hedge
with no fallbacks to go to, was never said — the warnings README promises.
"""
from __future__ import annotations

import logging

import pytest

import llmlab.gateway
from llmlab.sim import run as sim_run
from llmlab.sim import simulate


@pytest.fixture(autouse=True)
def _unwarned(monkeypatch):
    # each warning is given once per process: start from none given
    monkeypatch.setattr(sim_run, "_warned_unknown_caps", set())
    monkeypatch.setattr(llmlab.gateway, "_warned_unhedged", False)


def test_replications_in_child_processes_still_warn_about_the_configuration_here(caplog):
    caplog.set_level(logging.WARNING, logger="llmlab")
    overrides = {"gateway.budget.caps": {"ghost": 1.0}, "gateway.hedge.after_s": 0.8, "gateway.fallbacks": {},
                 "gateway.cache.semantic": False, "outages.incidents": False}
    result = simulate("b2b-saas", requests=30, seed=0, replications=2, baseline=False, parallel=True,
                      overrides=overrides)
    assert len(result.replications) == 2
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len([m for m in messages if "no tenant group makes ghost" in m]) == 1, messages
    assert len([m for m in messages if "hedge has nothing to hedge to" in m]) == 1, messages
