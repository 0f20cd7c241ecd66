"""A replicated run's 95 % intervals are the Student-t intervals of its replication rows, to the last digits.

The t quantile came from a table rounded to three decimals (2.776 for four degrees of freedom,
not 2.7764451…): an interval recomputed by hand from ``result.replications`` (or with
``scipy.stats.t``) differed from ``summary["ci95"]`` in its fifth significant digit.
"""
from __future__ import annotations

import math

import pytest

from llmlab.sim import simulate
from llmlab.sim.metrics import metric_bounds, metric_steps, t95


def _central_mass(t: float, df: int, steps: int = 20_000) -> float:
    """P(|T| < t) for Student's t with ``df`` degrees of freedom, by Simpson's rule over its density
    (independent of how :func:`t95` finds the quantile)."""
    c = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)

    def density(x: float) -> float:
        return c * (1 + x * x / df) ** (-(df + 1) / 2)

    h = t / steps
    total = density(0.0) + density(t) + sum((4 if k % 2 else 2) * density(k * h) for k in range(1, steps))
    return 2 * total * h / 3


@pytest.mark.parametrize("df", [1, 2, 3, 4, 9, 29, 30, 31, 60, 999])
def test_the_t_quantile_leaves_exactly_five_percent_outside(df):
    assert _central_mass(t95(df), df) == pytest.approx(0.95, abs=1e-9)


def test_a_replicated_runs_intervals_are_those_of_its_rows():
    result = simulate("b2b-saas", requests=300, seed=4, replications=5, baseline=False)
    rows = result.replications
    assert result.summary["ci95"]
    for metric, (low, high) in result.summary["ci95"].items():
        x = rows[metric].dropna().to_numpy(dtype=float)
        mean = x.mean()
        # a share's spread is at least its step's rounding spread (1/n for a share of n turns)
        steps = [metric_steps(t).get(metric) for _, t in result.turns.groupby("replication")]
        steps = [x for x in steps if x is not None]
        step = math.sqrt(sum(x * x for x in steps) / len(steps)) if steps else 0.0
        half = t95(len(x) - 1) * max(x.std(ddof=1), step / math.sqrt(12)) / math.sqrt(len(x))
        lo, hi = metric_bounds(metric)
        assert result.summary[metric] == pytest.approx(mean, rel=1e-12, abs=1e-15), metric
        assert (low, high) == pytest.approx((max(lo, mean - half), min(hi, mean + half)), rel=1e-12, abs=1e-15), metric
