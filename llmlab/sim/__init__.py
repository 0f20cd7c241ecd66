"""The simulation lab: the real gateway pipeline, driven by SimPy in virtual time.

    from llmlab.sim import simulate, load_scenario
    result = simulate("b2b-saas", requests=5_000, seed=1)
    result.summary["savings_pct"], result.summary["p95_latency_s"]
    result.requests            # one row per gateway request (pandas)

``simulate`` runs the scenario's gateway *and* a baseline (every request on one model, no
cache, no routing) over the same traffic with the same random draws, so the difference is the
policy's effect.  Scenarios are TOML files validated before the run (:mod:`.scenario`); two
ship with the package (:func:`list_presets`).  ``sweep`` runs a grid of overrides on local
processes or a Dask cluster; ``compare`` runs a scenario against the same with a change, seed by
seed, and says which differences the seeds agree on.
"""
from __future__ import annotations

from .build import build_gateway, scenario_rate_limits
from .compare import Comparison, compare
from .run import SimResult, simulate
from .scenario import Scenario, ScenarioError, list_presets, load_scenario
from .sweep import sweep

__all__ = ["Comparison", "Scenario", "ScenarioError", "SimResult", "build_gateway", "compare", "list_presets",
           "load_scenario", "scenario_rate_limits", "simulate", "sweep"]
