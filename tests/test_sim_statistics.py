"""The simulated world's statistics: what the scenario and the provider profiles describe is what
the simulator draws, checked with large samples (fixed seeds, tolerances from the sample size)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from llmlab.sim.outages import draw_incidents, lognormal_params
from llmlab.sim.scenario import IncidentConfig

MONTH_S = 30 * 86_400.0


def test_a_short_run_sees_its_share_of_incident_time_not_only_incidents_that_start_in_it():
    """Incidents are a stationary process: at any instant, one that began before the run may still
    be in force.  Drawing only the incidents that *start* inside a one-hour run gave it a fifth of
    the outage time the profile describes (0.6 % instead of 3.3 % for OpenAI's profile)."""
    profile = IncidentConfig(per_month=9.8, duration_p50_min=82, duration_p90_min=318)
    mu, sigma = lognormal_params(82 * 60.0, 318 * 60.0)
    steady = profile.per_month / MONTH_S * math.exp(mu + sigma * sigma / 2.0)  # share of time, overlaps counted twice
    horizon = 3_600.0
    covered = []
    for seed in range(6_000):
        windows = draw_incidents("openai", profile, horizon, np.random.default_rng(seed))
        assert all(0.0 <= w.start_s < horizon and w.end_s > w.start_s for w in windows)
        covered.append(sum(min(w.end_s, horizon) - w.start_s for w in windows) / horizon)
    covered = np.array(covered)
    se = covered.std(ddof=1) / math.sqrt(len(covered))  # ≈ 0.0017 here: 4 SE ≈ 20 % of the truth
    assert abs(covered.mean() - steady) < 4 * se
