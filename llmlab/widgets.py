"""ipywidgets panels for the notebooks: controls, a run button, progress, a plot and a table.

Every panel has the same shape (:class:`Panel`)::

    ┌ controls (sliders, dropdowns, text boxes) ─ [Run] ─ progress ─ status ┐
    │ output area: error message (only after bad input) · plot (PNG) · summary table │
    └────────────────────────────────────────────────────────────────────────────────┘

Changing a control re-runs the panel after a short quiet period (:class:`Debouncer`), so
dragging a slider across twenty values costs one run, not twenty.  The timer is injectable:
tests pass a :class:`ManualTimer` and fire it by hand, so they are deterministic.  Inside a
kernel the default timer is the kernel's asyncio loop (callbacks run on the kernel's main
thread, between messages).

Bad input never breaks a panel: the package validates every value (``ConfigError``,
``ScenarioError``, ``ValueError``) and the panel shows that exact message in its output area;
the next good value runs normally.  Every control, the button, the progress bar, the status
line, the plot and the table carry a CSS class ``llmlab-<name>`` for browser tests
(``.llmlab-threshold .noUi-handle``).

Panels here:

* :class:`ThresholdPanel` — semantic-cache threshold vs hit rate / false-hit rate on the
  labelled pairs, with and without the hit guard, and what the chosen threshold saves;
* :class:`SimulationPanel` — any scenario with controls bound to dotted override keys;
* :class:`OutageDrillPanel` — a primary outage with and without fallback, retries and breaker.

ipywidgets and matplotlib are imported here, never by ``import llmlab``.
"""
from __future__ import annotations

import asyncio
import base64
import html
import io
import math
import re
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import ipywidgets as W

from .plotting_fonts import label

__all__ = [
    "ComparePanel", "Debouncer", "ManualTimer", "OutageDrillPanel", "Panel", "PanelResult", "SimulationPanel",
    "ThresholdPanel",
    "css_class", "default_timer", "figure_png", "format_error", "make_control", "scenario_value", "summary_table",
    "threshold_economics",
]

TimerFactory = Callable[[float, Callable[[], None]], Any]


# ----------------------------------------------------------------------------- debounce
def default_timer(delay_s: float, callback: Callable[[], None]) -> Any:
    """Run ``callback`` after ``delay_s``; returns a handle with ``cancel()``.

    Inside a running asyncio loop (a Jupyter/Voilà kernel handling a widget message) the loop's
    ``call_later`` is used, so the callback runs on the kernel's main thread; elsewhere a daemon
    ``threading.Timer``.
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    if loop is not None:
        return loop.call_later(delay_s, callback)
    timer = threading.Timer(delay_s, callback)
    timer.daemon = True
    timer.start()
    return timer


class _ManualHandle:
    def __init__(self, delay_s: float, callback: Callable[[], None]) -> None:
        self.delay_s = delay_s
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class ManualTimer:
    """A timer that fires only when told (tests, and notebooks executed headlessly).

    ``timer = ManualTimer(); panel = ThresholdPanel(..., timer=timer)``; change controls, then
    ``timer.fire()`` runs every callback still pending (cancelled ones are dropped) and returns
    how many ran.
    """

    def __init__(self) -> None:
        self.scheduled: list[_ManualHandle] = []

    def __call__(self, delay_s: float, callback: Callable[[], None]) -> _ManualHandle:
        handle = _ManualHandle(delay_s, callback)
        self.scheduled.append(handle)
        return handle

    @property
    def pending(self) -> int:
        return sum(not h.cancelled for h in self.scheduled)

    def fire(self) -> int:
        due, self.scheduled = self.scheduled, []
        ran = 0
        for handle in due:
            if not handle.cancelled:
                handle.cancelled = True
                handle.callback()
                ran += 1
        return ran


class Debouncer:
    """Collapse a burst of calls into one call of ``fn``, ``wait_s`` after the last of them.

    Each call cancels the pending one and schedules a new one with the latest arguments.
    ``flush()`` runs a pending call now; ``cancel()`` drops it.  ``calls`` counts requests,
    ``runs`` counts executions.
    """

    def __init__(self, fn: Callable[..., Any], wait_s: float = 0.3, timer: TimerFactory | None = None) -> None:
        if not callable(fn):
            raise TypeError("fn must be callable")
        if isinstance(wait_s, bool) or not isinstance(wait_s, (int, float)) or wait_s < 0:
            raise ValueError(f"wait_s={wait_s!r} is invalid: allowed a number >= 0")
        self.fn = fn
        self.wait_s = float(wait_s)
        self.timer = timer or default_timer
        self.calls = 0
        self.runs = 0
        self._handle: Any = None
        self._args: tuple[tuple[Any, ...], dict[str, Any]] = ((), {})
        self._lock = threading.Lock()

    @property
    def pending(self) -> bool:
        return self._handle is not None

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        with self._lock:
            self.calls += 1
            self._args = (args, kwargs)
            if self._handle is not None:
                self._handle.cancel()
            self._handle = self.timer(self.wait_s, self._fire)

    def _fire(self) -> None:
        with self._lock:
            if self._handle is None:
                return
            self._handle = None
            args, kwargs = self._args
        self.runs += 1
        self.fn(*args, **kwargs)

    def flush(self) -> bool:
        """Run the pending call now (if any); True when something ran."""
        with self._lock:
            handle = self._handle
        if handle is None:
            return False
        handle.cancel()
        self._fire()
        return True

    def cancel(self) -> None:
        with self._lock:
            if self._handle is not None:
                self._handle.cancel()
            self._handle = None


# ----------------------------------------------------------------------------- rendering helpers
def css_class(name: str) -> str:
    """``"gateway.cache.threshold"`` → ``"llmlab-gateway-cache-threshold"``."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return f"llmlab-{slug}"


