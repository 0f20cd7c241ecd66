"""``llmlab sweep``: the command line of llmlab.sim.sweep — a grid in, one row per combination out."""
from __future__ import annotations

import json
import math
from pathlib import Path

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
    # before: "a non-empty TOML list", of a list; TOML has no null, and a grid cannot unset a field
    ("traffic.temperature=[null, 0.5]", "--grid traffic.temperature: values without null"),
    ("gateway.cache.options=[{candidates=5}, {candidates=none}]", "--grid gateway.cache.options: values without null"),
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
    assert "--plot: a figure file path" in capsys.readouterr().err


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


FAST = ["--scenario", "b2b-saas", "--requests", "60", "--seed", "4", "--processes", "1",
        "--set", "gateway.cache.embedder=hashed"]


def _no_runs(monkeypatch, what):
    import llmlab.sim.run as sim_run

    monkeypatch.setattr(sim_run, "simulate", lambda *a, **k: pytest.fail(f"ran before {what} was checked"))


@pytest.mark.parametrize("name", ["sweep.txt", "sweep", "sweep.csv"])
def test_a_plot_format_matplotlib_cannot_save_is_refused_before_the_runs(name, tmp_path, monkeypatch, capsys):
    """Before: matplotlib's "Format 'txt' is not supported" traceback after every run, exit code 1,
    nothing printed and an empty file left; a name without an extension drew into NAME.png."""
    _no_runs(monkeypatch, "--plot")
    plot = tmp_path / name
    assert main([*FAST, "--grid", "traffic.rate_per_s=[1, 2]", "--plot", str(plot)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("llmlab sweep: error: --plot: a file name ending in .png, .pdf, .svg") and ".webp" in err
    assert err.count("\n") == 1 and not plot.exists()


def test_a_plot_may_be_a_pdf_or_an_svg(tmp_path, capsys):
    pdf, svg = tmp_path / "sweep.PDF", tmp_path / "sweep.svg"
    assert main([*FAST, "--grid", "traffic.rate_per_s=[1, 2]", "--plot", str(pdf)]) == 0
    assert pdf.read_bytes()[:5] == b"%PDF-"
    assert main([*FAST, "--grid", "traffic.rate_per_s=[1, 2]", "--plot", str(svg)]) == 0
    assert b"<svg" in svg.read_bytes()[:1000]
    assert capsys.readouterr().out.rstrip().endswith(f"drew the sweep in {svg}")


def test_a_grid_of_tables_is_drawn_with_each_value_named_by_its_text(tmp_path, capsys):
    """Before: `TypeError: unhashable type: 'dict'` in sweep_plot after every run, nothing printed."""
    from llmlab.sim.sweep_plot import plot_sweep

    png = tmp_path / "options.png"
    grid = "gateway.cache.options=[{candidates=5}, {candidates=10}]"
    assert main([*FAST, "--grid", grid, "--grid", "traffic.rate_per_s=[1, 2]", "--plot", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    assert printed.splitlines()[0].split()[:2] == ["gateway.cache.options", "traffic.rate_per_s"]
    frame = pd.DataFrame({"retries": [0, 1, 0, 1], "options": [{"candidates": 5}, {"candidates": 5},
                                                                {"candidates": 10}, {"candidates": 10}],
                          "cost_usd": [1.0, 2.0, 3.0, 4.0]})
    by_options = plot_sweep(frame, ["options", "retries"])
    assert [t.get_text() for t in by_options.axes[0].get_xticklabels()] == ["{candidates=5}", "{candidates=10}"]
    by_retries = plot_sweep(frame, ["retries", "options"])
    assert by_retries.axes[0].get_legend_handles_labels()[1] == ["options={candidates=5}", "options={candidates=10}"]
    assert [list(line.get_ydata()) for line in by_retries.axes[0].get_lines()] == [[1.0, 2.0], [3.0, 4.0]]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (a file every write to fails)")
@pytest.mark.parametrize("as_json", [False, True])
def test_a_file_that_cannot_take_the_rows_loses_none_of_them(as_json, tmp_path, capsys):
    """Before: an OSError traceback after every run, nothing printed.  Now the rows are printed, the
    other file is written, and the failure is one line naming --out, exit code 2 (as simulate)."""
    png = tmp_path / "sweep.png"
    argv = [*FAST, "--grid", "traffic.rate_per_s=[1, 2]", "--out", "/dev/full", "--plot", str(png)]
    assert main([*argv, *(["--json"] if as_json else [])]) == 2
    captured = capsys.readouterr()
    assert captured.err == "llmlab sweep: error: --out: cannot write ([Errno 28] No space left on device)\n"
    if as_json:
        assert [r["traffic.rate_per_s"] for r in json.loads(captured.out)] == [1, 2]
    else:
        lines = captured.out.splitlines()
        assert lines[0].split()[:2] == ["traffic.rate_per_s", "requests"] and len(lines) == 4
        assert lines[-1] == f"drew the sweep in {png}"
    assert png.stat().st_size > 0


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (a file every write to fails)")
def test_a_stdout_that_cannot_take_the_rows_does_not_lose_the_csv(tmp_path):
    """`llmlab sweep … --out rows.csv > /dev/full`: before, a traceback from print() and an empty CSV."""
    import os
    import subprocess
    import sys

    out = tmp_path / "rows.csv"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parents[1]),
                                                                      os.environ.get("PYTHONPATH")]))}
    with open("/dev/full", "w") as full:
        proc = subprocess.run([sys.executable, "-m", "llmlab", "sweep", *FAST, "--grid", "traffic.rate_per_s=[1, 2]",
                               "--out", str(out)], stdout=full, stderr=subprocess.PIPE, text=True, timeout=300,
                              env=env, check=False)
    assert proc.returncode == 2 and proc.stderr == \
        "llmlab sweep: error: stdout: cannot write ([Errno 28] No space left on device)\n", proc.stderr
    assert pd.read_csv(out)["traffic.rate_per_s"].tolist() == [1, 2]


