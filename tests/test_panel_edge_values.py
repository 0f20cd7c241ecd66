"""What a learner sees at the edges of the notebook panels and figures: words, never ``nan %``
or a numpy warning under the plot."""
from __future__ import annotations

import math
import warnings

import pytest

pytest.importorskip("ipywidgets")
pytest.importorskip("matplotlib")

from llmlab.widgets import ManualTimer, OutageDrillPanel  # noqa: E402

TWO_VARIANTS = {"no protection": {"fallback": False, "max_retries": 0, "breaker": False},
                "fallback + retries + breaker": {"fallback": True}}


def _legend(fig):
    return [t.get_text() for t in fig.axes[0].get_legend().get_texts()]


def test_a_latency_cdf_of_many_failures_draws_without_a_numpy_warning():
    """Notebook 06's CDF (and a SimulationPanel with streaming off) printed numpy's
    "RuntimeWarning: invalid value encountered in scalar subtract" under the figure: P95 fell
    between two failed turns (inf, inf) and np.percentile computed inf - inf."""
    from llmlab.teaching import latency_cdf_figure

    failed_a_fifth = [0.5 + 0.01 * i for i in range(80)] + [math.inf] * 20
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        fig = latency_cdf_figure({"baseline": failed_a_fifth, "answered all": [1.0, 2.0, 3.0, 4.0]}, 3.0)
    baseline, answered = _legend(fig)[:2]
    assert "P95 failed" in baseline or "P95 실패" in baseline, baseline
    assert "P95 3.85 s" in answered, answered  # a finite percentile is still interpolated


def test_a_percentile_just_past_the_last_answer_reads_failed_not_the_largest_float():
    """Regression guard: 5 failures in 100 put P95 between an answer and a failure, where the
    interpolation is +inf (not NaN); a reading through ``np.nan_to_num`` turns that into
    1.8e308 s, a 309-digit legend."""
    from llmlab.teaching import latency_cdf_figure

    fig = latency_cdf_figure({"five failed": [1.0] * 95 + [math.inf] * 5}, 3.0)
    shown = _legend(fig)[0]
    assert "P95 failed" in shown or "P95 실패" in shown, shown
    assert len(shown) < 60


def test_a_drill_window_no_turn_arrived_in_says_so_instead_of_nan_percent():
    """A drill of a millisecond catches no arrival: its availability during the outage is NaN,
    and the headline read "availability during it nan % (no protection) → nan % (…)"."""
    panel = OutageDrillPanel("b2b-saas", start_s=20.0, duration_s=1e-3, after_s=20.0, variants=TWO_VARIANTS,
                             timer=ManualTimer())
    panel.run()
    assert panel.last_error is None
    table, headline = panel.last_result.table, panel.headline.value
    assert table["availability_in_outage"].isna().all()  # the premise: no turn arrived in the window
    assert "nan" not in headline
    assert headline == ("down outage of openai for 0.001 s: availability during it n/a (no turns) (no protection) "
                        "→ n/a (no turns) (fallback + retries + breaker)")


def test_a_typed_threshold_off_the_two_decimal_grid_is_what_the_headline_and_title_say(tmp_path):
    """Typing 0.915 ran the cache at 0.915 (the table said so) while the headline and the
    figure's title said "threshold 0.92": two decimals rounded the learner's value away."""
    from llmlab.widgets import ThresholdPanel

    timer = ManualTimer()
    panel = ThresholdPanel(embedder="hashed", threshold=0.6, thresholds=[0.5, 0.6, 0.7],
                           memo_path=tmp_path / "memo.sqlite3", timer=timer)
    panel.text.value = 0.915
    timer.fire()
    assert panel.last_error is None and panel.last_values["threshold"] == 0.915
    assert panel.headline.value.startswith("threshold 0.915, guard on")
    assert panel.last_result.figure.axes[0].get_title().startswith(("threshold 0.915:", "임계값 0.915:"))
    panel.text.value = 0.45  # a value on the grid keeps its two decimals
    timer.fire()
    assert panel.headline.value.startswith("threshold 0.45, guard on")
