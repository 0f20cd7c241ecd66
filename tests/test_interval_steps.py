"""Intervals of shares and counts whose runs agree: a step's worth of doubt, not certainty.

A share of n turns moves in steps of 1/n.  Runs that all land on the same step (no false hit
in any, every turn answered in each, one more SLO violation on each seed) have no spread, and
the Student-t interval of no spread has no width: ``[0 %, 0 %]`` false hits where the true
rate was 1 % (in ``benchmarks/interval_coverage.py`` the 95 % interval of b2b-saas' false-hit
rate covered the truth in 23 % of two-run draws), and an A/A comparison of two seeds starred a
rare share's "difference" one time in twelve.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from llmlab.sim import simulate
from llmlab.sim.compare import difference_steps, paired_table
from llmlab.sim.metrics import mean_ci, metric_steps

HASHED = {"gateway.cache.embedder": "hashed"}


def test_runs_that_all_agree_on_a_share_leave_it_uncertain_by_a_step():
    result = simulate("b2b-saas", requests=300, seed=0, replications=3, baseline=False, overrides=HASHED)
    rows, ci = result.replications, result.summary["ci95"]
    assert (rows["availability"] == 1.0).all() and (rows["budget_rejections"] == 0).all()
    # every turn of three runs answered does not make availability certainly 100 %
    low, high = ci["availability"]
    assert high == 1.0 and 1.0 - 0.01 < low < 1.0
    assert ci["budget_rejections"][0] == 0 and ci["budget_rejections"][1] > 0
    for metric, (low, high) in ci.items():
        assert low <= result.summary[metric] <= high, metric
    assert ci["requests"] == [300, 300]  # sized by requests=: exactly that many, no step of doubt
    assert ci["cost_usd"][1] - ci["cost_usd"][0] > 0  # a spread the runs showed is used as it is


def test_a_share_of_fewer_turns_has_a_larger_step():
    turns = pd.DataFrame({"outcome": ["cache", "model", "cache", "error", "model"],
                          "error_code": [None, None, None, "budget_exceeded", None],
                          "during_outage": [False, True, True, False, False],
                          "hedged": [False] * 5})
    steps = metric_steps(turns)
    assert steps["cache_hit_rate"] == steps["availability"] == pytest.approx(1 / 5)
    assert steps["false_hit_rate"] == pytest.approx(1 / 2)  # a share of the two cache hits
    assert steps["slo_violation_rate"] == pytest.approx(1 / 4)  # the refusal is not judged
    assert steps["outage_availability"] == pytest.approx(1 / 2)
    assert "hedge_win_rate" not in steps  # no hedge sent: the share is NaN, of nothing
    assert steps["budget_rejections"] == 1.0 and "cost_usd" not in steps and "requests" not in steps


@pytest.mark.parametrize("seeds", [2, 3])
def test_an_a_a_comparison_of_a_rare_share_stars_no_more_than_one_in_twenty(seeds):
    """A and B the same configuration on independent draws (a share of 300 turns at 0.3 %): the
    verdict's error rate is what the text says, 5 %, not the 8 % of equal steps read as certain."""
    rng = np.random.default_rng(7)
    n, p, draws = 300, 0.003, 4000
    a = rng.binomial(n, p, size=(draws, seeds)) / n
    b = rng.binomial(n, p, size=(draws, seeds)) / n
    step = difference_steps({"slo_violation_rate": 1 / n}, {"slo_violation_rate": 1 / n})["slo_violation_rate"]

    def starred(step: float) -> float:
        stars = 0
        for xa, xb in zip(a, b):
            _, lo, hi = mean_ci((xb - xa).tolist(), step=step)
            stars += lo > 0 or hi < 0
        return stars / draws

    assert starred(step) <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / draws)
    if seeds == 2:
        assert starred(0.0) > 0.07  # what the interval without a step did


def test_seeds_that_each_move_a_share_by_one_turn_are_starred_only_when_there_are_enough():
    def table(seeds: int) -> pd.Series:
        a = pd.DataFrame({"seed": range(seeds), "slo_violation_rate": [0.0] * seeds})
        b = a.assign(slo_violation_rate=1 / 300)
        return paired_table(a, b, {"slo_violation_rate": math.hypot(1 / 300, 1 / 300)}).set_index("metric").loc[
            "slo_violation_rate"]

    two = table(2)
    assert two["difference"] == pytest.approx(1 / 300) and two["ci_low"] < 0 < two["ci_high"] and not two["clear"]
    ten = table(10)  # every one of ten seeds one more: a sign test's p = 0.002
    assert ten["clear"] and ten["ci_low"] > 0