def figure_png(fig: Any, dpi: int = 90) -> bytes:
    """Render a matplotlib figure to PNG bytes and close it (no pyplot state is left behind)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    try:
        import matplotlib.pyplot as plt

        plt.close(fig)
    except Exception:  # pragma: no cover - figure built without pyplot
        pass
    return buf.getvalue()


def format_error(exc: BaseException) -> str:
    """``"ConfigError: threshold=1.5 is invalid: allowed a number in [0, 1]"``."""
    message = str(exc) or repr(exc)
    return f"{type(exc).__name__}: {message}"


def _table_html(table: Any) -> str:
    if table is None:
        return ""
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover
        pd = None
    if pd is not None and isinstance(table, Mapping):
        table = pd.DataFrame({"metric": list(table.keys()), "value": [_fmt(v) for v in table.values()]})
    if pd is not None and isinstance(table, pd.DataFrame):
        return table.to_html(index=False, classes="llmlab-table", border=0,
                             float_format=lambda x: f"{x:,.4g}", escape=True)
    return f"<pre>{html.escape(str(table))}</pre>"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.4g}"
    return str(value)


@dataclass
class PanelResult:
    """What a panel's ``compute`` returns: a figure, a table (DataFrame or dict) and a headline."""

    figure: Any = None
    table: Any = None
    headline: str = ""
    data: Any = None  # anything else worth keeping (a SimResult, a DataFrame …)