def test_a_figure_that_cannot_be_written_is_one_line_after_the_rows(tmp_path, monkeypatch, capsys):
    import llmlab.sim.cli as sim_cli

    def full(fig, path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(sim_cli, "_save_figure", full)
    out = tmp_path / "sweep.csv"
    assert main([*FAST, "--grid", "traffic.rate_per_s=[1, 2]", "--out", str(out), "--plot",
                 str(tmp_path / "sweep.png")]) == 2
    captured = capsys.readouterr()
    assert captured.err == "llmlab sweep: error: --plot: cannot write ([Errno 28] No space left on device)\n"
    assert captured.out.rstrip().endswith(f"wrote 2 rows to {out}") and len(pd.read_csv(out)) == 2


def test_one_field_in_two_spellings_is_refused_naming_both(monkeypatch, capsys):
    """Before: both columns, every row run with the last list's 5 while the rows said 0.001 and 100."""
    _no_runs(monkeypatch, "the grid")
    assert main([*FAST, "--grid", "traffic.tenants[0].monthly_budget_usd=[0.001, 100]",
                 "--grid", "traffic.tenants.0.monthly_budget_usd=[5]"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("llmlab sweep: error: --grid traffic.tenants.0.monthly_budget_usd: given once") and \
        "traffic.tenants[0].monthly_budget_usd is the same field" in err and err.count("\n") == 1
    assert main([*FAST, "--grid", "traffic.rate_per_s=[1]", "--grid", 'traffic."rate_per_s"=[2]']) == 2
    assert "traffic.rate_per_s is the same field" in capsys.readouterr().err


@pytest.mark.parametrize("key", ['traffic."requests"', "traffic . requests", "'traffic'.requests"])
def test_a_grid_over_the_size_sizes_the_runs_whatever_the_spelling(key, capsys):
    """Before: the sizing check compared the key's text, so a quoted key ran --requests (or the
    sweep's 2,000) in every row, next to a column of 60 and 90."""
    assert main(["--scenario", "b2b-saas", "--processes", "1", "--set", "gateway.cache.embedder=hashed",
                 "--grid", f"{key}=[60, 90]", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["traffic.requests"], r["requests"]) for r in rows] == [(60, 60), (90, 90)]


@pytest.mark.parametrize("address, named", [
    ("notanaddress", "missing port number"), ("", "missing port number"),
    ("http://host:8786", "unknown address scheme"),
    ("tcp://:8786", "no host"), ("host:abc", "invalid literal"), ("tcp://host:0", "a port from 1 to 65535"),
])
def test_a_scheduler_address_distributed_cannot_read_is_refused_before_the_runs(address, named, monkeypatch,
                                                                                 capsys):
    """Before: `ValueError: missing port number` from inside distributed's Client, a traceback."""
    pytest.importorskip("distributed")
    _no_runs(monkeypatch, "--scheduler")
    assert main([*FAST[:4], "--grid", "traffic.rate_per_s=[1, 2]", "--scheduler", address]) == 2
    err = capsys.readouterr().err
    assert err.startswith("llmlab sweep: error: --scheduler: a Dask scheduler address such as tcp://") and \
        named in err and err.count("\n") == 1, err


def test_a_scheduler_that_does_not_answer_is_named(monkeypatch, capsys):
    """Before: "Timed out trying to connect to tcp://…", naming no option."""
    import socket

    dask = pytest.importorskip("dask")
    pytest.importorskip("distributed")
    with socket.socket() as s:  # a port no one listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with dask.config.set({"distributed.comm.timeouts.connect": "0.5s"}):
        assert main([*FAST[:4], "--grid", "traffic.rate_per_s=[1, 2]", "--scheduler", f"127.0.0.1:{port}",
                     "--set", "gateway.cache.embedder=hashed"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("llmlab sweep: error: --scheduler: a Dask scheduler that answers (cannot connect: ") and \
        f"127.0.0.1:{port}" in err and err.count("\n") == 1, err


def test_the_savings_panel_is_per_answered_turn_when_the_two_runs_answered_apart():
    """A stress sweep's baseline that answered 1 % of the turns cost a hundredth of the policy:
    the savings panel read −18,000 %; it shows the savings per answered turn then, as the table does."""
    from llmlab.sim.sweep_plot import PANELS, plot_sweep

    frame = pd.DataFrame({"x": [1, 2], "cost_usd": [6.6, 6.7], "savings_pct": [-17_400.0, -18_000.0],
                          "savings_per_answered_pct": [-52.0, -50.0], "availability": [1.0, 0.99],
                          "baseline_availability": [0.008, 0.01]})
    labels = [ax.get_ylabel() for ax in plot_sweep(frame, ["x"]).axes if ax.get_visible() and ax.get_ylabel()]
    assert labels == ["cost (USD)", "savings per answered turn vs baseline (%)", "availability"]
    close = frame.assign(baseline_availability=[0.995, 0.985])  # within a point: the plain savings
    labels = [ax.get_ylabel() for ax in plot_sweep(close, ["x"]).axes if ax.get_visible() and ax.get_ylabel()]
    assert labels[1] == PANELS["savings_pct"]
