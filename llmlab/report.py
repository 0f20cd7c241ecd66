"""Figures and tables for a simulation result.

Four figures answer the four questions people ask of a gateway before production:

* **cost over time vs baseline** — is the policy saving money, and when (cumulative USD);
* **latency CDF with the SLO line** — what share of users wait longer than the objective;
* **cache hit rate over time** — does the cache warm up, and how much is semantic;
* **outage timeline with fallback share** — when providers failed, did the chain catch it.

matplotlib is imported on first use with the non-interactive Agg backend (no display needed,
safe in a CLI, CI or a worker); every axis is labelled with its unit.
"""
from __future__ import annotations

import functools
import math
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np

if TYPE_CHECKING:
    from .sim.run import SimResult


def pyplot() -> Any:
    """``matplotlib.pyplot``, on the non-interactive Agg backend unless a notebook's inline one is
    in use (no display needed: a CLI, CI or a worker process draws as well)."""
    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg", "module://matplotlib_inline.backend_inline"):
        matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _axes(ax: Any, figsize: tuple[float, float] = (7.5, 4.2)) -> tuple[Any, Any]:
    if ax is not None:
        return ax.figure, ax
    plt = pyplot()
    fig, ax = plt.subplots(figsize=figsize, layout="constrained")
    return fig, ax


#: runs longer than this are drawn and told in hours (2,880 minutes reads worse than 48 hours)
HOURS_FROM_S = 3 * 3600.0


def _unit(seconds: float) -> tuple[float, str]:
    """Seconds per unit and its name for a span of simulated time: minutes, or hours past 3 h."""
    return (3600.0, "h") if seconds > HOURS_FROM_S else (60.0, "min")


def _clock(result: "SimResult") -> tuple[float, str]:
    """The time unit of a result's figures, from its simulated span."""
    arrivals = result.turns["arrival_s"]
    return _unit(max(float(result.summary.get("duration_s") or 0.0), float(arrivals.max()) if len(arrivals) else 0.0))


def first_run(result: "SimResult") -> "SimResult":
    """The first replication of a replicated result (itself otherwise).

    A replicated result holds every run's turns but only the first run's baseline and outage
    windows, so a figure that mixed them would compare N runs' cumulative cost with one
    baseline.  Figures show the first run, with that run's own numbers in their titles.
    """
    table = result.replications
    if table is None or "replication" not in result.turns.columns or not len(table):
        return result
    summary = {**result.summary, **table.iloc[0].to_dict()}
    summary.pop("replications", None)
    summary.pop("ci95", None)
    turns = result.turns[result.turns["replication"] == 0]
    requests = result.requests[result.requests["replication"] == 0] if "replication" in result.requests else \
        result.requests
    return replace(result, summary=summary, turns=turns, requests=requests, replications=None)


def _one_run(plot: Callable[..., Any]) -> Callable[..., Any]:
    """Plot the first run of a replicated result and say so in the title."""

    @functools.wraps(plot)
    def wrapper(result: "SimResult", *args: Any, **kwargs: Any) -> Any:
        runs = len(result.replications) if result.replications is not None else 1
        fig = plot(first_run(result), *args, **kwargs)
        if runs > 1:
            ax = fig.axes[0]
            ax.set_title(f"{ax.get_title()}\n(replication 1 of {runs}, seed {result.seed})", fontsize="medium")
        return fig

    return wrapper


def _bins(result: "SimResult", width_s: float | None = None) -> tuple[np.ndarray, float]:
    end = max(float(result.summary.get("duration_s") or 0.0), float(result.turns["arrival_s"].max() or 0.0), 1.0)
    width = width_s or max(30.0, end / 30.0)
    return np.arange(0.0, end + width, width), width


