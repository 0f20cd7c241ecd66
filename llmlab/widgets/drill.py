"""The outage drill panel: a primary provider's outage, with and without the protections."""
from __future__ import annotations

import math
from typing import Any, Mapping

from .base import Panel, PanelResult, TimerFactory, make_control


class OutageDrillPanel(Panel):
    """A primary-provider outage, with and without the protections; availability, latency, cost.

    Controls: outage ``start_s`` and ``duration_s`` (text boxes: a negative duration is reported
    by the scenario validation), ``kind`` (down / errors / slow), ``max_retries`` and backoff
    ``base_s`` (sliders).  Each run simulates every variant of
    :data:`llmlab.teaching.DRILL_VARIANTS` over the same traffic and outage, then plots
    availability over time and retry amplification.
    """

    title = "Outage drill"

    def __init__(self, scenario: Any = "b2b-saas", *, target: str = "openai", start_s: float = 60.0,
                 duration_s: float = 180.0, kind: str = "down", max_retries: int = 2, base_s: float = 0.5,
                 after_s: float = 120.0, seed: int = 0, variants: Mapping[str, Mapping[str, Any]] | None = None,
                 overrides: Mapping[str, Any] | None = None, auto: bool = True, debounce_s: float = 0.4,
                 timer: TimerFactory | None = None, title: str | None = None) -> None:
        from ..sim import load_scenario

        self.scenario = load_scenario(scenario)
        super().__init__(auto=auto, debounce_s=debounce_s, timer=timer,
                         title=title if title is not None else f"Outage drill: {target} on {self.scenario.name}")
        self.target = target
        self.after_s = after_s
        self.seed = seed
        self.variants = variants
        self.extra_overrides = dict(overrides or {})
        self.add_control("start_s", make_control(float(start_s), description="outage start (s)"))
        self.add_control("duration_s", make_control(float(duration_s), description="outage duration (s)"))
        self.add_control("kind", make_control(["down", "errors", "slow"], kind, description="kind"))
        self.add_control("max_retries", make_control((0, 5, 1), max_retries, description="max retries"))
        self.add_control("base_s", make_control((0.0, 4.0, 0.1), base_s, description="backoff base (s)"))
        self.last_results: dict[str, Any] = {}

    def compute(self, values: Mapping[str, Any]) -> PanelResult:
        from ..teaching import availability_timeline_figure, outage_drill

        start, duration = values["start_s"], values["duration_s"]
        table, results = outage_drill(self.scenario, self.variants, target=self.target, start_s=start,
                                      duration_s=duration, kind=values["kind"],
                                      max_retries=values["max_retries"], base_s=values["base_s"],
                                      after_s=self.after_s, seed=self.seed, extra_overrides=self.extra_overrides,
                                      progress=self.report_progress)
        self.last_results = results
        fig = availability_timeline_figure(results, (start, start + duration))
        best = table.iloc[-1]
        worst = table.iloc[0]
        if values["kind"] == "slow":  # a slowdown answers every turn, late: availability reads 100 % → 100 %
            slo = next(iter(results.values())).scenario.slo if results else self.scenario.slo
            what = "time to first token" if slo.metric == "ttft" else "latency"
            headline = (f"slow outage of {self.target} for {duration:g} s: P{slo.percentile:g} {what} during it "
                        f"{_slo_text(worst['slo_value_in_outage_s'], slo.percentile)} ({worst['variant']}) → "
                        f"{_slo_text(best['slo_value_in_outage_s'], slo.percentile)} ({best['variant']}); "
                        f"the SLO is {slo.latency_s:g} s")
        else:
            headline = (f"{values['kind']} outage of {self.target} for {duration:g} s: availability during it "
                        f"{_share_text(worst['availability_in_outage'])} ({worst['variant']}) → "
                        f"{_share_text(best['availability_in_outage'])} ({best['variant']})")
        return PanelResult(fig, table, headline, table)


def _share_text(value: float) -> str:
    """An availability for a headline: a percentage, or words for a window no turn arrived in
    (NaN: a drill of a second between two arrivals read "availability during it nan %")."""
    return "n/a (no turns)" if math.isnan(value) else f"{100 * value:.0f} %"


def _slo_text(value: float, percentile: float) -> str:
    """An SLO value for a headline: seconds; a failed percentile (inf) or no turns (NaN) in words."""
    if math.isnan(value):
        return "n/a (no turns)"
    if math.isinf(value):
        return f"never (over {100 - percentile:g} % of its turns failed)"
    return f"{value:.2f} s"
