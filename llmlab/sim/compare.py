"""Two configurations on the same traffic, seed by seed: the difference, and how sure it is.

A sweep says what each configuration did.  The question before a change ships is narrower: is
B better than A, by how much, and is that more than one run's luck?  Run on the same seeds, A
and B serve the same arrivals, queries, outages and per-request random draws (common random
numbers, as the baseline does), so most of a seed's luck — which tenants were busy, where an
incident fell — is in both runs and cancels in their difference.  The interval of the mean
*paired* difference over the seeds is then far narrower than the intervals of the two means
(``test_sim_compare`` measures it), and a change the paired interval puts clear of zero is one
the seeds agree on.  Each number is judged alone: where a change has no effect on average, one
number in twenty is still put clear of zero by chance, and more seeds settle a verdict that
matters.

    from llmlab.sim import compare
    c = compare("realtime-chat", {"providers.gpt-4o-mini.timeout_s": 3.0}, replications=5)
    print(c)              # metric, A, B, B − A and its 95 % interval
    c.table               # the same as a DataFrame

The command line is ``llmlab compare`` (:mod:`llmlab.sim.compare_cli`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np

from .metrics import mean_ci, metric_bounds, metric_kind
from .replications import run_steps
from .scenario import Scenario, ScenarioError, load_scenario

if TYPE_CHECKING:
    import pandas as pd

    from .run import SimResult

#: the numbers compared, in this order (a number no run of either side measured is left out:
#: the outage ones without an outage)
COMPARED = ("cost_usd", "projected_monthly_cost_usd", "cache_hit_rate", "semantic_hit_rate", "coalesced_rate",
            "false_hit_rate", "p50_latency_s", "p95_latency_s", "ttft_p95_s", "slo_value_s", "availability",
            "fallback_rate", "retry_amplification", "budget_rejections", "slo_violation_rate", "outage_availability",
            "outage_slo_value_s", "outage_slo_violation_rate")

#: numbers left out where every run of both sides has them at 0: a feature neither side uses
#: (coalescing off on both) would otherwise add a row of zeros to every comparison
ONLY_WHEN_NONZERO = frozenset({"coalesced_rate"})

COLUMNS = ("metric", "a", "b", "difference", "ci_low", "ci_high", "clear")


@dataclass(repr=False)
class Comparison:
    """What :func:`compare` found: ``table`` has one row per number — ``a`` and ``b`` (the means
    over the seeds), ``difference`` (the mean of B − A, seed by seed), its 95 % interval
    (``ci_low``, ``ci_high``) and ``clear`` (the interval leaves out 0: the seeds agree on the
    direction).  Seeds where neither side measured a number (no turn during an outage) are left
    out of its pairs; a difference is NaN when a run's value was infinite (an SLO value when too
    many turns failed) or one side measured what the other did not, and its interval NaN with
    fewer than two pairs.  ``a`` and ``b`` are the two replicated results."""

    scenario: str
    changes: dict[str, Any]
    seeds: tuple[int, ...]
    requests: int
    table: "pd.DataFrame"
    a: "SimResult" = field(repr=False)
    b: "SimResult" = field(repr=False)

    def __str__(self) -> str:
        from ..report import format_value

        change = ", ".join(f"{k}={v!r}" for k, v in self.changes.items())
        head = (f"{self.scenario} · A: as configured · B: {change} · {len(self.seeds)} paired runs of "
                f"{self.requests:,} request{'' if self.requests == 1 else 's'} (seeds {self.seeds[0]}–{self.seeds[-1]})")
        rows = [("", "A", "B", "B − A", "95 % interval of B − A", "")]
        for r in self.table.itertuples(index=False):
            kind = metric_kind(r.metric)
            like = r.a if math.isfinite(r.a) else 0.0
            # A and B at one precision ("$95.2000" beside "$104" read as two kinds of number)
            rows.append((r.metric, format_value(r.a, kind, r.b), format_value(r.b, kind, r.a),
                         signed(r.difference, kind, like),
                         "–" if math.isnan(r.ci_low) else
                         f"[{signed(r.ci_low, kind, like)}, {signed(r.ci_high, kind, like)}]", "*" if r.clear else ""))
        wide = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        lines = [head] + ["  ".join([row[0].ljust(wide[0])] + [cell.rjust(w) for cell, w in zip(row[1:-1], wide[1:-1])]
                                    + [row[-1]]).rstrip() for row in rows]
        lines.append("* the interval leaves out 0: every seed's luck considered, B differs from A this way "
                     "(pp: percentage points)")
        judged = int(self.table["ci_low"].notna().sum())
        if judged > 1:
            # 14 rows at 5 % each: an A/A comparison stars one of them a quarter to two fifths of the
            # time (benchmarks/interval_coverage.py); a reader scanning for stars should know
            lines.append(f"  each row is judged alone: with no real change one row in twenty is starred by chance, "
                         f"and some one of these {judged} in up to {100 * (1 - 0.95 ** judged):.0f} % of comparisons")
        return "\n".join(lines)

    __repr__ = __str__  # a notebook cell ending in the comparison shows its table, not its fields


def signed(value: float, kind: str, like: float = 0.0) -> str:
    """A difference as the table writes it: signed, shares in percentage points, dollars to the
    precision of ``like`` (the number it is a difference of: cents are noise on $11,980)."""
    if value != value:
        return "–"
    if kind == "pct":
        return f"{100 * value:+.2f} pp"
    if kind == "usd":
        sign = "+" if value >= 0 else "-"
        return f"{sign}${abs(value):,.0f}" if max(abs(value), abs(like) if like == like else 0.0) >= 100 else \
            f"{sign}${abs(value):,.4f}"
    if kind == "s":
        return f"{value:+.3f} s"
    return f"{value:+,.2f}" if kind == "x" or not float(value).is_integer() else f"{value:+,.0f}"


def compare(scenario: "Scenario | str", changes: Mapping[str, Any], *, requests: int | None = None,
            hours: float | None = None, seed: int = 0, replications: int = 5,
            overrides: Mapping[str, Any] | None = None, progress: "bool | Callable[[int, int], None]" = False,
            parallel: bool | None = None) -> Comparison:
    """Run ``scenario`` (A) and ``scenario`` with ``changes`` (B, dotted keys as ``--set``) on
    seeds ``seed … seed+replications-1`` and compare them seed by seed (module docstring).

    ``overrides`` apply to both sides first.  Both configurations are checked before either
    runs; a bad key or value raises :class:`~llmlab.sim.scenario.ScenarioError` naming it.  No
    baseline runs: the comparison is between A and B.  ``progress=True`` shows a bar per side; a
    callable gets ``(done, total)`` over both sides (B counted as long as A).  ``parallel`` is
    :func:`~llmlab.sim.run.simulate`'s, for each side's replications (long runs go to child
    processes as the CPUs allow; the numbers are the same).
    """
    from .run import preflight, simulate

    if not isinstance(changes, Mapping) or not changes:
        raise ScenarioError("changes", "at least one dotted key and its value for B, e.g. "
                                       "{'gateway.cache.threshold': 0.9}", changes)
    if isinstance(replications, bool) or not isinstance(replications, int) or replications < 2:
        raise ScenarioError("replications", "an integer >= 2 (an interval needs two seeds)", replications)
    a_scenario = load_scenario(scenario, overrides)
    b_scenario = a_scenario.with_overrides(dict(changes))
    for side in (a_scenario, b_scenario):  # both, before either side's first request
        preflight(side, requests=requests, hours=hours, seed=seed, replications=replications)
    runs = [simulate(side, requests=requests, hours=hours, seed=seed, replications=replications, baseline=False,
                     keep_requests=False, progress=_side_progress(progress, k), parallel=parallel)
            for k, side in enumerate((a_scenario, b_scenario))]
    a, b = runs
    steps = difference_steps(*(run_steps([t for _, t in side.turns.groupby("replication")]) for side in runs))
    return Comparison(a_scenario.name, dict(changes), tuple(range(seed, seed + replications)),
                      int(a.summary["requests"]), paired_table(a.replications, b.replications, steps), a, b)


def difference_steps(a: Mapping[str, float], b: Mapping[str, float]) -> dict[str, float]:
    """The step of B − A for each number with a step on either side (a share of n turns moves
    by 1/n): two values' rounding spreads add, so the difference's step is their root sum of squares."""
    return {key: math.hypot(a.get(key, 0.0), b.get(key, 0.0)) for key in {*a, *b}}


def _side_progress(progress: Any, side: int) -> Any:
    """One side's progress: a callable's ``(done, total)`` over both sides; a bool as it is."""
    if not callable(progress):
        return progress
    return lambda done, total: progress(side * total + done, 2 * total)


def paired_table(a: "pd.DataFrame", b: "pd.DataFrame", steps: Mapping[str, float] | None = None) -> "pd.DataFrame":
    """One row per :data:`COMPARED` number of two replication tables (one row per seed, the
    same seeds in the same order): the means, the mean paired difference and its interval.

    ``steps`` is the unit each number's difference moves in (:func:`difference_steps`; a share
    of n turns moves by 1/n): a share's differences that are all the same — two seeds that
    each had one more SLO violation, 0.33 pp — have no spread, and without the step the
    interval [+0.33, +0.33] starred a change that did nothing in one A/A comparison in twelve."""
    import pandas as pd

    if list(a["seed"]) != list(b["seed"]):
        raise ValueError(f"the two sides ran different seeds: {list(a['seed'])} and {list(b['seed'])}")
    rows = []
    for metric in COMPARED:
        if metric not in a or metric not in b:
            continue
        xa, xb = a[metric].to_numpy(dtype=float), b[metric].to_numpy(dtype=float)
        if np.isnan(xa).all() and np.isnan(xb).all():
            continue  # measured by no run (no turn during an outage)
        if metric in ONLY_WHEN_NONZERO and not (np.nan_to_num(xa).any() or np.nan_to_num(xb).any()):
            continue
        measured = ~(np.isnan(xa) & np.isnan(xb))  # a seed with no turn during an outage has nothing to pair
        xa, xb = xa[measured], xb[measured]
        if not (np.isfinite(xa) & np.isfinite(xb)).all():
            # an infinite SLO value (too many turns failed), or one side measured what the other did
            # not (the change moved the outages): no difference to average
            diff = lo = hi = math.nan
        else:  # one pair gives a difference but no interval (and no verdict)
            low, high = metric_bounds(metric)  # B − A of a share lies in [−1, 1]: a step's spread passed it
            diff, lo, hi = mean_ci((xb - xa).tolist(), (low - high, high - low), (steps or {}).get(metric, 0.0))
        rows.append({"metric": metric, "a": mean_ci(xa.tolist())[0], "b": mean_ci(xb.tolist())[0],  # as replicate()
                     "difference": diff, "ci_low": lo, "ci_high": hi, "clear": bool(lo > 0 or hi < 0)})
    return pd.DataFrame(rows, columns=list(COLUMNS))