def _share_per_bin(ax: Any, edges: np.ndarray, idx: np.ndarray, total: np.ndarray, flags: np.ndarray,
                   unit_s: float, **style: Any) -> float:
    """Draw a share of requests (%) per time bin as steps across each bin; returns the largest share.

    Steps, not a line through the bins' centres: a line shows nothing for a run that fits in one
    bin (20 requests) and, joining centres, draws fallbacks before an outage has begun.
    """
    counts = np.bincount(idx, weights=flags.astype(float), minlength=len(edges))[: len(edges) - 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(total > 0, 100.0 * counts / total, np.nan)
    ax.stairs(share, edges / unit_s, baseline=None, linewidth=1.6, **style)
    return float(np.nanmax(share)) if np.isfinite(share).any() else 0.0


@_one_run
def plot_cost_over_time(result: "SimResult", ax: Any = None) -> Any:
    """Cumulative cost of the policy (incl. fixed hourly costs) and of the baseline, in USD.

    Both curves run to the end of the simulated time, where they reach the summary's
    ``cost_usd`` and ``baseline_cost_usd``: the standby's hourly cost keeps accruing after the
    last arrival (visible in a short run, whose last request comes long before its end).
    """
    fig, ax = _axes(ax)
    unit_s, unit = _clock(result)
    turns = result.turns.sort_values("arrival_s")
    duration = float(result.summary.get("duration_s") or 0.0)
    t = turns["arrival_s"].to_numpy()
    end = max([duration, *t[-1:]])
    hourly = result.summary.get("fixed_cost_usd", 0.0) / max(duration, 1e-9)
    spent = turns["cost_usd"].cumsum().to_numpy()
    ax.plot(np.append(t, end) / unit_s, np.append(spent, spent[-1:].sum()) + hourly * np.append(t, end),
            label="policy (incl. fixed cost)", color="tab:blue")
    if result.baseline_turns is not None and len(result.baseline_turns):
        b = result.baseline_turns.sort_values("arrival_s")
        tb = b["arrival_s"].to_numpy()
        base = b["cost_usd"].cumsum().to_numpy()
        ax.plot(np.append(tb, max(end, tb[-1])) / unit_s, np.append(base, base[-1]),
                label=f"baseline ({result.scenario.baseline_model})", color="tab:gray", linestyle="--")
    ax.set_xlabel(f"simulated time ({unit})")
    ax.set_ylabel("cumulative cost (USD)")
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)  # a gap between two totals is read against zero, not against the smaller one
    savings = result.summary.get("savings_pct")
    title = "Cost over time"
    if savings is not None and not math.isnan(savings):
        title += f" — {savings:.1f} % saved vs baseline" if savings >= 0 else \
            f" — {-savings:.1f} % more than the baseline"
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    return fig


