"""Per-outage results of a run: which outage hurt, and how much.

The summary's ``outage_*`` numbers pool every window; a month drawn from the incident process
holds a dozen, and the question after a drill is which of them got through: the hard-down
incident the chain caught, or the slowdown no timeout noticed.  One row per window, in the order
they began, with the service of the turns that arrived while it was in force — and the
baseline's, for the same turns.  A replicated result holds the first run's windows, so the
table is that run's (as the outage figure is).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .metrics import service_of, slo_violations, turn_verdicts

if TYPE_CHECKING:
    import pandas as pd

    from .run import SimResult

#: the columns of :func:`outage_table`, in order
COLUMNS = ("target", "kind", "origin", "start_s", "end_s", "latency_factor", "error_rate", "turns", "availability",
           "service_availability", "slo_value_s", "slo_violation_rate", "baseline_availability",
           "baseline_slo_value_s")


def outage_table(result: "SimResult") -> "pd.DataFrame":
    """One row per outage window of ``result`` (its first run when replicated): ``target``
    (provider group or deployment), ``kind`` (down / errors / slow), ``origin`` (scheduled or
    incident), ``start_s``/``end_s``, ``latency_factor`` and ``error_rate`` (what a slow or an
    erroring window does), ``turns`` (arrived while it was in force), then over those turns
    ``availability``, ``service_availability`` (policy refusals left out), ``slo_value_s`` (the
    SLO's metric at its percentile; infinite when failures dominate) and ``slo_violation_rate``,
    and the baseline's ``baseline_availability`` and ``baseline_slo_value_s`` (NaN without a
    baseline).  Windows that overlap each count the turns of their overlap."""
    import pandas as pd

    from ..report import first_run

    one = first_run(result)
    slo = result.scenario.slo
    ours = _judged(one.turns, slo)
    theirs = _judged(one.baseline_turns, slo) if one.baseline_turns is not None and len(one.baseline_turns) else None
    rows = []
    for w in sorted(result.outages, key=lambda w: (w.start_s, w.end_s, w.target)):
        service = _service(ours, w, slo.percentile)
        base = _service(theirs, w, slo.percentile) if theirs is not None else {}
        rows.append({"target": w.target, "kind": w.kind, "origin": w.origin, "start_s": w.start_s, "end_s": w.end_s,
                     "latency_factor": w.latency_factor if w.kind == "slow" else np.nan,
                     "error_rate": w.error_rate if w.kind == "errors" else np.nan,
                     "turns": int(service["turns"]),
                     "availability": service["outage_availability"],
                     "service_availability": service["outage_service_availability"],
                     "slo_value_s": service["outage_slo_value_s"],
                     "slo_violation_rate": service["outage_slo_violation_rate"],
                     "baseline_availability": base.get("outage_availability", np.nan),
                     "baseline_slo_value_s": base.get("outage_slo_value_s", np.nan)})
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _judged(turns: "pd.DataFrame", slo: Any) -> dict[str, np.ndarray]:
    """A turn table's arrays as the summary judges them, in order of arrival (so that a window's
    turns are one slice, found by bisection: a year of incidents is hundreds of windows)."""
    order = np.argsort(turns["arrival_s"].to_numpy(dtype=float), kind="stable")
    metric = turns["ttft_s" if slo.metric == "ttft" else "latency_s"].to_numpy(dtype=float)[order]
    answered, refused = (mask[order] for mask in turn_verdicts(turns))
    return {"arrival": turns["arrival_s"].to_numpy(dtype=float)[order], "metric": metric, "answered": answered,
            "refused": refused, "violated": slo_violations(metric, answered, refused, slo.latency_s)}


def _service(judged: dict[str, np.ndarray], window: Any, percentile: float) -> dict[str, float]:
    first, end = np.searchsorted(judged["arrival"], [window.start_s, window.end_s], side="left")
    part = {k: v[first:end] for k, v in judged.items()}
    service = service_of(np.ones(end - first, dtype=bool), part["answered"], part["refused"], part["violated"],
                         part["metric"], percentile)
    return {**service, "turns": float(end - first)}