# ----------------------------------------------------------------------------- the panel
class Panel:
    """Controls + run button + progress + output area; subclasses implement :meth:`compute`.

    ``auto=True`` re-runs on every control change (debounced by ``debounce_s`` with ``timer``);
    the Run button always runs at once.  ``run()`` is synchronous and returns the
    :class:`PanelResult` (or None after an error, whose text is in ``last_error``).
    """

    title = ""

    def __init__(self, *, auto: bool = True, debounce_s: float = 0.3, timer: TimerFactory | None = None,
                 title: str | None = None) -> None:
        self.auto = auto
        self.controls: dict[str, W.ValueWidget] = {}
        self.runs = 0
        self.last_error: str | None = None
        self.last_result: PanelResult | None = None
        self.last_png: bytes | None = None
        self.last_values: dict[str, Any] = {}
        self.running = False
        self._run_lock = threading.RLock()  # one computation at a time, whichever thread the timer uses
        self.title_html = W.HTML(f"<b>{html.escape(title if title is not None else self.title)}</b>")
        self.run_button = W.Button(description="Run", icon="play", tooltip="run now", button_style="primary")
        self.run_button.add_class("llmlab-run")
        self.run_button.on_click(lambda _b: self.run())
        self.progress = W.IntProgress(value=0, min=0, max=100, description="", layout=W.Layout(width="160px"))
        self.progress.add_class("llmlab-progress")
        self.status = W.HTML("")
        self.status.add_class("llmlab-status")
        self.error = W.HTML("", layout=W.Layout(display="none"))
        self.error.add_class("llmlab-error")
        self.plot = W.Output()
        self.plot.add_class("llmlab-plot")
        self.headline = W.HTML("")
        self.headline.add_class("llmlab-headline")
        self.summary = W.HTML("")
        self.summary.add_class("llmlab-summary")
        self.output_area = W.VBox([self.error, self.headline, self.plot, self.summary])
        self.output_area.add_class("llmlab-output")
        self._debounced = Debouncer(self._auto_run, debounce_s, timer)
        self._controls_box = W.VBox([])
        self._controls_box.add_class("llmlab-controls")
        self.widget = W.VBox([self.title_html, self._controls_box,
                              W.HBox([self.run_button, self.progress, self.status]), self.output_area])
        self.widget.add_class("llmlab-panel")

    # -- controls
    def add_control(self, name: str, widget: W.ValueWidget, *, rerun: bool = True) -> W.ValueWidget:
        """Register ``widget`` under ``name`` (its CSS class is ``llmlab-<name>``)."""
        widget.add_class(css_class(name))
        self.controls[name] = widget
        self._controls_box.children = tuple(self._controls_box.children) + (widget,)
        if rerun:
            widget.observe(self._on_change, names="value")
        return widget

    def _on_change(self, change: Any = None) -> None:
        if self.auto:
            self._debounced()

    def _auto_run(self) -> None:
        self.run()

    def values(self) -> dict[str, Any]:
        return {name: w.value for name, w in self.controls.items()}

    def set(self, **values: Any) -> None:
        """Set controls by name (as a user would; triggers the debounced re-run)."""
        for name, value in values.items():
            self.controls[name].value = value

    def flush(self) -> bool:
        """Run a pending debounced re-run now."""
        return self._debounced.flush()

    # -- running
    def report_progress(self, done: int, total: int) -> None:
        """Progress callback handed to long computations (updates the bar at most ~50 times)."""
        total = max(int(total), 1)
        pct = int(100 * min(max(done, 0), total) / total)
        if pct != self.progress.value and (pct == 100 or pct - self.progress.value >= 2 or pct < self.progress.value):
            self.progress.value = pct

    def compute(self, values: Mapping[str, Any]) -> PanelResult:  # pragma: no cover - abstract
        raise NotImplementedError

    def run(self) -> PanelResult | None:
        """Compute with the current control values and redraw; errors are shown, not raised."""
        with self._run_lock:
            return self._run()

    def _run(self) -> PanelResult | None:
        self._debounced.cancel()
        values = self.values()
        self.running = True
        self.run_button.disabled = True
        self.progress.bar_style = "info"
        self.progress.value = 0
        self.status.value = "running…"
        started = time.perf_counter()
        try:
            result = self.compute(values)
        except Exception as exc:  # the package's validation errors and anything unexpected
            self.last_error = format_error(exc)
            self.last_result = None
            self.last_png = None
            self.error.value = (f"<div style='color:#b00020;white-space:pre-wrap'>"
                                f"{html.escape(self.last_error)}</div>")
            self.error.layout.display = None
            self.plot.outputs = ()
            self.headline.value = ""
            self.summary.value = ""
            self.progress.bar_style = "danger"
            self.status.value = "error: fix the value and try again"
            return None
        finally:
            self.running = False
            self.run_button.disabled = False
            self.runs += 1
            self.last_values = dict(values)
        self.last_error = None
        self.error.value = ""
        self.error.layout.display = "none"
        self.last_result = result
        self._render(result)
        self.progress.value = 100
        self.progress.bar_style = "success"
        self.status.value = f"done in {time.perf_counter() - started:.1f} s"
        return result

    def _render(self, result: PanelResult) -> None:
        if result.figure is not None:
            png = figure_png(result.figure)
            self.last_png = png
            self.plot.outputs = ({"output_type": "display_data",
                                  "data": {"image/png": base64.b64encode(png).decode("ascii"),
                                           "text/plain": "<llmlab figure>"},
                                  "metadata": {}},)
        else:
            self.last_png = None
            self.plot.outputs = ()
        self.headline.value = html.escape(result.headline) if result.headline else ""
        self.summary.value = _table_html(result.table)

    # -- display
    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


