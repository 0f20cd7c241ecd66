"""A comparison as one figure: each number's paired difference B − A, relative to A, with its interval.

Numbers of different units (dollars, seconds, shares) sit on one axis as a change relative to
A's mean, on a scale linear within ±10 % and logarithmic beyond (a false-hit rate that grows
fifteenfold would otherwise flatten every other bar); each row also says its difference in its
own unit.  A bar whose interval leaves out 0 is drawn in colour, one that does not in grey, so
what the seeds agree on stands out.  A number whose A is 0 (no false hits before the change)
has no relative change: it is listed under the axis instead.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from ..report import pyplot
from .compare import signed
from .metrics import metric_kind

if TYPE_CHECKING:
    from .compare import Comparison

UP, DOWN, UNCLEAR = "#E45756", "#4C78A8", "#BBBBBB"


def plot_comparison(comparison: "Comparison", title: str = "") -> Any:
    """The figure of a :class:`~llmlab.sim.compare.Comparison` (module docstring)."""
    rows, left_out = [], []
    for r in comparison.table.itertuples(index=False):
        if not (math.isfinite(r.a) and math.isfinite(r.difference)) or r.a == 0:
            left_out.append(r.metric)
            continue
        scale = 100.0 / abs(r.a)
        rows.append((r.metric, r.difference * scale, r.ci_low * scale, r.ci_high * scale, r.clear,
                     signed(r.difference, metric_kind(r.metric), r.a)))
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 0.42 * max(len(rows), 1) + 1.6), layout="constrained")
    for y, (metric, mid, lo, hi, clear, said) in enumerate(rows):
        colour = (UP if mid > 0 else DOWN) if clear else UNCLEAR
        spread = [[mid - lo], [hi - mid]] if math.isfinite(lo) and math.isfinite(hi) else None  # one seed: none
        ax.errorbar(mid, y, xerr=spread, fmt="o", color=colour, capsize=3)
        ax.annotate(said, (1.01, y), xycoords=("axes fraction", "data"), va="center", fontsize=8, color=colour)
    ax.set_xscale("symlog", linthresh=10.0)
    # plain-text ticks (-100, 10, 1,000) with the ASCII minus every font has: the log formatter's
    # mathtext is set in the plot's font alone, and a Korean font without U+2212 drew boxes
    from matplotlib.ticker import FuncFormatter

    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _pos: f"{value:,.0f}"))
    ax.set_yticks(range(len(rows)), [r[0] for r in rows])
    ax.invert_yaxis()
    ax.axvline(0.0, color="#333333", lw=0.8)
    ax.set_xlabel("B − A, % of A's mean (95 % interval, paired by seed); red: up, blue: down, grey: not clear"
                  + (f"\nno relative change (A is 0 or not finite): {', '.join(left_out)}" if left_out else ""))
    ax.grid(axis="x", alpha=0.3)
    change = ", ".join(f"{k}={v!r}" for k, v in comparison.changes.items())
    ax.set_title(title or f"{comparison.scenario}: {change} ({len(comparison.seeds)} seeds)", fontsize=10)
    return fig
