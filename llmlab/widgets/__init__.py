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

Panels here, a module each:

* :class:`ThresholdPanel` (:mod:`.threshold`) — semantic-cache threshold vs hit rate /
  false-hit rate on the labelled pairs, with and without the hit guard, and what the chosen
  threshold saves;
* :class:`SimulationPanel` (:mod:`.simulation`) — any scenario with controls bound to dotted
  override keys; :class:`ComparePanel` — the controls' values against the scenario's own,
  paired by seed;
* :class:`OutageDrillPanel` (:mod:`.drill`) — a primary outage with and without fallback,
  retries and breaker.

The panel itself, its debounce and its controls are in :mod:`.base`.

ipywidgets and matplotlib are imported here, never by ``import llmlab``.
"""
from __future__ import annotations

from ..errors import require_extra

require_extra("llmlab.widgets", "ipywidgets", "notebooks")  # a typed error naming the extra, not a bare ImportError

from .base import (Debouncer, ManualTimer, Panel, PanelResult, TimerFactory, css_class, default_timer, figure_png,
                   format_error, make_control)
from .drill import OutageDrillPanel
from .simulation import (RUN_KEYS, SIM_METRICS, ComparePanel, SimulationPanel, default_sim_figure, scenario_value,
                         slo_phrase, summary_table)
from .threshold import DEFAULT_EMBEDDING_COST, DEFAULT_LLM_COST, ThresholdPanel, threshold_economics

__all__ = [
    "DEFAULT_EMBEDDING_COST", "DEFAULT_LLM_COST", "RUN_KEYS", "SIM_METRICS", "ComparePanel", "Debouncer", "ManualTimer",
    "OutageDrillPanel", "Panel", "PanelResult", "SimulationPanel", "ThresholdPanel", "TimerFactory", "css_class",
    "default_sim_figure", "default_timer", "figure_png", "format_error", "make_control", "scenario_value",
    "slo_phrase", "summary_table", "threshold_economics",
]
