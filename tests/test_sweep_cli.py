"""``llmlab sweep``: the command line of llmlab.sim.sweep — a grid in, one row per combination out."""
from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from llmlab.cli import main as llmlab
from llmlab.sim import sweep
from llmlab.sim.sweep_cli import main, parse_grid

ARGS = ["--scenario", "b2b-saas", "--grid", "gateway.cache.semantic=[true, false]", "--grid",
        "traffic.rate_per_s=[1, 3]", "--requests", "200", "--seed", "4", "--processes", "1"]


def test_a_grid_runs_every_combination_writes_every_column_and_prints_the_headline(tmp_path, capsys):
    out = tmp_path / "runs" / "sweep.csv"
    assert main([*ARGS, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    written = pd.read_csv(out)
    expected = sweep("b2b-saas", {"gateway.cache.semantic": [True, False], "traffic.rate_per_s": [1, 3]},
                     requests=200, seed=4, processes=1)
    assert list(written.columns) == list(expected.columns) and len(written) == 4
    assert written["cost_usd"].tolist() == pytest.approx(expected["cost_usd"].tolist(), rel=1e-12)
    header = printed.splitlines()[0].split()
    assert header[:3] == ["gateway.cache.semantic", "traffic.rate_per_s", "requests"] and "cost_usd" in header
    assert "exact_hit_rate" not in header  # the table shows the headline; the CSV has everything
    assert printed.rstrip().endswith(f"wrote 4 rows to {out}")


def test_json_prints_the_rows_as_one_list(capsys):
    assert main([*ARGS[:4], "--requests", "150", "--processes", "1", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["gateway.cache.semantic"] for r in rows] == [True, False]
    assert all(isinstance(r["cost_usd"], float) and math.isfinite(r["cost_usd"]) for r in rows)


@pytest.mark.parametrize("grid, named", [
    ("gateway.cache.threshold=0.9", "--grid gateway.cache.threshold: a non-empty TOML list"),
    ("gateway.cache.threshold=[]", "--grid gateway.cache.threshold: a non-empty TOML list"),
    ("gateway.cache.threshold", "--grid: KEY=[V1, V2, ...]"),
    ("gateway.cache.thresholdx=[0.9]", "gateway.cache.thresholdx: unknown field"),
    ("traffic.rate_per_s=[1, -1]", "traffic.rate_per_s: must be > 0"),
])
def test_a_bad_grid_is_one_line_naming_the_field_before_any_run(grid, named, monkeypatch, capsys):
    import llmlab.sim.run as sim_run

    monkeypatch.setattr(sim_run, "simulate", lambda *a, **k: pytest.fail("ran before the grid was checked"))
    assert main(["--scenario", "b2b-saas", "--grid", grid, "--processes", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"llmlab sweep: error: {named}") and err.count("\n") == 1, err


def test_a_key_given_twice_and_an_unwritable_out_are_refused(tmp_path, capsys):
    assert parse_grid(["a.b=[1]", "c=[2, 3]"]) == {"a.b": [1], "c": [2, 3]}
    assert main([*ARGS[:4], "--grid", "gateway.cache.semantic=[true]"]) == 2
    assert "given once" in capsys.readouterr().err
    assert main([*ARGS, "--out", str(tmp_path)]) == 2  # a folder
    assert "--out: a CSV file path" in capsys.readouterr().err


def test_llmlab_lists_and_runs_the_sweep_command(capsys):
    assert llmlab(["--help"]) == 0
    assert "sweep" in capsys.readouterr().out
    assert llmlab(["sweep", "--scenario", "b2b-saas", "--grid", "traffic.rate_per_s=[2]", "--requests", "100",
                   "--processes", "1", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 1


def test_the_readme_sweep_commands_parse_and_their_grids_are_lists():
    """The README's `llmlab sweep` lines use options that exist, with grids as written."""
    import shlex
    from pathlib import Path

    from llmlab.sim.sweep_cli import _parser

    text = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8").replace("\\\n", " ")
    lines = [line.split("#")[0] for line in text.splitlines() if line.startswith("llmlab sweep ")]
    assert len(lines) >= 2
    for line in lines:
        args = _parser().parse_args(shlex.split(line)[2:])
        assert parse_grid(args.grid), line


def test_without_a_size_each_run_has_the_sweeps_two_thousand_requests(monkeypatch, capsys):
    """--requests and --hours left out: sweep()'s own 2,000 requests a run (not the scenario's)."""
    import importlib

    sweep_module = importlib.import_module("llmlab.sim.sweep")  # the module: llmlab.sim.sweep is also the function
    sizes = []

    def fake_results(tasks, *rest):
        sizes.append([task[2:4] for task in tasks])  # (requests, hours) of each run
        return [{"requests": 1} for _ in tasks]

    monkeypatch.setattr(sweep_module, "_results", fake_results)
    base = ["--scenario", "b2b-saas", "--grid", "traffic.rate_per_s=[2]", "--processes", "1", "--json"]
    assert main(base) == 0 and main([*base, "--hours", "0.5"]) == 0 and main([*base, "--requests", "70"]) == 0
    assert sizes == [[(2_000, None)], [(None, 0.5)], [(70, None)]]


def test_plot_draws_each_headline_number_against_the_first_key(tmp_path, capsys):
    """--plot: one panel per headline number, one line per value of the other grid keys; a
    boolean first key is drawn as categories, a numeric one in order with its own ticks."""
    from llmlab.sim.sweep_plot import PANELS, plot_sweep

    png = tmp_path / "figures" / "sweep.png"
    assert main(["--scenario", "b2b-saas", "--grid", "traffic.rate_per_s=[3, 1]", "--grid",
                 "gateway.cache.semantic=[true, false]", "--requests", "150", "--seed", "4", "--processes", "1",
                 "--plot", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    assert capsys.readouterr().out.rstrip().endswith(f"drew the sweep in {png}")
    frame = sweep("b2b-saas", {"traffic.rate_per_s": [3, 1], "gateway.cache.semantic": [True, False]},
                  requests=150, seed=4, processes=1)
    fig = plot_sweep(frame, ["traffic.rate_per_s", "gateway.cache.semantic"])
    shown = [ax for ax in fig.axes if ax.get_visible() and ax.get_ylabel()]
    assert [ax.get_ylabel() for ax in shown] == [PANELS[c] for c in PANELS if frame[c].notna().any()]
    for ax in shown:
        lines = ax.get_lines()
        assert len(lines) == 2 and all(list(line.get_xdata()) == [1, 3] for line in lines)  # in order
    assert [t.get_text() for t in shown[0].get_xticklabels()] == ["1", "3"]
    by_flag = plot_sweep(frame, ["gateway.cache.semantic", "traffic.rate_per_s"])
    assert [t.get_text() for t in by_flag.axes[0].get_xticklabels()] == ["True", "False"]  # the grid's order


def test_plot_is_checked_before_the_sweep_runs(tmp_path, monkeypatch, capsys):
    import llmlab.sim.run as sim_run

    monkeypatch.setattr(sim_run, "simulate", lambda *a, **k: pytest.fail("ran before --plot was checked"))
    assert main([*ARGS, "--plot", str(tmp_path)]) == 2
    assert "--plot: a PNG file path" in capsys.readouterr().err


def test_the_outage_slo_column_is_printed_only_when_a_run_had_turns_during_an_outage(capsys):
    """b2b-saas's scheduled outage holds from 600 s to 780 s: 150 requests end before it, a quarter
    of an hour runs through it.  A column no row could measure is left out of the printed table."""
    from llmlab.sim.sweep_cli import table

    keys = ["traffic.rate_per_s", "outages.incidents"]
    calm = sweep("b2b-saas", {"traffic.rate_per_s": [1], "outages.incidents": [False]}, requests=150, seed=4,
                 processes=1)
    assert calm["outage_turn_share"].tolist() == [0.0] and calm["outage_slo_value_s"].isna().all()
    assert "outage_slo_value_s" not in table(calm, keys).splitlines()[0].split()
    stormy = sweep("b2b-saas", {"traffic.rate_per_s": [1], "outages.incidents": [False]}, requests=None,
                   hours=0.25, seed=4, processes=1)
    assert stormy["outage_turn_share"].iloc[0] > 0
    header, row = table(stormy, keys).splitlines()[:2]
    assert header.split()[-1] == "outage_slo_value_s"
    assert float(row.split()[-1]) == pytest.approx(stormy["outage_slo_value_s"].iloc[0], rel=1e-3)


def test_a_run_whose_slo_value_failures_made_infinite_is_marked_not_dropped():
    from llmlab.sim.sweep_plot import PANELS, plot_sweep

    frame = pd.DataFrame({"timeout": [1.0, 2.0, 3.0, 1.0, 2.0, 3.0], "retries": [0, 0, 0, 1, 1, 1],
                          "cost_usd": [1.0, 2.0, 3.0, 1.5, 2.5, 3.5],
                          "outage_slo_value_s": [2.0, math.inf, 3.0, 2.5, 2.6, math.inf]})
    fig = plot_sweep(frame, ["timeout", "retries"])
    ax = next(a for a in fig.axes if a.get_ylabel() == PANELS["outage_slo_value_s"])
    marks = [line for line in ax.get_lines() if line.get_marker() == "X"]
    assert sorted((float(line.get_xdata()[0]), line.get_color()) for line in marks) == sorted(
        [(2.0, ax.get_lines()[0].get_color()), (3.0, ax.get_lines()[1].get_color())])
    heights = {float(line.get_ydata()[0]) for line in marks}
    assert len(heights) == 1 and 3.0 < heights.pop() < ax.get_ylim()[1]  # above every finite point, inside
    assert any("failed" in t.get_text() for t in ax.texts)
    cost = next(a for a in fig.axes if a.get_ylabel() == PANELS["cost_usd"])
    assert not [line for line in cost.get_lines() if line.get_marker() == "X"] and not cost.texts
    handles, labels = fig.axes[0].get_legend_handles_labels()
    assert labels == ["retries=0", "retries=1"]
