"""The ``outage_*`` numbers: the service of the turns that arrived while an outage was in force.

A run's P95 dilutes a drill: realtime-chat's ×4 OpenAI slowdown fills a fifth of its default
run, whose P95 TTFT met the 3 s objective while the turns inside the window waited 5 s.  These
numbers are the whole run's availability, SLO value and SLO violations over those turns alone.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from llmlab import sim
from llmlab.report import summary_table
from llmlab.sim.metrics import OUTAGE_KEYS, during_windows
from llmlab.sim.outages import Window

#: errors that are the policy's choice, not a failure (as the summary's SLO leaves them out)
REFUSALS = ("budget_exceeded", "rate_limited", "guardrail_blocked")


def _inside(turns, windows):
    inside = np.array([any(w.start_s <= t < w.end_s for w in windows) for t in turns["arrival_s"]], dtype=bool)
    assert turns["during_outage"].tolist() == inside.tolist()  # the turn table's own column agrees
    return inside


def _expected(turns, summary):
    """The outage numbers computed from the turn table, independently of the recorder."""
    metric = turns["ttft_s" if summary["slo_metric"] == "ttft" else "latency_s"].to_numpy(float)
    answered = (turns["outcome"] != "error").to_numpy()
    refused = turns["error_code"].isin(REFUSALS).to_numpy()
    waited = np.where(answered, np.nan_to_num(metric, nan=math.inf), math.inf)
    violated = (~answered & ~refused) | (answered & (waited > summary["slo_s"]))
    with np.errstate(invalid="ignore"):
        value = float(np.nan_to_num(np.percentile(waited[~refused], summary["slo_percentile"]), nan=math.inf))
    return answered.mean(), value, violated[~refused].mean()  # the SLO judges every turn but the refusals


@pytest.fixture(scope="module")
def drill():
    """realtime-chat across its scheduled ×4 OpenAI slowdown (600–780 s), with its baseline."""
    return sim.simulate("realtime-chat", hours=0.3, seed=3, parallel=False,
                        overrides={"outages.incidents": False})


def test_the_outage_numbers_are_the_turns_that_arrived_inside_a_window(drill):
    s, turns, windows = drill.summary, drill.turns, drill.outages
    inside = _inside(turns, windows)
    assert 0 < inside.sum() < len(turns)
    assert s["outage_turn_share"] == pytest.approx(inside.mean())
    availability, value, violations = _expected(turns[inside], s)
    assert s["outage_availability"] == pytest.approx(availability)
    assert s["outage_slo_value_s"] == pytest.approx(value)
    assert s["outage_slo_violation_rate"] == pytest.approx(violations)
    # the point of the numbers: the drill is worse than the run it sits in
    assert s["outage_slo_value_s"] > s["slo_value_s"]


def test_the_baselines_outage_numbers_come_from_its_own_turns(drill):
    s, base = drill.summary, drill.baseline_turns
    inside = _inside(base, drill.outages)
    availability, value, violations = _expected(base[inside], drill.baseline_summary)
    assert s["baseline_outage_availability"] == pytest.approx(availability)
    assert s["baseline_outage_slo_value_s"] == pytest.approx(value)
    assert s["baseline_outage_slo_violation_rate"] == pytest.approx(violations)
    # no fallback: the baseline answers fewer of the drill's turns in time than the policy
    assert s["baseline_outage_slo_violation_rate"] > s["outage_slo_violation_rate"]


def test_the_table_shows_the_outage_section_with_its_share_of_turns(drill):
    table = summary_table(drill.summary)
    lines = table.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("during outages"))
    assert lines[head].strip() == f"during outages ({drill.summary['outage_turn_share'] * 100:.1f} % of turns)"
    rows = lines[head + 1:head + 4]
    assert [r[:30].strip() for r in rows] == ["availability", "SLO metric at its percentile", "SLO violations"]
    assert f"{drill.summary['outage_slo_value_s']:.2f} s" in rows[1]
    assert f"{drill.summary['baseline_outage_slo_violation_rate'] * 100:.2f} %" in rows[2]


def test_a_run_with_no_turn_inside_an_outage_has_no_outage_numbers_and_no_section():
    r = sim.simulate("realtime-chat", requests=200, seed=0, parallel=False,
                     overrides={"outages.incidents": False})  # its window starts at 600 s: after the last arrival
    s = r.summary
    assert s["outage_windows"] == 1 and s["outage_turn_share"] == 0.0
    for key in OUTAGE_KEYS:
        assert math.isnan(s[key]) and math.isnan(s[f"baseline_{key}"])
    assert "during outages" not in summary_table(s)


def test_windows_hold_their_start_not_their_end_and_may_overlap():
    arrival = np.array([0.0, 1.0, 1.5, 2.0, 2.5, 3.0, 9.0])
    inside = during_windows(arrival, [Window("openai", 1.0, 2.0), Window("azure", 1.5, 3.0, kind="slow")])
    assert inside.tolist() == [False, True, True, True, True, False, False]
    assert not during_windows(arrival, []).any()


def test_replications_give_the_outage_numbers_an_interval():
    r = sim.simulate("realtime-chat", hours=0.25, seed=0, replications=2, baseline=False, parallel=False,
                     overrides={"outages.incidents": False})
    runs = r.replications
    for key in (*OUTAGE_KEYS, "slo_value_s"):  # the whole run's SLO value has one too, as its table row shows
        assert r.summary[key] == pytest.approx(runs[key].mean())
        lo, hi = r.summary["ci95"][key]
        assert lo <= r.summary[key] <= hi
    assert 0.0 <= r.summary["ci95"]["outage_availability"][0] <= r.summary["ci95"]["outage_availability"][1] <= 1.0


def test_an_slo_value_that_failures_made_infinite_is_shown_as_failed():
    table = summary_table({"scenario": "x", "requests": 10, "outage_turn_share": 0.5, "outage_availability": 0.2,
                           "outage_slo_value_s": math.inf, "outage_slo_violation_rate": 0.8, "slo_value_s": math.inf})
    assert "inf" not in table
    policy_cells = [line[30:].split()[0] for line in table.splitlines() if "SLO metric" in line]
    assert policy_cells == ["failed", "failed"]


# ----------------------------------------------------------------------------- one row per outage
def test_the_outage_table_of_one_window_is_the_summarys_outage_numbers(drill):
    table = drill.outage_table()
    s = drill.summary
    assert len(table) == 1 and table.loc[0, "kind"] == "slow" and table.loc[0, "latency_factor"] == 4.0
    row = table.iloc[0]
    assert row["turns"] == int(drill.turns["during_outage"].sum()) and math.isnan(row["error_rate"])
    for column, key in (("availability", "outage_availability"), ("service_availability", "outage_service_availability"),
                        ("slo_value_s", "outage_slo_value_s"), ("slo_violation_rate", "outage_slo_violation_rate"),
                        ("baseline_availability", "baseline_outage_availability"),
                        ("baseline_slo_value_s", "baseline_outage_slo_value_s")):
        assert row[column] == pytest.approx(s[key]), column


def test_each_window_has_its_own_row_in_the_order_they_began():
    windows = [{"target": "azure", "start_s": 300.0, "end_s": 420.0, "kind": "errors", "error_rate": 0.5},
               {"target": "openai", "start_s": 60.0, "end_s": 200.0, "kind": "down"},
               {"target": "openai", "start_s": 90_000.0, "end_s": 90_060.0, "kind": "slow"}]  # after the last turn
    r = sim.simulate("realtime-chat", hours=0.15, seed=1, parallel=False,
                     overrides={"outages.incidents": False, "outages.windows": windows})
    table = r.outage_table()
    assert list(table["start_s"]) == [60.0, 300.0, 90_000.0] and list(table["kind"]) == ["down", "errors", "slow"]
    assert table.loc[1, "error_rate"] == 0.5 and math.isnan(table.loc[0, "latency_factor"])
    arrival = r.turns["arrival_s"]
    for row in table.itertuples():
        inside = (arrival >= row.start_s) & (arrival < row.end_s)
        assert row.turns == int(inside.sum())
        if row.turns:
            assert row.availability == pytest.approx((r.turns["outcome"][inside] != "error").mean())
    empty = table.iloc[2]
    assert empty["turns"] == 0 and math.isnan(empty["availability"]) and math.isnan(empty["baseline_slo_value_s"])
    down = table.iloc[0]
    assert down["baseline_availability"] < down["availability"]  # no fallback in the baseline


def test_a_replicated_results_outage_table_is_its_first_runs():
    args = dict(hours=0.25, seed=4, parallel=False, overrides={"outages.incidents": False})
    replicated = sim.simulate("realtime-chat", replications=2, **args).outage_table()
    single = sim.simulate("realtime-chat", **args).outage_table()
    assert replicated.equals(single)


def test_windows_merged_into_spans_mark_exactly_the_turns_any_window_holds():
    """During_windows looks arrivals up among merged spans: the same turns as asking every window."""
    rng = np.random.default_rng(7)
    for _ in range(50):
        arrival = np.sort(rng.uniform(0, 1000, 400))
        arrival[::37] = np.round(arrival[::37])  # arrivals on window edges
        windows = []
        for _ in range(int(rng.integers(0, 12))):
            start = float(np.round(rng.uniform(-50, 1000)))
            windows.append(Window("openai", start, start + float(np.round(rng.uniform(0, 150)))))
        naive = np.array([any(w.start_s <= t < w.end_s for w in windows) for t in arrival], dtype=bool)
        assert during_windows(arrival, windows).tolist() == naive.tolist()


def test_the_realtime_preset_keeps_its_drill_near_the_objective():
    """The preset's 1.5 s first-token timeouts and 30 s cooldown hold P95 TTFT during its ×4
    OpenAI slowdown near 3 s (3.2–3.4 s over seeds 0–3); with the earlier 3 s and 15 s it was
    5.2 s on this seed.  The README's Known limit quotes these numbers."""
    now = sim.simulate("realtime-chat", seed=0, baseline=False, parallel=False).summary
    before = sim.simulate("realtime-chat", seed=0, baseline=False, parallel=False,
                          overrides={"providers.gpt-4o-mini.timeout_s": 3.0, "providers.gpt-4o.timeout_s": 3.0,
                                     "gateway.breaker.cooldown_s": 15.0}).summary
    assert now["outage_slo_value_s"] < 3.4 < 4.5 < before["outage_slo_value_s"]
    assert now["slo_value_s"] <= now["slo_s"] and now["outage_availability"] == 1.0


def test_the_window_benchmark_prints_both_timings_and_the_same_turns():
    """benchmarks/outage_windows.py on a small run: one JSON object, both ways marking the same turns."""
    from benchmark_runs import run_benchmark

    out = run_benchmark("outage_windows.py", "--turns", "20000", "--windows", "30")
    assert out["identical"] is True and out["turns"] == 20_000 and out["windows"] == 30
    assert out["merged_spans_s"] > 0 and out["per_window_s"] > 0 and 0 < out["share_during_outages"] < 1
