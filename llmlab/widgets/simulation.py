"""Panels that simulate a scenario: :class:`SimulationPanel` (controls bound to dotted override
keys) and :class:`ComparePanel` (the controls' values against the scenario's own, paired by seed)."""
from __future__ import annotations

import html
import math
from typing import Any, Callable, Mapping, Sequence

from ..plotting_fonts import label
from .base import Panel, PanelResult, TimerFactory, make_control


def _calibrated_threshold(scenario: Any) -> float | None:
    from ..cache.semantic import threshold_for

    cache = getattr(getattr(scenario, "gateway", None), "cache", None)
    return threshold_for(cache.embedder)["threshold"] if cache is not None else None


#: settings whose unset value (None) means "the library's default", and how to read that default:
#: a slider must start where the run will actually be, not at its minimum
_EFFECTIVE = {"gateway.cache.threshold": _calibrated_threshold}


def scenario_value(scenario: Any, key: str) -> Any:
    """The value a run uses at a dotted key of a scenario (None if it is not set and has no default)."""
    value = _raw_value(scenario, key)
    if value is None and key in _EFFECTIVE:
        return _EFFECTIVE[key](scenario)
    return value


def _raw_value(scenario: Any, key: str) -> Any:
    from ..sim.scenario import split_key

    node: Any = scenario.model_dump() if hasattr(scenario, "model_dump") else scenario
    for part in split_key(key):
        if isinstance(node, Mapping):
            node = node.get(part)
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
        if node is None:
            return None
    return node


#: summary keys shown by :class:`SimulationPanel` unless told otherwise
SIM_METRICS = ("cost_usd", "savings_pct", "projected_monthly_cost_usd", "cache_hit_rate", "false_hit_rate",
               "p50_latency_s", "p95_latency_s", "ttft_p95_s", "availability", "fallback_rate",
               "retry_amplification", "slo_violation_rate")

#: run arguments (not scenario overrides) a SimulationPanel control may set
RUN_KEYS = ("requests", "hours", "seed", "replications")


def summary_table(summary: Mapping[str, Any], baseline: Mapping[str, Any] | None = None,
                  metrics: Sequence[str] = SIM_METRICS) -> Any:
    """A metric × (policy, baseline) DataFrame of a simulation summary."""
    import pandas as pd

    rows = []
    for key in metrics:
        if key not in summary:
            continue
        row = {"metric": key, "policy": summary[key]}
        if baseline is not None:
            row["baseline"] = baseline.get(key, float("nan")) if key not in ("savings_pct",) else float("nan")
        ci = summary.get("ci95", {}).get(key) if isinstance(summary.get("ci95"), Mapping) else None
        if ci:
            row["ci95"] = f"[{ci[0]:,.4g}, {ci[1]:,.4g}]"
        rows.append(row)
    return pd.DataFrame(rows)