def test_a_difference_of_shares_has_its_interval_within_the_shares_range():
    """Two seeds with three cache hits a run (a false-hit share moves by 1/3) gave the difference
    of false-hit rates ±122 pp (±137 pp printed for realtime-chat): B − A of two shares lies in [−1, 1]."""
    a = pd.DataFrame({"seed": [0, 1], "false_hit_rate": [0.0, 0.0], "cost_usd": [1.0, 1.0]})
    steps = difference_steps({"false_hit_rate": 1 / 3}, {"false_hit_rate": 1 / 3})
    table = paired_table(a, a.copy(), steps).set_index("metric")
    share = table.loc["false_hit_rate"]
    assert mean_ci([0.0, 0.0], step=steps["false_hit_rate"])[2] > 1  # the step's spread alone passes 100 pp
    assert share["ci_low"] == -1.0 and share["ci_high"] == 1.0 and not share["clear"]
    assert table.loc["cost_usd", "ci_low"] == table.loc["cost_usd", "ci_high"] == 0.0  # a cost's difference: unbounded


def test_the_printed_comparison_says_a_star_among_many_rows_can_be_chance():
    """Fourteen rows judged at 5 % each: an A/A comparison stars one of them a quarter to two
    fifths of the time.  The footer said only that a star meant "B differs from A"."""
    from llmlab.sim.compare import Comparison

    rows = [{"metric": m, "a": 1.0, "b": 1.0, "difference": 0.0, "ci_low": -0.1, "ci_high": 0.1, "clear": False}
            for m in ("cost_usd", "p95_latency_s", "cache_hit_rate")]
    rows.append({"metric": "outage_slo_value_s", "a": 1.0, "b": 1.0, "difference": math.nan, "ci_low": math.nan,
                 "ci_high": math.nan, "clear": False})
    text = str(Comparison("b2b-saas", {"gateway.cache.threshold": 0.85}, (0, 1), 300, pd.DataFrame(rows), None, None))
    assert "judged alone" in text and "some one of these 3 in up to 14 % of comparisons" in text


def test_a_sweep_with_replications_gives_each_row_the_intervals_simulate_gives():
    """``flatten`` dropped the ``[low, high]`` lists: a replicated sweep's rows had means only."""
    from llmlab.sim import sweep

    frame = sweep("b2b-saas", {"gateway.cache.threshold": [0.85, 0.9]}, requests=150, replications=2, processes=1)
    alone = simulate("b2b-saas", requests=150, replications=2, overrides={"gateway.cache.threshold": 0.9},
                     keep_requests=False)
    row = frame.set_index("gateway.cache.threshold").loc[0.9]
    for metric, (low, high) in alone.summary["ci95"].items():
        assert (row[f"ci95.{metric}.low"], row[f"ci95.{metric}.high"]) == pytest.approx((low, high)), metric
    assert "ci95.cost_usd.low" in frame and "ci95.cache_hit_rate.high" in frame


@pytest.mark.parametrize("requests, said", [(12, "P95 and P99 over 12 turns"), (60, "P99 over 60 turns"), (150, None)])
def test_the_summary_says_when_a_latency_percentile_rests_on_too_few_turns(requests, said):
    """The P99 of 60 turns is interpolated between the two slowest: it was printed as a tail."""
    from llmlab.report import summary_table

    run = simulate("b2b-saas", requests=requests, seed=0, baseline=False, overrides=HASHED)
    assert not run.summary["errors"].get("budget_exceeded")
    text = summary_table(run.summary)
    if said is None:
        assert "few turns" not in text
    else:
        assert f"few turns: {said} a user waited on" in text


@pytest.mark.parametrize("n", [19, 20, 21, 99, 100, 101])
def test_the_few_turns_note_names_each_percentile_numpy_puts_between_the_two_slowest(n):
    """At 20 turns the P95 still lies between the two slowest (np.percentile: index 18.05 of
    0..19) and at 100 the P99 (index 98.01), yet the note began only below 20 and 100."""
    from llmlab.report import few_turns_note

    slowest_two = [name for name, q in (("P95", 95), ("P99", 99))
                   if np.percentile(np.arange(n), q) > n - 2]  # strictly past the second slowest
    note = few_turns_note({"requests": n, "errors": {}})
    assert (note.split(" over ")[0] if note else "") == ("few turns: " + " and ".join(slowest_two)
                                                          if slowest_two else "")
