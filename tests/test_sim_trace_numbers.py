"""A replay's headline numbers, computed by hand from the log (regression guards: these held).

With token counts fixed by the log and an explicit price, a replay's cost is the price book's
arithmetic, its cache hit rate is countable, and the baseline prices the very same rows.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from llmlab.sim import simulate
from trace_scenarios import scenario_file, trace_file


def _replay(tmp_path: Path, prompts: list[str], exact: bool):
    cache = f"[gateway.cache]\nexact = {str(exact).lower()}\nsemantic = false\n"
    sc = scenario_file(tmp_path, max_tokens=100, tables=cache)
    # a minute apart: every answer has landed (and filled the cache) before the next row arrives
    rows = [f"2025-03-04T09:{i:02d}:00Z,acme,paid,{p},{100 + i},{10 + i}" for i, p in enumerate(prompts)]
    return simulate(sc, trace=trace_file(tmp_path, rows), seed=0, parallel=False)


def test_a_replays_cost_is_the_price_books_arithmetic_over_the_logs_rows(tmp_path):
    result = _replay(tmp_path, [f"question {i}" for i in range(12)], exact=False)
    by_hand = sum((100 + i) * 1e-6 + (10 + i) * 2e-6 for i in range(12))
    s = result.summary
    assert s["cost_usd"] == pytest.approx(by_hand, rel=1e-9)
    assert s["baseline_cost_usd"] == pytest.approx(by_hand, rel=1e-9)  # the same rows, priced alike
    assert len(result.turns) == 12 and result.requests["prompt_tokens"].tolist() == [100 + i for i in range(12)]


def test_one_prompt_repeated_by_one_tenant_hits_every_time_but_the_first(tmp_path):
    result = _replay(tmp_path, ["where is my order?"] * 12, exact=True)
    s = result.summary
    assert s["cache_hit_rate"] == pytest.approx(11 / 12)
    assert s["cost_usd"] == pytest.approx(100e-6 + 10 * 2e-6, rel=1e-9)  # the first row's call alone
    assert s["baseline_cost_usd"] == pytest.approx(sum((100 + i) * 1e-6 + (10 + i) * 2e-6 for i in range(12)))