class SimulationPanel(Panel):
    """Simulate a scenario with controls bound to dotted override keys.

        SimulationPanel("realtime-chat", controls={
            "traffic.rate_per_s": (0.5, 6.0, 0.5),
            "gateway.retry.max_retries": (0, 4, 1),
            "providers.gpt-4o-mini.timeout_s": 3.0,      # a FloatText
        }, requests=600)

    Keys in :data:`RUN_KEYS` (``requests``, ``hours``, ``seed``, ``replications``) set run
    arguments instead of overrides.  ``overrides`` are fixed extra overrides.  ``figure`` is a
    callable ``(SimResult) -> matplotlib Figure``; the default plots the latency (or TTFT, per
    the scenario's SLO) CDF of the policy and the baseline with the SLO line.
    """

    title = "Simulation"

    def __init__(self, scenario: Any = "b2b-saas", controls: Mapping[str, Any] | None = None, *,
                 requests: int | None = 500, hours: float | None = None, seed: int = 0, replications: int = 1,
                 overrides: Mapping[str, Any] | None = None, metrics: Sequence[str] = SIM_METRICS,
                 baseline: bool | None = None, figure: Callable[[Any], Any] | None = None,
                 auto: bool = True, debounce_s: float = 0.4, timer: TimerFactory | None = None,
                 title: str | None = None) -> None:
        from ..sim import load_scenario

        self.scenario = load_scenario(scenario)
        super().__init__(auto=auto, debounce_s=debounce_s, timer=timer,
                         title=title if title is not None else f"Simulation: {self.scenario.name}")
        self.run_args = {"requests": requests, "hours": hours, "seed": seed, "replications": replications}
        self.fixed_overrides = dict(overrides or {})
        self.metrics = tuple(metrics)
        self.baseline = baseline
        self.figure_fn = figure
        current = self.scenario.with_overrides(self.fixed_overrides) if self.fixed_overrides else self.scenario
        for key, spec in (controls or {}).items():
            value = self.run_args.get(key) if key in RUN_KEYS else scenario_value(current, key)
            self.add_control(key, make_control(spec, value, description=key))
        self.last_sim: Any = None

    def overrides(self, values: Mapping[str, Any]) -> dict[str, Any]:
        return {**self.fixed_overrides, **{k: v for k, v in values.items() if k not in RUN_KEYS}}

    def run_arguments(self, values: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
        """``requests``, ``hours``, ``seed`` and ``replications`` for a run with these control values."""
        args = {**self.run_args, **{k: v for k, v in values.items() if k in RUN_KEYS}}
        if args.get("hours") is not None:
            args["requests"] = None
        if "traffic.requests" in overrides or "traffic.hours" in overrides:  # they size the run (as in a sweep):
            args["requests"] = args["hours"] = None                            # a run argument would override them
        return args

    def compute(self, values: Mapping[str, Any]) -> PanelResult:
        from ..sim import simulate

        overrides = self.overrides(values)
        args = self.run_arguments(values, overrides)
        scenario = self.scenario.with_overrides(overrides)  # ScenarioError names the field
        self.report_progress(0, 100)
        self.status.value = "simulating…"
        result = simulate(scenario, requests=args["requests"], hours=args["hours"], seed=args["seed"],
                          replications=args["replications"], baseline=self.baseline, progress=self.report_progress)
        self.last_sim = result
        fig = self.figure_fn(result) if self.figure_fn is not None else default_sim_figure(result)
        s = result.summary
        headline = (f"{s['requests']} requests · cost ${s['cost_usd']:.4f}" + savings_phrase(s)
                    + f" · {slo_phrase(s)} · availability {100 * s['availability']:.1f} %")
        return PanelResult(fig, summary_table(s, result.baseline_summary, self.metrics), headline, result)


class ComparePanel(SimulationPanel):
    """A change judged on the same seeds (:func:`llmlab.sim.compare`): the scenario as it is (A)
    against the scenario with the controls' values (B), every difference with its interval.

        ComparePanel("b2b-saas", controls={"gateway.cache.threshold": (0.80, 0.99, 0.01)}, requests=800)

    The controls start at A's values, where every difference is 0; move one and B moves with it.
    ``overrides`` apply to both sides; controls named in :data:`RUN_KEYS` size the runs.  The
    figure is :func:`llmlab.sim.compare_plot.plot_comparison`, the table the comparison's.
    """

    def __init__(self, scenario: Any = "b2b-saas", controls: Mapping[str, Any] | None = None, *,
                 requests: int | None = 500, hours: float | None = None, seed: int = 0, replications: int = 5,
                 overrides: Mapping[str, Any] | None = None, auto: bool = True, debounce_s: float = 0.4,
                 timer: TimerFactory | None = None, title: str | None = None) -> None:
        super().__init__(scenario, controls, requests=requests, hours=hours, seed=seed, replications=replications,
                         overrides=overrides, auto=auto, debounce_s=debounce_s, timer=timer, title=title)
        if title is None:
            self.title_html.value = f"<b>{html.escape(f'Compare: {self.scenario.name}')}</b>"
        self.last_comparison: Any = None

    def compute(self, values: Mapping[str, Any]) -> PanelResult:
        import pandas as pd

        from ..sim import ScenarioError, compare
        from ..sim.compare import signed
        from ..sim.compare_plot import plot_comparison
        from ..sim.metrics import metric_kind

        changes = {k: v for k, v in values.items() if k not in RUN_KEYS}
        if not changes:
            raise ScenarioError("controls", "at least one scenario field for B to change", sorted(values))
        args = self.run_arguments(values, {**self.fixed_overrides, **changes})
        self.status.value = "simulating A and B…"
        result = compare(self.scenario, changes, overrides=self.fixed_overrides, progress=self.report_progress, **args)
        self.last_comparison = result
        clear = result.table[result.table["clear"]]
        # what a change trades away first (wrong answers, lost service), then the rest in the table's order:
        # the first four alone left out false hits +25 pp beside a lower cost
        first = clear["metric"].isin(WATCHED)
        shown = pd.concat([clear[first], clear[~first]]).head(5)
        headline = (f"B − A over {len(result.seeds)} seeds: {len(clear)} of {len(result.table)} numbers differ "
                    "clearly" + ("" if clear.empty else ": " + ", ".join(
                        f"{r.metric} {signed(r.difference, metric_kind(r.metric), r.a)}"
                        for r in shown.itertuples())))
        return PanelResult(plot_comparison(result), result.table, headline, result)


#: differences a comparison's headline names first when they are clear: what a cheaper setting costs in quality
WATCHED = ("false_hit_rate", "availability", "outage_availability")


def slo_phrase(summary: Mapping[str, Any]) -> str:
    """The scenario's objective as a headline says it: ``P95 TTFT 2.66 s (≤ 3 s: met)``, the
    metric the SLO is about (a full-answer P95 next to a TTFT objective reads as a breach)."""
    name = "TTFT" if summary.get("slo_metric") == "ttft" else "latency"
    value, met = summary.get("slo_value_s", math.nan), summary.get("slo_met")
    shown = "n/a" if value != value else ("∞" if value == math.inf else f"{value:.2f} s")
    verdict = "" if met is None else (": met" if met else ": missed")
    phrase = f"P{summary.get('slo_percentile', 95):g} {name} {shown} (≤ {summary.get('slo_s', math.nan):g} s{verdict})"
    share, during = summary.get("outage_turn_share"), summary.get("outage_slo_value_s", math.nan)
    if share and during == during:  # a drill hardly moves a whole run's percentile: said apart
        phrase += f", {'∞' if during == math.inf else f'{during:.2f} s'} during outages"
    return phrase


def savings_phrase(summary: Mapping[str, Any]) -> str:
    """`` · saves x % vs baseline``, with the points that are refused service (``refused_savings_pct``)
    and, when the two runs answered shares apart, the savings per answered turn: capped at 0, the
    panel read "saves 93.4 %" beside an availability of 43 %.  Empty without a baseline."""
    from ..report import answered_apart

    savings = summary.get("savings_pct", math.nan)
    if savings != savings:
        return ""
    phrase = f" · saves {savings:.1f} % vs baseline"
    refused = summary.get("refused_savings_pct", math.nan)
    if refused == refused and abs(refused) >= 0.05:
        phrase += f" ({refused:.1f} points of it refused requests)"
    if answered_apart(summary):
        phrase += f", {summary['savings_per_answered_pct']:.1f} % per answered turn"
    return phrase


def default_sim_figure(result: Any) -> Any:
    """Latency (or TTFT) CDF of the policy and, when present, the baseline, with the SLO line."""
    from ..teaching import judged_latencies, latency_cdf_figure

    # as the SLO judges them: refusals (answered in milliseconds) left out, failures never answered
    metric = "ttft_s" if result.scenario.slo.metric == "ttft" else "latency_s"
    series = {label("정책", "policy"): judged_latencies(result.turns, metric)}
    if result.baseline_turns is not None and len(result.baseline_turns):
        series[label("기준선 (전부 큰 모델)", "baseline (all on one model)")] = judged_latencies(result.baseline_turns,
                                                                                               metric)
    xlabel = label("첫 토큰 지연 TTFT (초)", "time to first token (s)") if metric == "ttft_s" else None
    return latency_cdf_figure(series, result.scenario.slo.latency_s, percentile=result.scenario.slo.percentile,
                              xlabel=xlabel)
