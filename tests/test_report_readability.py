"""What ``llmlab simulate`` shows a person: the terminal table and the PNG figures agree with the summary."""
from __future__ import annotations

import re

import numpy as np
import pytest

from llmlab.report import summary_table


def _summary(**extra):
    summary = {"scenario": "b2b-saas", "requests": 40_000, "seed": 0, "duration_s": 9_000.0, "cost_usd": 18.77,
               "baseline_cost_usd": 75.64, "availability": 0.7219, "baseline_availability": 0.9801,
               "budget_rejections": 11_125, "errors": {"budget_exceeded": 11_125, "rate_limited": 3},
               "slo_met": True, "slo_s": 10.0, "savings_pct": 75.2}
    summary.update(extra)
    return summary


def test_counts_are_written_in_full_not_in_scientific_notation():
    table = summary_table(_summary())
    assert "e+0" not in table
    assert "budget_exceeded 11,125" in table and "rate_limited 3" in table
    replicated = summary_table(_summary(replications=3, budget_rejections=11_125.333,
                                        errors={"budget_exceeded": 11_125.333},
                                        ci95={"budget_rejections": [10_000.5, 12_250.1]}))
    assert "e+0" not in replicated
    assert "budget_exceeded 11,125.33" in replicated and "11,125.33 [10,000.50, 12,250.10]" in replicated


def _column_ends(table: str) -> dict[str, int]:
    """Where each row's policy cell ends (the table's data rows only)."""
    ends = {}
    for line in table.splitlines()[2:]:
        if line.startswith("SLO:"):
            continue
        label, rest = line[:30], line[30:]
        cells = [c for c in re.split(r"\s{2,}", rest.strip()) if c]  # cells are two or more spaces apart
        if cells:
            ends[label.strip()] = line.index(cells[0]) + len(cells[0])
    return ends


def test_confidence_intervals_keep_the_columns_aligned():
    summary = _summary(replications=3, cost_usd=2.1024, availability=0.9878,
                       ci95={"cost_usd": [2.0413, 2.1636], "availability": [0.9548, 1.0],
                             "budget_rejections": [0.0, 90.5]})
    table = summary_table(summary)
    ends = _column_ends(table)
    assert len(set(ends.values())) == 1, ends  # every policy cell ends in the same column
    header = table.splitlines()[1]
    assert header.index("policy") + len("policy") == next(iter(ends.values()))
    with_baseline = [line for line in table.splitlines() if line.startswith(("cost ", "availability"))]
    assert {len(line) for line in with_baseline} == {len(header)}  # the baseline column is not pushed aside


@pytest.fixture(scope="module")
def refusing_run():
    """A b2b-saas run whose paid customers' tiny caps refuse about a quarter of the requests."""
    from llmlab.sim import simulate

    return simulate("b2b-saas", requests=400, seed=0, baseline=False,
                    overrides={"traffic.tenants.0.monthly_budget_usd": 0.02, "gateway.cache.embedder": "hashed"})


def test_latency_cdf_crosses_the_percentile_line_where_the_summary_says(refusing_run):
    from llmlab.report import plot_latency_cdf

    summary = refusing_run.summary
    assert summary["budget_rejections"] > 0.05 * summary["requests"] and summary["slo_met"]
    fig = plot_latency_cdf(refusing_run)
    policy = next(line for line in fig.axes[0].get_lines() if line.get_label() == "policy")
    x, y = np.asarray(policy.get_xdata()), np.asarray(policy.get_ydata())
    judged = summary["requests"] - summary["budget_rejections"]
    level = summary["slo_percentile"] / 100.0
    at_slo = y[x <= summary["slo_value_s"]].max()  # the step curve's height at the summary's value
    # np.percentile interpolates between two requests: the step reaches the level at one of them
    assert at_slo >= level - 1.0 / judged  # a met SLO looks met
    assert y[x < summary["slo_value_s"] * 0.999].max() < level + 1.0 / judged
    assert "policy refusals" in fig.axes[0].get_title()
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_time_plots_of_a_run_shorter_than_one_bin_show_its_values_on_a_zero_based_axis():
    """20 requests fit in one 30-s bin: a line through bin centres drew nothing, on a -0.04…0.04 % axis."""
    import matplotlib.pyplot as plt

    from llmlab.report import plot_hit_rate, plot_outages
    from llmlab.sim import simulate

    result = simulate("b2b-saas", requests=20, seed=0, baseline=False, overrides={"gateway.cache.embedder": "hashed"})
    assert result.turns["arrival_s"].max() < 30.0
    for plot in (plot_hit_rate, plot_outages):
        fig = plot(result)
        ax = fig.axes[-1]  # the outage figure's shares are on its twin axis
        low, high = ax.get_ylim()
        assert low == 0.0 and high >= 5.0, (plot.__name__, low, high)
        assert fig.axes[0].get_xlim()[0] == 0.0
        drawn = [a for a in ax.patches if hasattr(a, "get_data")]  # the per-bin steps
        assert len(drawn) == 2
        for step in drawn:
            values, edges, _ = step.get_data()
            assert len(values) == 1 and np.isfinite(values).all() and edges[0] == 0.0
        plt.close(fig)