# ----------------------------------------------------------------------------- control specs
def make_control(spec: Any, value: Any = None, description: str = "") -> W.ValueWidget:
    """A widget from a short spec.

    * a widget → itself;
    * ``(min, max, step)`` → a slider (``FloatSlider`` if any number is a float, else ``IntSlider``);
    * a list → a ``Dropdown`` of its items;
    * ``bool`` → a ``Checkbox``; ``int``/``float`` → an ``IntText``/``FloatText`` (no clamping, so
      the package's validation sees what was typed); ``str`` → a ``Text``.

    ``value`` (e.g. the scenario's current setting) becomes the initial value when it fits.
    """
    style = {"description_width": "initial"}
    if isinstance(spec, W.ValueWidget):
        return spec
    if isinstance(spec, tuple) and len(spec) == 3 and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                          for x in spec):
        lo, hi, step = spec
        is_float = any(isinstance(x, float) for x in spec)
        init = value if isinstance(value, (int, float)) and not isinstance(value, bool) and lo <= value <= hi else lo
        cls = W.FloatSlider if is_float else W.IntSlider
        kw: dict[str, Any] = {"readout_format": ".3g"} if is_float else {}
        return cls(value=init, min=lo, max=hi, step=step, description=description, continuous_update=False,
                   style=style, layout=W.Layout(width="460px"), **kw)
    if isinstance(spec, list):
        options = list(spec)
        init = value if value in options else options[0]
        return W.Dropdown(options=options, value=init, description=description, style=style)
    if isinstance(spec, bool):
        return W.Checkbox(value=bool(spec if value is None else value), description=description, indent=False)
    if isinstance(spec, int):
        return W.IntText(value=spec if value is None else value, description=description, style=style)
    if isinstance(spec, float):
        return W.FloatText(value=spec if value is None else value, description=description, style=style)
    if isinstance(spec, str):
        return W.Text(value=spec if value is None else str(value), description=description, style=style)
    raise TypeError(f"cannot build a control from {spec!r}: use a widget, (min, max, step), a list, bool, "
                    "int, float or str")


