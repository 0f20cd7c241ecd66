"""``sim.compare`` and ``llmlab compare``: A against A-with-a-change, paired seed by seed."""
from __future__ import annotations

import json
import math
import shlex
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from llmlab.cli import main as llmlab
from llmlab.sim import ScenarioError, compare, load_scenario
from llmlab.sim.compare import COLUMNS, paired_table
from llmlab.sim.compare_cli import _parser, main
from llmlab.sim.metrics import mean_ci

THRESHOLD = {"gateway.cache.threshold": 0.85}  # the preset's is higher: more (and more false) semantic hits


@pytest.fixture(scope="module")
def looser():
    return compare("b2b-saas", THRESHOLD, requests=1500, replications=4, seed=2)


def test_an_unchanged_value_gives_differences_of_exactly_zero():
    """Common random numbers: B with A's own value is A, seed by seed, to the last bit."""
    same = load_scenario("b2b-saas").gateway.retry.max_retries
    c = compare("b2b-saas", {"gateway.retry.max_retries": same}, requests=300, replications=2)
    assert c.a.replications.drop(columns="wall_s", errors="ignore").equals(
        c.b.replications.drop(columns="wall_s", errors="ignore"))
    assert (c.table["difference"] == 0).all() and (c.table["ci_low"] == -c.table["ci_high"]).all()
    # a continuous number's interval is [0, 0]; a share's or a count's is as wide as its step allows
    # (two seeds that agree on a share say only that it moved by less than one turn's worth)
    table = c.table.set_index("metric")
    assert table.loc["cost_usd", "ci_high"] == 0 and table.loc["cache_hit_rate", "ci_high"] > 0
    assert not c.table["clear"].any()
    assert list(c.table.columns) == list(COLUMNS)


def test_the_table_is_the_seed_by_seed_difference_of_the_two_sides(looser):
    a, b = looser.a.replications, looser.b.replications
    assert list(a["seed"]) == list(b["seed"]) == [2, 3, 4, 5] and looser.seeds == (2, 3, 4, 5)
    row = looser.table.set_index("metric").loc["cache_hit_rate"]
    mean, lo, hi = mean_ci((b["cache_hit_rate"] - a["cache_hit_rate"]).tolist())
    assert (row["difference"], row["ci_low"], row["ci_high"]) == pytest.approx((mean, lo, hi))
    assert row["a"] == pytest.approx(a["cache_hit_rate"].mean()) and row["b"] == pytest.approx(b["cache_hit_rate"].mean())
    assert row["clear"] and row["ci_low"] > 0  # a looser threshold hits more, on every seed
    assert looser.table.set_index("metric").loc["false_hit_rate", "difference"] > 0  # ... and more wrongly
    for r in looser.table.itertuples():
        assert r.clear == (r.ci_low > 0 or r.ci_high < 0)


def test_pairing_by_seed_narrows_the_interval(looser):
    """The point of common random numbers: most of a seed's luck is in both runs and cancels.
    The paired interval is much narrower than that of two independent means' difference."""
    a, b = looser.a.replications, looser.b.replications
    for metric in ("cost_usd", "cache_hit_rate", "p50_latency_s"):
        row = looser.table.set_index("metric").loc[metric]
        paired = (row["ci_high"] - row["ci_low"]) / 2
        halves = [(hi - lo) / 2 for _, lo, hi in (mean_ci(a[metric].tolist()), mean_ci(b[metric].tolist()))]
        unpaired = math.hypot(*halves)
        assert paired < 0.7 * unpaired, (metric, paired, unpaired)


