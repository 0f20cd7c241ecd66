"""The panel every notebook widget is: controls, a run button, progress, a plot and a table,
re-run after a quiet period (:class:`Debouncer`); and the helpers that build and render them."""
from __future__ import annotations

import asyncio
import base64
import html
import io
import re
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import ipywidgets as W

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
