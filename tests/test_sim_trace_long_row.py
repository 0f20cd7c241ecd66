"""One long row of a replayed log must not change how every other row is served.

The simulator pads the system message so that the gateway, which reserves budgets and rate
limits by a prompt's bytes, holds at least what a turn is billed.  It padded one message for
every turn, to the longest prompt's shortfall: a single 60,000-token row of one tenant made every
request of the log reserve 60,000 tokens, and another tenant's $0.02 cap — which its twenty
small requests (half a cent in all) never came near — refused every one of them.
"""
from __future__ import annotations

from pathlib import Path

from llmlab.sim import simulate
from trace_scenarios import scenario_file, trace_file


def _replay(tmp_path: Path, with_long_row: bool):
    sc = scenario_file(tmp_path, max_tokens=100, traffic='system_prompt = "You are a support assistant."', tables="""
[gateway.cache]
exact = false
semantic = false
[gateway.budget]
caps = { acme = 0.02, other = 1.0 }
""")
    rows = [f"2025-03-04T09:{i:02d}:00Z,acme,paid,question number {i},50,100" for i in range(20)]
    if with_long_row:
        rows.append("2025-03-04T09:30:30Z,other,paid,summarise the attached contract,60000,100")
    return simulate(sc, trace=trace_file(tmp_path, rows), seed=0, baseline=False, parallel=False)


def test_another_tenants_long_row_leaves_a_tenants_requests_as_they_were(tmp_path):
    alone = _replay(tmp_path, with_long_row=False).turns
    both = _replay(tmp_path, with_long_row=True)
    acme = both.turns[both.turns["tenant"] == "acme"]
    assert (alone["outcome"] == "model").all()
    assert (acme["outcome"] == "model").all(), acme["error_code"].value_counts().to_dict()  # all 20 were refused
    assert acme["cost_usd"].sum() == alone["cost_usd"].sum()
    # the long row itself is answered and billed its 60,000 prompt tokens, within its own cap
    long_row = both.requests[both.requests["tenant"] == "other"]
    assert long_row["outcome"].tolist() == ["model"] and long_row["prompt_tokens"].tolist() == [60_000]
    assert both.summary["budget_overshoot_usd"] == 0.0
