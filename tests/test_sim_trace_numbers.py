"""A replay's headline numbers, computed by hand from the log (regression guards: these held).

With token counts fixed by the log and an explicit price, a replay's cost is the price book's
arithmetic, its cache hit rate is countable, and the baseline prices the very same rows.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from llmlab.sim import simulate

SCENARIO = """
name = "trace-numbers"
[traffic]
max_tokens = 100
[providers.m]
profile = "openai-gpt-4o-mini"
price = {{ input_per_1m = 1.0, output_per_1m = 2.0 }}
[gateway.router]
type = "fixed"
deployment = "m"
[gateway.cache]
exact = {exact}
semantic = false
[outages]
incidents = false
[baseline]
model = "m"
"""


def _replay(tmp_path: Path, prompts: list[str], exact: bool):
    (tmp_path / "sc.toml").write_text(SCENARIO.format(exact=str(exact).lower()), encoding="utf-8")
    # a minute apart: every answer has landed (and filled the cache) before the next row arrives
    rows = [f"2025-03-04T09:{i:02d}:00Z,acme,paid,{p},{100 + i},{10 + i}" for i, p in enumerate(prompts)]
    trace = tmp_path / "t.csv"
    trace.write_text("timestamp,tenant,plan,prompt,prompt_tokens,output_tokens\n" + "\n".join(rows) + "\n",
                     encoding="utf-8")
    return simulate(str(tmp_path / "sc.toml"), trace=str(trace), seed=0, parallel=False)


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