def test_a_run_with_an_infinite_slo_value_has_no_difference_and_an_unmeasured_number_no_row():
    a = pd.DataFrame({"seed": [0, 1], "cost_usd": [1.0, 2.0], "slo_value_s": [3.0, math.inf],
                      "outage_slo_value_s": [math.nan, math.nan]})
    b = pd.DataFrame({"seed": [0, 1], "cost_usd": [1.5, 2.5], "slo_value_s": [2.0, 2.5],
                      "outage_slo_value_s": [math.nan, math.nan]})
    table = paired_table(a, b).set_index("metric")
    assert list(table.index) == ["cost_usd", "slo_value_s"]
    assert table.loc["cost_usd", "difference"] == pytest.approx(0.5)
    slo = table.loc["slo_value_s"]
    assert slo["a"] == math.inf and math.isnan(slo["difference"]) and not slo["clear"]
    # incidents differ by seed: a seed without an outage turn pairs nothing; one pair gives no interval
    seeds = pd.DataFrame({"seed": [0, 1, 2], "outage_slo_value_s": [3.0, math.nan, 4.0]})
    other = pd.DataFrame({"seed": [0, 1, 2], "outage_slo_value_s": [2.5, math.nan, 3.0]})
    row = paired_table(seeds, other).set_index("metric").loc["outage_slo_value_s"]
    assert row["difference"] == pytest.approx(-0.75) and row["a"] == pytest.approx(3.5)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(mean_ci([-0.5, -1.0])[1:])
    one = paired_table(seeds.assign(outage_slo_value_s=[3.0, math.nan, math.nan]),
                       other.assign(outage_slo_value_s=[2.0, math.nan, math.nan])).set_index("metric")
    assert one.loc["outage_slo_value_s", "difference"] == pytest.approx(-1.0)
    assert math.isnan(one.loc["outage_slo_value_s", "ci_low"]) and not one.loc["outage_slo_value_s", "clear"]
    lopsided = paired_table(seeds, other.assign(outage_slo_value_s=[2.5, 1.0, 3.0])).set_index("metric")
    assert math.isnan(lopsided.loc["outage_slo_value_s", "difference"])  # B measured a seed A did not
    with pytest.raises(ValueError, match="different seeds"):
        paired_table(a, b.assign(seed=[1, 2]))


@pytest.mark.parametrize("changes, replications, named", [
    ({}, 3, "changes: at least one"),
    ({"gateway.cache.thresholdx": 0.9}, 3, "gateway.cache.thresholdx"),
    ({"gateway.cache.threshold": 2.0}, 3, "gateway.cache.threshold"),
    (THRESHOLD, 1, "replications: an integer >= 2"),
    (THRESHOLD, True, "replications: an integer >= 2"),
])
def test_bad_input_is_refused_before_either_side_runs(changes, replications, named, monkeypatch):
    import llmlab.sim.run as sim_run

    monkeypatch.setattr(sim_run, "simulate", lambda *a, **k: pytest.fail("ran before both sides were checked"))
    with pytest.raises(ScenarioError, match=named):
        compare("b2b-saas", changes, requests=100, replications=replications)


def test_a_b_side_whose_run_cannot_start_is_refused_before_a_runs(monkeypatch):
    """A valid B whose window holds no request (found only by drawing its traffic): refused by
    B's preflight, before A's first run."""
    import llmlab.sim.run as sim_run

    monkeypatch.setattr(sim_run, "simulate", lambda *a, **k: pytest.fail("A ran before B was checked"))
    with pytest.raises(ScenarioError, match="at least one request arrives"):
        compare("b2b-saas", {"traffic.rate_per_s": 1e-6, "traffic.burst_rate_per_day": 0.0}, hours=0.05,
                replications=2)


