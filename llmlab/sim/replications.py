"""Replications: one scenario on seeds ``seed … seed+n-1``, as means with 95 % intervals.

One run's numbers hold its seed's luck (which tenants were busy, when an outage fell); the
mean over several seeds, with a Student-t interval clipped to each metric's range, says how
much of a difference between two configurations is the configuration's.  A share's or a
count's interval is at least as wide as its step allows (:func:`~llmlab.sim.metrics.mean_ci`):
runs that all saw no false hit do not make the rate certainly 0.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from .metrics import HEADLINE, OUTAGE_KEYS, mean_ci, metric_bounds, metric_steps
from .parallel import replication_slots, replications_beside
from .progress import RunsProgress
from .scenario import Scenario

if TYPE_CHECKING:
    import pandas as pd

    from .run import SimResult

#: the summary numbers a replicated run gives a 95 % interval (``summary["ci95"]``)
WITH_INTERVAL = frozenset({*HEADLINE, *OUTAGE_KEYS, "requests", "budget_rejections", "budget_overshoot_usd",
                           "slo_value_s"})


def replicate(sc: Scenario, *, n: int, seed: int, **kw: Any) -> SimResult:
    """``n`` runs on seeds ``seed…seed+n-1``: every number in the summary is the mean over runs.

    Counts, dictionaries (errors, model shares) and the SLO verdict are averaged too, so no line
    of the report mixes one run's value with the others' mean; ``slo_met`` is the verdict on the
    mean and ``slo_met_share`` the share of runs that met the objective.
    """
    import pandas as pd

    from .run import SimResult, simulate

    progress = kw.pop("progress", False)
    overall = RunsProgress(progress, n) if progress else None
    try:
        slots = replication_slots(sc, n, seed, kw)
        if slots > 1:
            runs = replications_beside(sc, n, seed, slots, overall, kw)
        else:
            runs = [simulate(sc, seed=seed + k, progress=overall.for_run(k) if overall else False, **kw)
                    for k in range(n)]
    finally:
        if overall:
            overall.close()
    table = pd.DataFrame([{k: v for k, v in r.summary.items() if not isinstance(v, (dict, list))} for r in runs])
    summary = dict(runs[0].summary)
    ci: dict[str, list[float]] = {}
    steps = run_steps([r.turns for r in runs])
    for col in table.columns:
        if col == "seed" or not pd.api.types.is_numeric_dtype(table[col]) or pd.api.types.is_bool_dtype(table[col]):
            continue
        m, lo, hi = mean_ci(table[col].tolist(), metric_bounds(col), steps.get(col, 0.0))
        whole = pd.api.types.is_integer_dtype(table[col]) and float(m).is_integer()
        summary[col] = int(m) if whole else m
        if col in WITH_INTERVAL and not math.isnan(lo):  # none for what fewer than two runs measured (no outage)
            ci[col] = [lo, hi]
    for key in ("errors", "model_share"):
        names = sorted({name for r in runs for name in r.summary.get(key, {})})
        summary[key] = {name: sum(r.summary.get(key, {}).get(name, 0) for r in runs) / n for name in names}
    met = [r.summary.get("slo_met") is True for r in runs]
    summary["slo_met_share"] = sum(met) / n
    value = summary.get("slo_value_s", math.inf)
    summary["slo_met"] = None if value != value else bool(value <= summary.get("slo_s", math.inf))
    # the outage numbers are means over the runs that had a turn during an outage, not over all n
    summary["outage_runs"] = sum(1 for r in runs if r.summary.get("outage_turn_share", 0.0) > 0)
    summary["ci95"] = ci
    summary["replications"] = n
    summary["seed"] = seed
    requests = pd.concat([r.requests.assign(replication=k) for k, r in enumerate(runs)], ignore_index=True)
    turns = pd.concat([r.turns.assign(replication=k) for k, r in enumerate(runs)], ignore_index=True)
    first = runs[0]
    return SimResult(sc, summary, requests, turns, first.baseline_summary, first.baseline_turns, first.outages,
                     table, seed, wall_s=sum(r.wall_s for r in runs))


def run_steps(turn_tables: "list[pd.DataFrame]") -> dict[str, float]:
    """Each number's step over several runs (:func:`~llmlab.sim.metrics.metric_steps`): the root
    mean square of the runs' steps, as their rounding spreads combine in the mean.  (The largest
    step, that of a run with three cache hits, made b2b-saas' false-hit interval cover its true
    rate in every draw of ``benchmarks/interval_coverage.py``: too wide to say anything.)"""
    return combine_steps([metric_steps(turns) for turns in turn_tables])


def combine_steps(runs: "list[dict[str, float]]") -> dict[str, float]:
    """:func:`run_steps` of the runs' own steps: each number's root mean square over the runs that have it."""
    squares: dict[str, list[float]] = {}
    for steps in runs:
        for key, step in steps.items():
            squares.setdefault(key, []).append(step * step)
    return {key: math.sqrt(sum(sq) / len(sq)) for key, sq in squares.items()}
