"""A compressed trace replay (``traffic.speedup``) keeps the calendar of the log.

Replaying S times faster compresses the load, not the calendar: a cached answer lives its TTL of
the log's time, and a monthly cap resets when the log's month does.  Both ran on the compressed
clock: a question asked every two hours with a one-hour TTL hit 0 % at S = 1 and 83 % at S = 10,
and the April half of a March 31 – April 1 log replayed at S = 10 was refused against March's cap.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from llmlab.sim import simulate
from trace_scenarios import scenario_file, trace_file


def _scenario(tmp_path: Path, cap: float = 1000.0) -> str:
    return scenario_file(tmp_path, tables=f"""
[[traffic.tenants]]
name = "acme"
plan = "paid"
monthly_budget_usd = {cap}
[gateway.cache]
exact = true
semantic = false
ttl_s = 3600.0
""")


def _trace(tmp_path: Path, times: list[datetime], prompts: list[str]) -> str:
    rows = [f"{t.strftime('%Y-%m-%dT%H:%M:%SZ')},acme,paid,{p},100,50" for t, p in zip(times, prompts)]
    return trace_file(tmp_path, rows)


def _replay(scenario: str, trace: str, speedup: float):
    return simulate(scenario, trace=trace, seed=0, baseline=False, parallel=False,
                    overrides={"traffic.speedup": speedup})


@pytest.mark.parametrize("every_min, hits", [(120, 0), (25, 16)])
def test_a_cached_answer_lives_its_ttl_of_the_logs_time_at_any_speedup(tmp_path, every_min, hits):
    """One question, 24 times, every ``every_min`` minutes; an entry lives an hour from when a
    miss wrote it.  By hand: every two hours, each ask finds it expired (no hit); every 25
    minutes, the entry written at 0 serves minutes 25 and 50, and minute 75 misses and writes it
    again — 2 hits in every 3 asks, 16 of 24."""
    start = datetime(2025, 3, 4, tzinfo=timezone.utc)
    trace = _trace(tmp_path, [start + timedelta(minutes=every_min * i) for i in range(24)], ["same question"] * 24)
    sc = _scenario(tmp_path)
    # not much faster: an entry is written when its answer lands, a second or two of the
    # providers' own time after the ask, which a speedup of S stretches to S seconds of the log
    for speedup in (1.0, 10.0, 50.0):
        turns = _replay(sc, trace, speedup).turns
        assert (turns["cache"] == "exact_hit").sum() == hits, speedup


def test_a_monthly_cap_resets_where_the_logs_month_does_at_any_speedup(tmp_path):
    """30 distinct questions late on March 31, 30 early on April 1, a cap that lets only some of
    each day's through: April starts a fresh month however fast the log is replayed."""
    march, april = datetime(2025, 3, 31, 20, tzinfo=timezone.utc), datetime(2025, 4, 1, tzinfo=timezone.utc)
    times = [day + timedelta(minutes=5 * i) for day in (march, april) for i in range(30)]
    trace = _trace(tmp_path, times, [f"question {i}" for i in range(60)])
    # one call costs 100 × $1/M + 50 × $2/M = $0.0002 and holds up to 100 × $1/M + 60 × $2/M first
    sc = _scenario(tmp_path, cap=0.002)
    answered = {}
    for speedup in (1.0, 10.0, 1000.0):
        turns = _replay(sc, trace, speedup).turns.sort_values("turn")
        ok = (turns["outcome"] == "model").to_numpy()
        answered[speedup] = (int(ok[:30].sum()), int(ok[30:].sum()))
    assert 0 < answered[1.0][0] < 30 and answered[1.0][1] == answered[1.0][0]  # each month is capped alike
    assert answered[10.0] == answered[1000.0] == answered[1.0]  # April was refused at S = 10: (9, 0)