def test_the_command_prints_the_table_writes_csv_and_json(tmp_path, capsys):
    out = tmp_path / "cmp" / "compare.csv"
    args = ["compare", "--scenario", "b2b-saas", "--change", "gateway.cache.threshold=0.85", "--requests", "400",
            "--replications", "2", "--seed", "2"]
    assert llmlab([*args, "--out", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("b2b-saas · A: as configured · B: gateway.cache.threshold=0.85 · 2 paired runs of "
                                 "400 requests (seeds 2–3)")
    written = pd.read_csv(out)
    expected = compare("b2b-saas", THRESHOLD, requests=400, replications=2, seed=2).table
    assert list(written["metric"]) == list(expected["metric"])
    assert written["difference"].tolist() == pytest.approx(expected["difference"].tolist(), rel=1e-9, nan_ok=True)
    starred = {line.split()[0] for line in printed[2:] if line.rstrip().endswith("*")}
    assert starred == set(expected.loc[expected["clear"], "metric"])
    assert printed[-1] == f"wrote {len(expected)} rows to {out}"
    assert main([*args[1:], "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["metric"] for r in rows] == list(expected["metric"]) and all(set(r) == set(COLUMNS) for r in rows)


@pytest.mark.parametrize("argv, named", [
    (["--change", "gateway.cache.threshold"], "--change: KEY=VALUE"),
    (["--change", "gateway.cache.threshold=0.8", "--change", "gateway.cache.threshold=0.9"], "given once"),
    (["--change", "gateway.cache.threshold=0.8", "--replications", "1"], "replications: an integer >= 2"),
    (["--set", "traffic.rate_per_s=-2", "--change", "gateway.cache.threshold=0.8"], "traffic.rate_per_s"),
    ([], "the following arguments are required: --change"),
    (["--change", "traffic.tenants[0].plan='free'", "--change", "traffic.tenants.0.plan='pro'"],
     "--change traffic.tenants.0.plan: given once: traffic.tenants[0].plan is the same field"),
])
def test_bad_command_lines_are_one_line_naming_the_field(argv, named, capsys):
    assert main(["--scenario", "b2b-saas", "--requests", "50", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("llmlab compare: error: ") and named in err and err.count("\n") == 1, err


def test_the_readme_compare_lines_parse():
    text = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8").replace("\\\n", " ")
    lines = [line.split("#")[0] for line in text.splitlines() if line.startswith("llmlab compare ")]
    assert lines
    for line in lines:
        args = _parser().parse_args(shlex.split(line)[2:])
        assert args.changes and all("=" in c for c in args.changes), line


def test_differences_in_the_text_are_signed_and_shares_in_points(looser):
    text = str(looser)
    row = looser.table.set_index("metric").loc["cache_hit_rate"]
    line = next(line for line in text.splitlines() if line.startswith("cache_hit_rate"))
    assert f"+{100 * row['difference']:.2f} pp" in line and line.rstrip().endswith("*")
    assert np.isfinite(looser.table["difference"]).all()


def test_the_readme_example_says_what_the_comparison_gives():
    """The README quotes b2b-saas with a 0.85 cache threshold, 2,000 requests, five seeds."""
    text = " ".join((Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8").split())
    table = compare("b2b-saas", THRESHOLD, requests=2000, replications=5).table.set_index("metric")

    def points(metric):
        r = table.loc[metric]
        return f"{100 * r['difference']:+.1f} pp [{100 * r['ci_low']:+.1f}, {100 * r['ci_high']:+.1f}]"

    cost = table.loc["cost_usd"]
    quoted = (f"cache hits {points('cache_hit_rate')}, false hits {points('false_hit_rate')}, "
              f"cost −${-cost['difference']:.2f} [−{-cost['ci_low']:.2f}, −{-cost['ci_high']:.2f}]")
    assert quoted in text


def test_the_figure_draws_each_relative_difference_with_its_interval_and_colour(looser, tmp_path, capsys):
    from llmlab.sim.compare_plot import DOWN, UNCLEAR, UP, plot_comparison

    fig = plot_comparison(looser)
    ax = fig.axes[0]
    table = looser.table
    drawn = table[(table["a"] != 0) & np.isfinite(table["a"]) & np.isfinite(table["difference"])]
    left_out = [m for m in table["metric"] if m not in set(drawn["metric"])]
    assert [t.get_text() for t in ax.get_yticklabels()] == list(drawn["metric"])
    points = [line for line in ax.get_lines() if line.get_marker() == "o"]
    assert len(points) == len(drawn)
    for line, r in zip(points, drawn.itertuples()):
        assert line.get_xdata()[0] == pytest.approx(100 * r.difference / abs(r.a))
        assert line.get_color() == (UNCLEAR if not r.clear else UP if r.difference > 0 else DOWN), r.metric
    assert ax.get_xscale() == "symlog"
    assert all(m in ax.get_xlabel() for m in left_out)
    png = tmp_path / "cmp.png"
    assert main(["--scenario", "b2b-saas", "--change", "gateway.cache.threshold=0.85", "--requests", "300",
                 "--replications", "2", "--plot", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert capsys.readouterr().out.rstrip().endswith(f"drew the comparison in {png}")


def test_dollar_differences_keep_the_precision_of_what_they_differ_from():
    from llmlab.sim.compare import signed

    assert signed(-27.5033, "usd", 11_980.0) == "-$28" and signed(-0.0177, "usd", 7.7) == "-$0.0177"
    assert signed(250.0, "usd") == "+$250" and signed(0.0083, "pct") == "+0.83 pp"
    assert signed(math.nan, "s") == "–" and signed(-0.0521, "s") == "-0.052 s" and signed(3.0, "n") == "+3"


def test_the_help_reads_as_written(capsys):
    with pytest.raises(SystemExit):
        _parser().parse_args(["--help"])
    text = capsys.readouterr().out
    assert "95 % intervals" in text and "%%" not in text and "llmlab compare --scenario realtime-chat" in text


def test_a_difference_without_an_interval_is_drawn_as_a_point(looser, recwarn):
    import dataclasses

    from llmlab.sim.compare_plot import UNCLEAR, plot_comparison

    table = looser.table.copy()
    table.loc[0, ["ci_low", "ci_high", "clear"]] = [math.nan, math.nan, False]  # as from one measured seed
    fig = plot_comparison(dataclasses.replace(looser, table=table))
    first = [line for line in fig.axes[0].get_lines() if line.get_marker() == "o"][0]
    assert first.get_color() == UNCLEAR
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_a_comparison_shows_itself_as_its_table(looser):
    assert repr(looser) == str(looser) and repr(looser).splitlines()[1].split()[:2] == ["A", "B"]


FAST = ["--scenario", "b2b-saas", "--requests", "60", "--replications", "2", "--set",
        "gateway.cache.embedder=hashed"]


@pytest.mark.parametrize("argv", [
    ["--set", "gateway.cache.threshold=0.9", "--change", "gateway.cache.threshold=0.9"],
    ["--set", "gateway.cache.threshold=0.9", "--change", 'gateway."cache".threshold=0.90'],
    ["--change", f"gateway.retry.max_retries={load_scenario('b2b-saas').gateway.retry.max_retries}"],
    ["--change", "name='other'"],  # a name changes no run
])
def test_a_change_that_leaves_the_scenario_as_it_is_is_refused_before_either_side_runs(argv, monkeypatch, capsys):
    """Before: both sides ran, and the table said 0 throughout under the "interval leaves out 0" footnote."""
    import llmlab.sim.run as sim_run

    monkeypatch.setattr(sim_run, "simulate", lambda *a, **k: pytest.fail("ran a change that changes nothing"))
    assert main([*FAST, *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("llmlab compare: error: --change: ") and "leaves the scenario as it is" in err and \
        err.count("\n") == 1, err


def test_a_plot_format_matplotlib_cannot_save_is_refused_before_either_side_runs(tmp_path, monkeypatch, capsys):
    import llmlab.sim.run as sim_run

    monkeypatch.setattr(sim_run, "simulate", lambda *a, **k: pytest.fail("ran before --plot was checked"))
    plot = tmp_path / "c.txt"
    assert main([*FAST, "--change", "gateway.cache.threshold=0.85", "--plot", str(plot)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("llmlab compare: error: --plot: a file name ending in .png, .pdf, .svg") and \
        err.count("\n") == 1 and not plot.exists()


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (a file every write to fails)")
def test_a_file_that_cannot_take_the_table_loses_none_of_it(tmp_path, capsys):
    """Before: an OSError traceback after both sides ran, nothing printed."""
    png = tmp_path / "c.png"
    assert main([*FAST, "--change", "gateway.cache.threshold=0.85", "--out", "/dev/full", "--plot", str(png)]) == 2
    captured = capsys.readouterr()
    assert captured.err == "llmlab compare: error: --out: cannot write ([Errno 28] No space left on device)\n"
    lines = captured.out.splitlines()
    assert lines[0].startswith("b2b-saas · A: as configured · B: gateway.cache.threshold=0.85")
    assert any(line.startswith("cost_usd") for line in lines) and lines[-1] == f"drew the comparison in {png}"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_rows_two_dollar_figures_share_one_precision_in_the_comparison():
    """As in the summary table (cffaf31): A under $100 and B over it read "$95.2000" beside "$104"."""
    import pandas as pd

    from llmlab.sim.compare import Comparison

    table = pd.DataFrame([{"metric": "cost_usd", "a": 95.2, "b": 104.4, "difference": 9.2, "ci_low": 8.0,
                           "ci_high": 10.4, "clear": True}])
    text = str(Comparison("b2b-saas", {"gateway.cache.semantic": False}, (0, 1), 100, table, None, None))
    row = next(line for line in text.splitlines() if line.startswith("cost_usd"))
    assert "$95 " in row and "$104" in row and "$95.2000" not in row, row


def test_one_process_on_the_compare_command_line(monkeypatch, capsys):
    """``--one-process`` keeps every replication of both sides in this process, as ``simulate``'s."""
    import llmlab.sim.run as sim_run

    asked = []
    real = sim_run.simulate
    monkeypatch.setattr(sim_run, "simulate", lambda *a, **k: asked.append(k["parallel"]) or real(*a, **k))
    argv = ["--scenario", "b2b-saas", "--requests", "60", "--replications", "2", "--json",
            "--change", "gateway.retry.max_retries=0"]
    assert main(argv + ["--one-process"]) == 0
    one_process, asked[:] = list(asked), []
    assert main(argv) == 0
    assert one_process and set(one_process) == {False}  # each side, and each seed it runs
    assert asked and set(asked) == {None}  # the default: as the CPUs allow


def burst_trace(tmp_path: Path, tenants: int = 3, rows: int = 12) -> Path:
    """One question asked by each tenant ``rows`` times within a few milliseconds: a burst that
    coalesces (each tenant's first request leads, the rest follow)."""
    path = tmp_path / "burst.csv"
    lines = ["timestamp,tenant,plan,prompt"] + [f"{k * 0.001:.3f},t{k % tenants},paid,Where is my order?"
                                               for k in range(rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_coalescing_is_compared_when_a_side_coalesces_and_left_out_when_neither_does(tmp_path):
    """``coalesced_rate`` is a row where either side coalesces (its difference is what turning it
    on did), and no row of zeros where neither side does."""
    trace = {"traffic.trace": str(burst_trace(tmp_path)), "traffic.speedup": 1.0}
    on = compare("b2b-saas", {"gateway.coalesce.max_wait_s": 30.0}, replications=2, overrides=trace)
    row = on.table.set_index("metric").loc["coalesced_rate"]
    assert row["a"] == 0 and row["b"] == pytest.approx(9 / 12) and row["difference"] == pytest.approx(9 / 12)
    assert "coalesced_rate" in str(on)
    off = compare("b2b-saas", {"gateway.retry.max_retries": 0}, replications=2, overrides=trace)
    assert "coalesced_rate" not in set(off.table["metric"])