def test_cost_curves_end_at_the_costs_in_the_summary():
    """The standby's hourly cost accrues to the end of the run, not only to the last arrival."""
    import matplotlib.pyplot as plt

    from llmlab.report import plot_cost_over_time
    from llmlab.sim import simulate

    result = simulate("b2b-saas", requests=20, seed=0, overrides={"gateway.cache.embedder": "hashed"})
    summary = result.summary
    assert summary["fixed_cost_usd"] > 0 and result.turns["arrival_s"].max() < 0.9 * summary["duration_s"]
    fig = plot_cost_over_time(result)
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    policy = lines["policy (incl. fixed cost)"]
    baseline = next(line for name, line in lines.items() if name.startswith("baseline"))
    assert policy.get_ydata()[-1] == pytest.approx(summary["cost_usd"], rel=1e-9)
    assert baseline.get_ydata()[-1] == pytest.approx(summary["baseline_cost_usd"], rel=1e-9)
    assert policy.get_xdata()[-1] == pytest.approx(summary["duration_s"] / 60.0)
    assert fig.axes[0].get_ylim()[0] == 0.0 and fig.axes[0].get_xlim()[0] == 0.0  # totals read against zero
    plt.close(fig)


def test_outage_figure_tells_failures_from_policy_refusals_and_keeps_its_legend_off_the_data(refusing_run):
    """Budget refusals were drawn as 'unanswered (errors)', hiding whether the chain caught outages."""
    import matplotlib.pyplot as plt

    from llmlab.report import plot_outages

    fig = plot_outages(refusing_run)
    twin = fig.axes[-1]
    steps = {patch.get_label(): patch.get_data()[0] for patch in twin.patches if hasattr(patch, "get_data")}
    turns = refusing_run.turns
    failed = ((turns["outcome"] == "error") & (turns["error_code"] != "budget_exceeded")).sum()
    assert failed == 0 and np.nanmax(steps["failed (unanswered)"]) == 0.0  # no provider failure in this run
    assert np.nanmax(steps["refused by policy (budget, rate limit, guardrail)"]) > 0.0
    fig.canvas.draw()
    legend = twin.get_legend().get_window_extent()
    assert legend.y1 <= twin.get_window_extent().y0  # under the plot, not over the shares
    plt.close(fig)


def test_long_runs_are_told_in_hours():
    """A 48-hour run was drawn over '2880 min' and headed '2880.0 min simulated'."""
    import matplotlib.pyplot as plt

    from llmlab.report import FIGURES
    from llmlab.sim import simulate

    result = simulate("b2b-saas", hours=4, seed=0, baseline=False,
                      overrides={"traffic.rate_per_s": 0.03, "gateway.cache.embedder": "hashed"})
    assert summary_table(result.summary).splitlines()[0].endswith(" · 4.0 h simulated")
    for name in ("cost_over_time.png", "hit_rate.png", "outages.png"):
        fig = FIGURES[name](result)
        ax = fig.axes[0]
        assert ax.get_xlabel() == "simulated time (h)", name
        assert 3.9 <= ax.get_xlim()[1] <= 4.5, (name, ax.get_xlim())
        plt.close(fig)
    short = _summary(duration_s=1_180.0)
    assert " · 19.7 min simulated" in summary_table(short)