def _calibrated_threshold(scenario: Any) -> float | None:
    from .cache.semantic import threshold_for

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
    from .sim.scenario import split_key

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
        from .sim import load_scenario

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
        from .sim import simulate

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
        headline = (f"{s['requests']} requests · cost ${s['cost_usd']:.4f}"
                    + (f" · saves {s['savings_pct']:.1f} % vs baseline" if s.get("savings_pct") == s.get("savings_pct")
                       else "")
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
        from .sim import ScenarioError, compare
        from .sim.compare import signed
        from .sim.compare_plot import plot_comparison
        from .report import metric_kind

        changes = {k: v for k, v in values.items() if k not in RUN_KEYS}
        if not changes:
            raise ScenarioError("controls", "at least one scenario field for B to change", sorted(values))
        args = self.run_arguments(values, {**self.fixed_overrides, **changes})
        self.status.value = "simulating A and B…"
        result = compare(self.scenario, changes, overrides=self.fixed_overrides, progress=self.report_progress, **args)
        self.last_comparison = result
        clear = result.table[result.table["clear"]]
        headline = (f"B − A over {len(result.seeds)} seeds: {len(clear)} of {len(result.table)} numbers differ "
                    "clearly" + ("" if clear.empty else ": " + ", ".join(
                        f"{r.metric} {signed(r.difference, metric_kind(r.metric), r.a)}"
                        for r in clear.head(4).itertuples())))
        return PanelResult(plot_comparison(result), result.table, headline, result)


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


def default_sim_figure(result: Any) -> Any:
    """Latency (or TTFT) CDF of the policy and, when present, the baseline, with the SLO line."""
    from .teaching import latency_cdf_figure

    metric = "ttft_s" if result.scenario.slo.metric == "ttft" else "latency_s"
    series = {label("정책", "policy"): result.turns[metric].tolist()}
    if result.baseline_turns is not None and len(result.baseline_turns):
        series[label("기준선 (전부 큰 모델)", "baseline (all on one model)")] = result.baseline_turns[metric].tolist()
    xlabel = label("첫 토큰 지연 TTFT (초)", "time to first token (s)") if metric == "ttft_s" else None
    return latency_cdf_figure(series, result.scenario.slo.latency_s, percentile=result.scenario.slo.percentile,
                              xlabel=xlabel)


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
        from .sim import load_scenario

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
        from .teaching import availability_timeline_figure, outage_drill

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
        headline = (f"{values['kind']} outage of {self.target} for {duration:g} s: availability during it "
                    f"{100 * worst['availability_in_outage']:.0f} % ({worst['variant']}) → "
                    f"{100 * best['availability_in_outage']:.0f} % ({best['variant']})")
        return PanelResult(fig, table, headline, table)


# ----------------------------------------------------------------------------- threshold tuning
#: per-request prices behind the threshold panel's cost numbers (USD): a gpt-4o answer of 800 input
#: + 300 output tokens, and text-embedding-3-small on a 20-token query
DEFAULT_LLM_COST = 800 * 2.50e-6 + 300 * 10.00e-6
DEFAULT_EMBEDDING_COST = 20 * 0.02e-6


def threshold_economics(recall: float, pair_false_hit_rate: float, *, repeat_share: float, daily_requests: float,
                        llm_cost: float, embedding_cost: float, false_hit_penalty: float,
                        days: int = 30) -> dict[str, Any]:
    """Monthly money at one threshold, from pair metrics and a traffic assumption.

    A share ``repeat_share`` of queries repeats (paraphrases) a cached question and hits with
    probability ``recall``; the other queries find only a different question as their nearest
    neighbour and hit — wrongly — with probability ``pair_false_hit_rate``.  The money comes
    from :func:`llmlab.economics.semantic_cache_net_saving` (which validates every input).
    """
    from .economics import semantic_cache_net_saving

    right = repeat_share * recall
    wrong = (1.0 - repeat_share) * pair_false_hit_rate
    hit_rate = right + wrong
    out = semantic_cache_net_saving(daily_requests * days, hit_rate, llm_cost, embedding_cost,
                                    false_hit_rate=(wrong / hit_rate) if hit_rate > 0 else 0.0,
                                    false_hit_penalty=false_hit_penalty)
    out["hit_rate"] = hit_rate
    out["wrong_answer_share"] = wrong
    out["monthly_cost_without_cache"] = daily_requests * days * llm_cost
    out["monthly_cost_with_cache"] = out["monthly_cost_without_cache"] - out["gross_saving"] + out["embedding_spend"]
    return out


class ThresholdPanel(Panel):
    """Tune the semantic-cache threshold on labelled pairs, and see what it saves or costs.

    The curves come from :func:`llmlab.cache.calibration.threshold_sweep` on ``pairs_path`` —
    recall (true paraphrases that hit) and false-hit rate (must-not-hit pairs that hit) against
    the threshold, with the hit guard (solid) and without it (dashed) — computed once per panel.
    The threshold is a slider plus a text box (``llmlab-threshold``, ``llmlab-threshold-text``);
    typing a value outside [0, 1] shows the semantic cache's own ``ConfigError``.  Below the plot:
    the metrics at the chosen threshold and the monthly money (:func:`threshold_economics`).
    """

    title = "Semantic-cache threshold"

    def __init__(self, pairs_path: Any = None, embedder: str = "hashed", *, threshold: float | None = None,
                 guard: bool = True, lang: str = "overall", thresholds: Sequence[float] | None = None,
                 repeat_share: float = 0.3, daily_requests: int = 10_000, llm_cost: float = DEFAULT_LLM_COST,
                 embedding_cost: float = DEFAULT_EMBEDDING_COST, false_hit_penalty: float = 0.5,
                 memo_path: Any = None, auto: bool = True, debounce_s: float = 0.3,
                 timer: TimerFactory | None = None, title: str | None = None) -> None:
        import numpy as np

        from .cache.embedders import get_embedder
        from .cache.semantic import threshold_for
        from .catalogue import dataset_path

        super().__init__(auto=auto, debounce_s=debounce_s, timer=timer,
                         title=title if title is not None else f"Semantic-cache threshold ({embedder})")
        self.pairs_path = str(pairs_path if pairs_path is not None else dataset_path("pairs.jsonl"))
        self.embedder_name = embedder
        self._embedder = get_embedder(embedder)  # EmbedderUnavailable here, not on the first slider move
        self.memo_path = memo_path
        grid = np.round(np.arange(0.3, 1.0 + 1e-9, 0.01), 4) if thresholds is None else np.asarray(thresholds, float)
        self.grid = [float(x) for x in grid]
        self.daily_requests = daily_requests
        self.llm_cost = llm_cost
        self.embedding_cost = embedding_cost
        self._sweeps: dict[bool, Any] = {}
        start = float(threshold if threshold is not None else threshold_for(embedder)["threshold"])
        lo, hi = min(self.grid), max(self.grid)
        self.slider = W.FloatSlider(value=min(max(start, lo), hi), min=lo, max=hi, step=0.01, readout_format=".2f",
                                    description="threshold", continuous_update=False,
                                    style={"description_width": "initial"}, layout=W.Layout(width="460px"))
        self.text = W.FloatText(value=start, description="or type it", step=0.01,
                                style={"description_width": "initial"}, layout=W.Layout(width="200px"))
        self._threshold = start
        self._syncing = False
        self.add_control("threshold", self.slider, rerun=False)
        self.add_control("threshold_text", self.text, rerun=False)
        self.slider.observe(self._slider_moved, names="value")
        self.text.observe(self._text_typed, names="value")
        self.add_control("guard", W.Checkbox(value=guard, description="hit guard on", indent=False))
        self.add_control("lang", W.Dropdown(options=["overall", "en", "ko"], value=lang, description="language"))
        self.add_control("repeat_share", W.FloatSlider(value=repeat_share, min=0.0, max=1.0, step=0.05,
                                                       description="share of repeated questions",
                                                       readout_format=".2f", continuous_update=False,
                                                       style={"description_width": "initial"},
                                                       layout=W.Layout(width="460px")))
        self.add_control("false_hit_penalty", W.FloatText(value=false_hit_penalty,
                                                          description="cost of a wrong answer (USD)",
                                                          style={"description_width": "initial"}))

    # -- the threshold has two widgets and one value
    def _slider_moved(self, change: Any) -> None:
        if self._syncing:
            return
        self._threshold = float(change["new"])
        self._syncing = True
        try:
            self.text.value = round(self._threshold, 4)
        finally:
            self._syncing = False
        self._on_change()

    def _text_typed(self, change: Any) -> None:
        if self._syncing:
            return
        value = change["new"]
        self._threshold = value
        if isinstance(value, (int, float)) and 0.0 <= value <= 1.0:  # a valid threshold the slider must show
            self._syncing = True
            try:
                # typed outside the slider's range: widen it rather than show a stale value
                self.slider.min, self.slider.max = min(self.slider.min, value), max(self.slider.max, value)
                self.slider.value = value
            finally:
                self._syncing = False
        self._on_change()

    @property
    def threshold(self) -> float:
        return self._threshold

    def values(self) -> dict[str, Any]:
        out = {name: w.value for name, w in self.controls.items() if name not in ("threshold", "threshold_text")}
        out["threshold"] = self._threshold
        return out

    # -- computing
    def sweep(self, guard: bool) -> Any:
        """The full curve for one guard setting (computed once, then reused)."""
        if guard not in self._sweeps:
            from .cache.calibration import threshold_sweep

            self._sweeps[guard] = threshold_sweep(self.pairs_path, self.embedder_name, guard=guard,
                                                  thresholds=self.grid, memo_path=self.memo_path)
        return self._sweeps[guard]

    def at_threshold(self, threshold: float, guard: bool, lang: str) -> dict[str, float]:
        """Recall, false-hit rate and hit rate on the pairs at exactly ``threshold``."""
        curve = self.sweep(guard)
        rows = curve[(curve["lang"] == lang) & ((curve["threshold"] - threshold).abs() < 1e-9)]
        if not len(rows):
            from .cache.calibration import threshold_sweep

            one = threshold_sweep(self.pairs_path, self.embedder_name, guard=guard, thresholds=[threshold],
                                  memo_path=self.memo_path)
            rows = one[one["lang"] == lang]
        row = rows.iloc[0]
        return {"recall": float(row["recall"]), "false_hit_rate": float(row["false_hit_rate"]),
                "hit_rate": float(row["hit_rate"])}

    def compute(self, values: Mapping[str, Any]) -> PanelResult:
        from .cache.semantic import SemanticCache
        from .teaching import threshold_figure

        t = values["threshold"]
        SemanticCache(self._embedder, threshold=t, guard=None)  # the cache's own validation of the value
        guard, lang = bool(values["guard"]), values["lang"]
        self.report_progress(10, 100)
        on, off = self.sweep(True), self.sweep(False)
        self.report_progress(60, 100)
        m = self.at_threshold(float(t), guard, lang)
        money = threshold_economics(m["recall"], m["false_hit_rate"], repeat_share=values["repeat_share"],
                                    daily_requests=self.daily_requests, llm_cost=self.llm_cost,
                                    embedding_cost=self.embedding_cost,
                                    false_hit_penalty=values["false_hit_penalty"])
        fig = threshold_figure(on, float(t), guard_off=off, lang=lang, highlight_guard=guard,
                               title=label(f"임계값 {t:.2f}: 재질문 히트율과 오답 히트율 ({self.embedder_name})",
                                           f"threshold {t:.2f}: hits on repeats vs false hits ({self.embedder_name})"))
        import pandas as pd

        table = pd.DataFrame([
            ("threshold", f"{t:.3f}"), ("hit guard", "on" if guard else "off"), ("language", lang),
            ("recall on true paraphrases", f"{m['recall']:.1%}"),
            ("false-hit rate on must-not-hit pairs", f"{m['false_hit_rate']:.1%}"),
            ("traffic hit rate (assumed repeats)", f"{money['hit_rate']:.1%}"),
            ("wrong answers served", f"{money['wrong_answer_share']:.2%} of requests"),
            ("monthly LLM cost without cache", f"${money['monthly_cost_without_cache']:,.0f}"),
            ("monthly LLM + embedding cost with cache", f"${money['monthly_cost_with_cache']:,.0f}"),
            ("gross saving / month", f"${money['gross_saving']:,.0f}"),
            ("embedding spend / month", f"${money['embedding_spend']:,.2f}"),
            ("cost of wrong answers / month", f"${money['false_hit_penalty']:,.0f}"),
            ("net saving / month", f"${money['net_saving']:,.0f}"),
            ("break-even hit rate", f"{money['break_even_hit_rate']:.2%}"),
        ], columns=["quantity", "value"])
        headline = (f"threshold {t:.2f}, guard {'on' if guard else 'off'}: hit rate {money['hit_rate']:.1%}, "
                    f"wrong answers {money['wrong_answer_share']:.2%}, net saving ${money['net_saving']:,.0f}/month")
        return PanelResult(fig, table, headline, {**m, **money})