@_one_run
def plot_latency_cdf(result: "SimResult", ax: Any = None) -> Any:
    """Empirical CDF of end-to-end latency (or TTFT when that is the SLO metric) with the SLO line.

    Shares are of the requests the SLO judges: policy refusals (budget, rate limit, guardrail)
    are left out, as ``slo_value_s`` leaves them out, so the curve crosses the percentile line
    at the summary's "SLO metric at its percentile".  Counted in, a run whose budgets refuse
    7 % of requests could never reach 0.95 and the figure would show a met SLO as missed.
    """
    from .sim.metrics import POLICY_REFUSALS
    from .teaching import judged_latencies

    fig, ax = _axes(ax)
    metric = result.scenario.slo.metric
    column = "ttft_s" if metric == "ttft" else "latency_s"
    label = "time to first token (s)" if metric == "ttft" else "end-to-end latency (s)"
    frames = [("policy", result.turns, "tab:blue", "-")]
    if result.baseline_turns is not None and len(result.baseline_turns):
        frames.append(("baseline", result.baseline_turns, "tab:gray", "--"))
    floor = 0.01  # cache hits answer in microseconds: show them as the step at the left edge
    refused = int(result.turns["error_code"].isin(POLICY_REFUSALS).sum())
    for name, frame, color, style in frames:
        judged = judged_latencies(frame, column)  # a failure is never answered: counted, never reached
        values = np.sort(np.maximum(judged[np.isfinite(judged)], floor))
        if len(values):
            ax.step(np.concatenate(([floor], values)), np.arange(0, len(values) + 1) / len(judged),
                    where="post", label=name, color=color, linestyle=style)
    slo = result.scenario.slo
    ax.axvline(slo.latency_s, color="tab:red", linestyle=":", label=f"SLO: P{slo.percentile:g} ≤ {slo.latency_s:g} s")
    ax.axhline(slo.percentile / 100.0, color="tab:red", alpha=0.3, linewidth=0.8)
    ax.set_xscale("log")
    ax.set_xlim(left=floor)
    ax.set_xlabel(label + f" — log scale, values below {floor:g} s shown at {floor:g} s")
    ax.set_ylabel("share of requests answered within x")
    ax.set_ylim(0, 1.02)
    if refused:
        ax.set_title("Latency distribution (unanswered requests keep the curve below 1)\n"
                     f"{refused:,} policy refusals (budget, rate limit, guardrail) left out, as in the SLO",
                     fontsize="medium")
    else:
        ax.set_title("Latency distribution (unanswered requests keep the curve below 1)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="lower right")
    return fig


@_one_run
def plot_hit_rate(result: "SimResult", ax: Any = None, width_s: float | None = None) -> Any:
    """Exact and semantic cache hit rate per time bucket, in percent of requests."""
    fig, ax = _axes(ax)
    unit_s, unit = _clock(result)
    edges, width = _bins(result, width_s)
    turns = result.turns
    idx = np.digitize(turns["arrival_s"].to_numpy(), edges) - 1
    total = np.bincount(idx, minlength=len(edges))[: len(edges) - 1]
    top = max(_share_per_bin(ax, edges, idx, total, (turns["cache"] == kind).to_numpy(), unit_s,
                             label=kind.replace("_", " "), color=color)
              for kind, color in (("exact_hit", "tab:green"), ("semantic_hit", "tab:purple")))
    ax.set_xlim(0, edges[-1] / unit_s)
    ax.set_ylim(0, min(100.0, max(5.0, top * 1.15)))  # a share: never below 0, a visible span when all hits are 0
    ax.set_xlabel(f"simulated time ({unit})")
    ax.set_ylabel(f"hit rate (% of requests per {width / unit_s:.1f} {unit})")
    ax.set_title(f"Cache hit rate — overall {100 * result.summary.get('cache_hit_rate', 0):.1f} %")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    return fig


@_one_run
def plot_outages(result: "SimResult", ax: Any = None, width_s: float | None = None) -> Any:
    """Outage windows per target (bars) and, per time bin, the share of requests served by a
    fallback, failed, or refused by a policy (budget, rate limit, guardrail).

    Failures and refusals are apart: a month's budget running out is not a provider outage,
    and counted together the refusals hid whether the chain caught the outages.
    """
    from .sim.metrics import turn_verdicts

    fig, ax = _axes(ax)
    unit_s, unit = _clock(result)
    edges, _ = _bins(result, width_s)
    windows = [w for w in result.outages if w.start_s < edges[-1] and w.end_s > 0]  # only what the plot can show
    targets = sorted({w.target for w in windows})
    colors = {"down": "tab:red", "errors": "tab:orange", "slow": "gold"}
    for row, target in enumerate(targets):
        for w in windows:
            if w.target == target:
                ax.broken_barh([(w.start_s / unit_s, (w.end_s - w.start_s) / unit_s)], (row - 0.35, 0.7),
                               facecolors=colors.get(w.kind, "tab:red"), alpha=0.6)
    ax.set_yticks(range(len(targets)), targets)
    ax.set_ylim(-0.8, max(len(targets), 1) - 0.2)
    ax.set_ylabel("outage target")
    ax.set_xlabel(f"simulated time ({unit})")
    turns = result.turns
    idx = np.digitize(turns["arrival_s"].to_numpy(), edges) - 1
    total = np.bincount(idx, minlength=len(edges))[: len(edges) - 1]
    twin = ax.twinx()
    _share_per_bin(twin, edges, idx, total, turns["fallback"].to_numpy(dtype=bool), unit_s, color="tab:blue",
                   label="served by fallback")
    answered, refused = turn_verdicts(turns)
    failed = ~answered & ~refused
    _share_per_bin(twin, edges, idx, total, failed, unit_s, color="black", linestyle=":", label="failed (unanswered)")
    if refused.any():
        _share_per_bin(twin, edges, idx, total, refused, unit_s, color="tab:gray", linestyle="-.",
                       label="refused by policy (budget, rate limit, guardrail)")
    twin.set_ylabel("share of requests (%)")
    twin.set_ylim(0, 100)
    handles = [__import__("matplotlib.patches", fromlist=["Patch"]).Patch(color=c, alpha=0.6, label=f"outage: {k}")
               for k, c in colors.items() if any(w.kind == k for w in windows)]
    lines, labels = twin.get_legend_handles_labels()
    # under the plot, not over it: the shares can be anywhere from 0 to 100 %
    twin.legend(handles=handles + lines, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3, fontsize="small",
                frameon=False)
    ax.set_xlim(0, edges[-1] / unit_s)
    ax.set_title("Outages and fallback" + ("" if windows else " (no outage in this run)"))
    return fig


FIGURES = {
    "cost_over_time.png": plot_cost_over_time,
    "latency_cdf.png": plot_latency_cdf,
    "hit_rate.png": plot_hit_rate,
    "outages.png": plot_outages,
}


def write_report(result: "SimResult", out_dir: str | Path) -> list[Path]:
    """Write the four PNG figures into ``out_dir`` (created if needed); returns their paths."""
    from .figure_files import save_figure

    plt = pyplot()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, plot in FIGURES.items():
        fig = plot(result)
        path = out / name
        save_figure(fig, path)
        plt.close(fig)
        paths.append(path)
    return paths


# ----------------------------------------------------------------------------- tables
def format_value(value: Any, kind: str, like: Any = None) -> str:
    """A summary number as the table writes it; ``kind`` is ``usd``, ``pct`` (a share, written
    ×100 with %), ``s``, ``x`` (a ratio) or anything else for a count (:func:`llmlab.sim.metrics.metric_kind`).
    ``like`` is the largest number written beside it (the baseline's, an interval's bound): dollars
    take one precision for the row, whole dollars when either reaches $100 (a row read "$22.6094"
    against "$114")."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if kind == "usd":
        other = abs(like) if isinstance(like, (int, float)) and like == like else 0.0
        return f"${value:,.4f}" if max(abs(value), other) < 100 else f"${value:,.0f}"
    if kind == "pct":
        return f"{100 * value:.2f} %"
    if kind == "s":
        # an SLO value is infinite when more turns than its percentile allows failed
        return f"{value:.2f} s" if math.isfinite(value) else "failed"
    if kind == "x":
        return f"{value:.2f}"
    return _count(value)


def _count(value: float) -> str:
    """A count, or a replications' mean of counts: ``11,125`` or ``24.33``, never ``1.112e+04``."""
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


ROWS = (
    ("cost", "cost_usd", "baseline_cost_usd", "usd"),
    ("  of which fixed hourly costs", "fixed_cost_usd", "baseline_fixed_cost_usd", "usd"),
    ("projected monthly cost", "projected_monthly_cost_usd", "baseline_projected_monthly_cost_usd", "usd"),
    ("  without the monthly caps", "projected_monthly_uncapped_cost_usd", None, "usd"),
    ("p50 latency", "p50_latency_s", None, "s"),
    ("p95 latency", "p95_latency_s", "baseline_p95_latency_s", "s"),
    ("p99 latency", "p99_latency_s", None, "s"),
    ("TTFT p95", "ttft_p95_s", "baseline_ttft_p95_s", "s"),
    ("availability", "availability", "baseline_availability", "pct"),
    ("cache hit rate", "cache_hit_rate", None, "pct"),
    ("  of which semantic", "semantic_hit_rate", None, "pct"),
    ("  of which coalesced", "coalesced_rate", None, "pct"),
    ("false hits (of cache hits)", "false_hit_rate", None, "pct"),
    ("last-resort answers", "last_resort_rate", None, "pct"),
    ("  of which another intent's", "last_resort_false_hit_rate", None, "pct"),
    ("fallback rate", "fallback_rate", None, "pct"),
    ("provider calls per request", "retry_amplification", None, "x"),
    ("hedges sent", "hedge_rate", None, "pct"),
    ("  of which won", "hedge_win_rate", None, "pct"),
    ("budget rejections", "budget_rejections", None, "n"),
    ("budget overshoot", "budget_overshoot_usd", None, "usd"),
    ("SLO metric at its percentile", "slo_value_s", None, "s"),
    ("SLO violations", "slo_violation_rate", "baseline_slo_violation_rate", "pct"),
)

#: the rows of the turns that arrived during an outage, under a heading naming their share
OUTAGE_ROWS = (
    ("  availability", "outage_availability", "baseline_outage_availability", "pct"),
    ("  SLO metric at its percentile", "outage_slo_value_s", "baseline_outage_slo_value_s", "s"),
    ("  SLO violations", "outage_slo_violation_rate", "baseline_outage_slo_violation_rate", "pct"),
)


def _outage_rows(summary: Mapping[str, Any]) -> tuple[tuple[str, str | None, str | None, str], ...]:
    """The outage section: none when no turn arrived during an outage."""
    share = summary.get("outage_turn_share")
    if not share or share != share:
        return ()
    runs, reps = summary.get("outage_runs"), summary.get("replications")
    # replicated: the share is over every run, the numbers below over the runs that had such turns
    among = f"; {runs} of {reps} runs had any" if reps and runs is not None and runs < reps else ""
    return ((f"during outages ({share * 100:.1f} % of turns{among})", None, None, ""),) + OUTAGE_ROWS


#: a row shown only when it differs from another (no caps bound the month: one figure says it)
_SHOWN_WHEN_DIFFERENT = {"projected_monthly_uncapped_cost_usd": "projected_monthly_cost_usd"}
#: a row shown only when the policy's or the baseline's value is not zero: a standby's hourly cost
#: explains a short run whose policy costs more than the baseline although it spends less per token
_SHOWN_WHEN_NONZERO = {"fixed_cost_usd": ("fixed_cost_usd", "baseline_fixed_cost_usd"),
                       # a gateway that sent no hedge: no hedge rows
                       "hedge_rate": ("hedge_rate",), "hedge_win_rate": ("hedge_rate",),
                       # a gateway that coalesces nothing: no coalescing row
                       "coalesced_rate": ("coalesced_rate",)}


def _nonzero(value: Any) -> bool:
    """A number to show: neither zero, None nor NaN."""
    return bool(value) and value == value


def _span(seconds: float) -> str:
    unit_s, unit = _unit(seconds)
    return f"{seconds / unit_s:.1f} {unit}"


#: the gap in availability (policy vs baseline) from which the table adds the savings per answered turn
ANSWERED_GAP = 0.01


def answered_apart(summary: Mapping[str, Any]) -> bool:
    """Whether the policy and the baseline answered shares of the turns :data:`ANSWERED_GAP` or more
    apart, with a savings per answered turn to show: the two bills then paid for different
    amounts of service, and per answered turn is the fair figure (the table, the panels)."""
    per_answered = summary.get("savings_per_answered_pct")
    gap = abs((summary.get("availability") or 0.0) - (summary.get("baseline_availability") or 0.0))
    return per_answered is not None and not math.isnan(per_answered) and gap >= ANSWERED_GAP


def few_turns_note(summary: Mapping[str, Any]) -> str:
    """A line saying which latency percentiles rest on too few turns to be more than the slowest
    ones ('' when none does).  Linear interpolation puts the P95 of n turns between the two
    slowest while n <= 20 (at n = 20 still 5 % of the way from the second slowest to the
    slowest; the note said nothing there), the P99 while n <= 100; a 12-request run's "p99
    latency" read as a tail it never measured."""
    from .sim.metrics import POLICY_REFUSALS

    errors = summary.get("errors") or {}
    waited = (summary.get("requests") or 0) - sum(errors.get(code, 0) for code in POLICY_REFUSALS)
    short = [name for name, needs in (("P95", 20), ("P99", 100)) if 0 < waited <= needs]
    if not short:
        return ""
    return (f"few turns: {' and '.join(short)} over {_count(waited)} turns a user waited on (P95 wants over 20, "
            f"P99 over 100), so {'they are' if len(short) > 1 else 'it is'} about the slowest turn")


def summary_table(summary: Mapping[str, Any]) -> str:
    """A plain-text table of the headline numbers, policy vs baseline (with 95 % CIs if any)."""
    ci = summary.get("ci95") or {}
    reps = summary.get("replications")
    n = summary.get("requests", 0)
    head = (f"{summary.get('scenario', '')} · {n:,} request{'' if n == 1 else 's'} · seed {summary.get('seed', 0)}"
            f" · {_span(float(summary.get('duration_s') or 0.0))} simulated")
    if reps:
        head += f" · mean of {reps} replications (95 % CI)"
    cells = []
    for label, key, base_key, kind in ROWS + _outage_rows(summary):
        if key is None:  # a heading
            cells.append((label, "", ""))
            continue
        value = summary.get(key)
        same_as = _SHOWN_WHEN_DIFFERENT.get(key)
        if same_as is not None and (value is None or value == summary.get(same_as)):
            continue
        if key in _SHOWN_WHEN_NONZERO and not any(_nonzero(summary.get(k)) for k in _SHOWN_WHEN_NONZERO[key]):
            continue
        baseline = summary.get(base_key) if base_key else None
        bounds = tuple(ci[key]) if key in ci and reps else ()
        # every dollar figure of the row at one precision: its interval's too ("$23 [$21.9100, $23.3100]")
        like = max((x for x in (value, baseline, *bounds) if isinstance(x, (int, float)) and x == x),
                   key=abs, default=None)
        text = format_value(value, kind, like)
        if bounds:
            lo, hi = bounds
            symmetric = isinstance(value, (int, float)) and math.isclose(value - lo, hi - value, abs_tol=1e-12)
            # a rate's interval clipped at 0 or 1 is no longer "± half-width"
            text += f" ±{format_value((hi - lo) / 2, kind)}" if kind == "pct" and symmetric else \
                f" [{format_value(lo, kind, like)}, {format_value(hi, kind, like)}]"
        base = format_value(baseline, kind, like) if base_key else ""
        cells.append((label, text, base))
    # columns as wide as their widest cell: a confidence interval must not push the baseline aside
    wide = max([24] + [len(text) for _, text, _ in cells])
    lines = [head, f"{'':30s} {'policy':>{wide}s} {'baseline':>14s}"]
    lines += [f"{label:30s} {text:>{wide}s} {base:>14s}".rstrip() for label, text, base in cells]
    savings = summary.get("savings_pct")
    if savings is not None and not (isinstance(savings, float) and math.isnan(savings)):
        lines.append(f"{'savings vs baseline':30s} {f'{savings:.1f} %':>{wide}s}")
        refused = summary.get("refused_savings_pct")
        if refused and not math.isnan(refused):  # percentage points of the savings that are refusals
            lines.append(f"{'  of which refused requests':30s} {f'{refused:.1f} pp':>{wide}s}")
        if answered_apart(summary):
            per_answered = summary["savings_per_answered_pct"]
            lines.append(f"{'  per answered turn':30s} {f'{per_answered:.1f} %':>{wide}s}")
    few = few_turns_note(summary)
    if few:
        lines.append(few)
    met = summary.get("slo_met")
    metric = {"ttft": "TTFT"}.get(summary.get("slo_metric", "latency"), summary.get("slo_metric", "latency"))
    slo = (f"SLO: P{summary.get('slo_percentile', 95):g} {metric} ≤ "
           f"{summary.get('slo_s', 0):g} s" + ("" if met is None else (" — met" if met else " — MISSED")))
    if reps and "slo_met_share" in summary:
        slo += f" (met in {round(summary['slo_met_share'] * reps)} of {reps} runs)"
    errors = summary.get("errors") or {}
    if errors:
        slo += " · errors" + (" per run" if reps else "") + ": " + ", ".join(f"{k} {_count(v)}" for k, v in errors.items())
    lines.append(slo)
    return "\n".join(lines)
