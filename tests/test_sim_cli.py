"""``llmlab simulate``: JSON on stdout, readable tables, output files, one-line errors with exit 2."""
from __future__ import annotations

import json

import pytest

from llmlab.sim.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_json_prints_one_object(capsys):
    code, out, err = run(capsys, "--scenario", "b2b-saas", "--requests", "300", "--seed", "2", "--json")
    assert code == 0
    lines = out.strip().splitlines()
    assert len(lines) == 1
    summary = json.loads(lines[0])
    assert summary["requests"] == 300 and summary["scenario"] == "b2b-saas" and "savings_pct" in summary


def test_table_and_set_overrides(capsys):
    code, out, err = run(capsys, "--scenario", "b2b-saas", "--requests", "200", "--set", "gateway.cache.semantic=false",
                         "--set", "traffic.rate_per_s=5")
    assert code == 0
    assert "b2b-saas · 200 requests" in out and "cost" in out and "savings vs baseline" in out
    assert "semantic" in out


def test_out_writes_tables_summary_and_plots(capsys, tmp_path):
    code, out, err = run(capsys, "--scenario", "realtime-chat", "--requests", "300", "--out", str(tmp_path / "res"))
    assert code == 0
    names = {p.name for p in (tmp_path / "res").iterdir()}
    assert {"requests.csv", "turns.csv", "summary.json", "cost_over_time.png", "latency_cdf.png", "hit_rate.png",
            "outages.png"} <= names
    for png in ("cost_over_time.png", "latency_cdf.png", "hit_rate.png", "outages.png"):
        assert (tmp_path / "res" / png).read_bytes()[:4] == b"\x89PNG"
    assert json.loads((tmp_path / "res" / "summary.json").read_text())["requests"] == 300
    import pandas as pd

    assert len(pd.read_csv(tmp_path / "res" / "turns.csv")) == 300


@pytest.mark.parametrize("argv, field", [
    (["--scenario", "b2b-saas", "--set", "providers.gpt-4o.ttft_s=-1"], "providers.gpt-4o.ttft_s"),
    (["--scenario", "b2b-saas", "--set", "traffic.nonsense=1"], "traffic.nonsense"),
    (["--scenario", "no-such-scenario"], "scenario"),
    (["--scenario", "b2b-saas", "--requests", "0"], "--requests"),
    (["--scenario", "b2b-saas", "--requests", "many"], "--requests"),
    (["--scenario", "b2b-saas", "--trace", "/no/such/trace.csv"], "--trace"),
    (["--scenario", "b2b-saas", "--set", "oops"], "--set"),
    ([], "--scenario"),
])
def test_bad_input_is_one_line_on_stderr_and_exit_2(capsys, argv, field):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and field in err


def test_list_and_simulate_prefix(capsys):
    code, out, _ = run(capsys, "--list")
    assert code == 0 and "b2b-saas" in out and "realtime-chat" in out
    code, out, _ = run(capsys, "simulate", "--scenario", "b2b-saas", "--requests", "50", "--json", "--no-baseline")
    assert code == 0 and json.loads(out)["requests"] == 50


def test_replications_in_the_table(capsys):
    code, out, _ = run(capsys, "--scenario", "b2b-saas", "--requests", "150", "--replications", "2", "--no-baseline")
    assert code == 0 and "mean of 2 replications" in out