def test_the_slo_line_spells_ttft_as_the_rows_do():
    table = summary_table(_summary(slo_metric="ttft", slo_s=3.0, slo_met=False))
    assert "SLO: P95 TTFT ≤ 3 s — MISSED" in table and "TTFT p95" in table


def _row(table: str, label: str) -> list[str] | None:
    """The cells of the row headed ``label`` (None when the table has no such row)."""
    for line in table.splitlines():
        if line[:30].strip() == label:
            return [c for c in re.split(r"\s{2,}", line[30:].strip()) if c]
    return None


def test_fixed_hourly_costs_are_shown_under_the_cost_only_when_there_are_some():
    """A short b2b-saas trace replay read 'savings vs baseline −157 %' with nothing saying why: the
    standby fine-tune's hourly cost, $1.00 of the policy's $1.31, is in the cost and not in the
    baseline's.  The row under the cost says how much of it is fixed; a run without one has no row."""
    assert _row(summary_table(_summary()), "of which fixed hourly costs") is None
    assert _row(summary_table(_summary(fixed_cost_usd=0.0, baseline_fixed_cost_usd=0.0)),
                "of which fixed hourly costs") is None
    assert _row(summary_table(_summary(fixed_cost_usd=0.9994, baseline_fixed_cost_usd=0.0)),
                "of which fixed hourly costs") == ["$0.9994", "$0.0000"]
    table = summary_table(_summary(fixed_cost_usd=0.0, baseline_fixed_cost_usd=2.5))  # a self-hosted baseline
    assert _row(table, "of which fixed hourly costs") == ["$0.0000", "$2.5000"]
    lines = table.splitlines()
    assert lines.index(next(x for x in lines if x.startswith("cost "))) + 1 == \
        lines.index(next(x for x in lines if "of which fixed" in x))  # right under the cost it is part of


def test_a_run_with_a_standby_shows_its_fixed_cost_as_the_summary_counts_it():
    from llmlab.sim import simulate

    result = simulate("b2b-saas", requests=200, seed=0, overrides={"gateway.cache.embedder": "hashed"})
    s = result.summary
    assert s["fixed_cost_usd"] > 0 and s["baseline_fixed_cost_usd"] == 0.0  # the standby fine-tune: policy only
    assert s["fixed_cost_usd"] < s["cost_usd"]
    cells = _row(summary_table(s), "of which fixed hourly costs")
    assert cells == [f"${s['fixed_cost_usd']:,.4f}", "$0.0000"]


def test_a_rows_two_dollar_figures_share_one_precision():
    """"$22.6094" beside "$114" (a 60,000-request run's cost) read as two kinds of number."""
    table = summary_table(_summary(cost_usd=22.6094, baseline_cost_usd=114.2, projected_monthly_cost_usd=50.0,
                                   baseline_projected_monthly_cost_usd=254.0))
    assert _row(table, "cost") == ["$23", "$114"]
    assert _row(table, "projected monthly cost") == ["$50", "$254"]
    small = summary_table(_summary(cost_usd=4.5405, baseline_cost_usd=8.1874))
    assert _row(small, "cost") == ["$4.5405", "$8.1874"]


def test_a_dollar_rows_interval_shares_its_precision():
    """The interval of a replicated run's cost took the value's precision alone: "$23 [$21.9100,
    $23.3100]" beside a $114 baseline, or a value under $100 whose upper bound is over it."""
    reps = {"replications": 3}
    table = summary_table(_summary(cost_usd=22.6094, baseline_cost_usd=114.2, ci95={"cost_usd": (21.91, 23.31)}, **reps))
    assert _row(table, "cost") == ["$23 [$22, $23]", "$114"]
    table = summary_table(_summary(cost_usd=99.5, baseline_cost_usd=50.0, ci95={"cost_usd": (98.0, 101.0)}, **reps))
    assert _row(table, "cost") == ["$100 [$98, $101]", "$50"]
    table = summary_table(_summary(cost_usd=4.5405, baseline_cost_usd=8.1874, ci95={"cost_usd": (4.5, 4.6)}, **reps))
    assert _row(table, "cost") == ["$4.5405 [$4.5000, $4.6000]", "$8.1874"]
