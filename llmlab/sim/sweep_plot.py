"""A sweep's table as one figure: each headline number against the grid's first key.

A sweep is asked "where does the curve bend?" — the threshold past which false hits climb, the
rate at which P95 leaves the objective — and a table of numbers hides the bend.  One panel per
headline number, the first grid key on the x axis (numbers in order, other values as the grid
lists them), one line per combination of the other keys.  A grid value that is a table
(``gateway.cache.options=[{candidates=5}, …]``) or a list is placed, and named, by its text.
"""
from __future__ import annotations

import itertools
import math
import numbers
from typing import TYPE_CHECKING, Any, Sequence

from ..report import pyplot

if TYPE_CHECKING:
    import pandas as pd

#: the panels, in order: column → axis label (a column the table lacks, or holds only NaN, is left out)
PANELS = {"cost_usd": "cost (USD)", "savings_pct": "savings vs baseline (%)", "p95_latency_s": "P95 latency (s)",
          "ttft_p95_s": "P95 time to first token (s)", "cache_hit_rate": "cache hit rate",
          "false_hit_rate": "false hits (share of cache hits)", "availability": "availability",
          "slo_violation_rate": "SLO violations (share of turns)",
          "outage_slo_value_s": "SLO metric during outages (s)"}


def _numeric(values: Sequence[Any]) -> bool:
    return all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in values)


def _text(value: Any) -> str:
    """A table or list value as the grid spells it: ``{candidates=5}``, ``[1, 2]``."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={_text(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_text(v) for v in value) + "]"
    return str(value)


def _hashable(value: Any) -> Any:
    try:
        hash(value)
    except TypeError:
        return _text(value)
    return value


def _mark_failed(ax: Any, failed: Sequence[tuple[list[Any], str]]) -> None:
    """Mark at the panel's top edge the runs a line cannot show: an SLO value is infinite when more
    turns failed than its percentile allows, and matplotlib silently drops such a point."""
    low, high = ax.get_ylim()
    span = (high - low) or 1.0
    top = high + 0.1 * span  # above every finite point, in a band of its own
    ax.set_ylim(low, top + 0.08 * span)
    for xs, colour in failed:
        ax.plot(xs, [top] * len(xs), marker="X", markersize=9, linestyle="none", color=colour, label="_failed")
    ax.text(0.02, 0.97, "X: failed (too many turns)", transform=ax.transAxes, va="top", fontsize=7)


def _panels(frame: "pd.DataFrame") -> dict[str, str]:
    """:data:`PANELS`, the savings per answered turn in place of the savings when a row's policy
    and baseline answered shares apart (as the summary table adds it, :data:`~llmlab.report.ANSWERED_GAP`):
    a baseline that answered 1 % of a stress sweep's turns cost a hundredth of the policy, and the
    panel read −18,000 %."""
    from ..report import ANSWERED_GAP

    if {"availability", "baseline_availability", "savings_per_answered_pct"} <= set(frame.columns):
        gap = (frame["availability"] - frame["baseline_availability"]).abs()
        if (gap >= ANSWERED_GAP).any():
            return {("savings_per_answered_pct" if col == "savings_pct" else col):
                    ("savings per answered turn vs baseline (%)" if col == "savings_pct" else label)
                    for col, label in PANELS.items()}
    return PANELS


def plot_sweep(frame: "pd.DataFrame", grid_keys: Sequence[str], title: str = "") -> Any:
    """The figure of a :func:`~llmlab.sim.sweep` table whose first columns are ``grid_keys``."""
    if not grid_keys or grid_keys[0] not in frame.columns:
        raise ValueError(f"grid_keys must name the table's grid columns, got {list(grid_keys)!r}")
    x_key, others = grid_keys[0], list(grid_keys[1:])
    # a table or list value (gateway.cache.options=[{candidates=5}, …]) is known by its text: it has no hash
    frame = frame.assign(**{k: frame[k].map(_hashable) for k in grid_keys if k in frame.columns})
    x_values = list(dict.fromkeys(frame[x_key].tolist()))
    numeric = _numeric(x_values)
    if numeric:
        x_values.sort()
    position = {v: (v if numeric else i) for i, v in enumerate(x_values)}
    rank = {v: i for i, v in enumerate(x_values)}  # a value's place on the x axis
    panels = [(col, label) for col, label in _panels(frame).items() if col in frame.columns and frame[col].notna().any()]
    plt = pyplot()
    cols = min(4, len(panels)) or 1
    rows = -(-len(panels) // cols) or 1
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.0 * rows), layout="constrained", squeeze=False)
    series = [dict(zip(others, combo)) for combo in itertools.product(*(dict.fromkeys(frame[k].tolist())
                                                                         for k in others))] or [{}]
    lines = []  # (legend name, its rows in x order, their x positions): the same in every panel
    for fixed in series:
        rows_of = frame
        for key, value in fixed.items():
            rows_of = rows_of[rows_of[key] == value]
        if rows_of.empty:
            continue
        rows_of = rows_of.iloc[rows_of[x_key].map(rank).to_numpy().argsort(kind="stable")]
        name = ", ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in fixed.items()) or None
        lines.append((name, rows_of, [position[v] for v in rows_of[x_key]]))
    for ax, (col, label) in zip(axes.flat, panels):
        failed = []  # (x positions, colour) of the runs whose value is infinite: too many turns failed
        for name, rows_of, xs in lines:
            ys = rows_of[col].tolist()
            (line,) = ax.plot(xs, ys, marker="o", label=name)  # matplotlib leaves an infinite point out
            at = [x for x, y in zip(xs, ys) if y == math.inf]
            if at:
                failed.append((at, line.get_color()))
        if failed:
            _mark_failed(ax, failed)
        ax.set_ylabel(label)
        ax.set_xlabel(x_key)
        if not numeric:
            ax.set_xticks(range(len(x_values)), [str(v) for v in x_values])
        elif len(x_values) <= 12:  # the grid's own values, not 0.5-steps between retries
            ax.set_xticks(x_values, [f"{v:g}" for v in x_values])
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    if len(series) > 1:
        handles, labels = axes.flat[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncols=min(4, len(series)), fontsize=8)
    fig.suptitle(title or f"sweep over {x_key}")
    return fig
