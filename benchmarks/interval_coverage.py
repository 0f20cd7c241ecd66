#!/usr/bin/env python3
"""Do the replication intervals cover what they say, and does ``compare`` star no more than it says?

    python benchmarks/interval_coverage.py --json                      # b2b-saas, 400 runs of 300
    python benchmarks/interval_coverage.py --scenario realtime-chat --runs 400 --json

Runs ``--runs`` seeds of a small scenario (``--requests`` each, hashed embedder, no baseline),
takes the mean over all of them as each number's true value, then draws ``--draws`` sets of k
runs (k = 2, 3, 5, 10) and counts how often the 95 % interval ``simulate(replications=k)``
would give (:func:`llmlab.sim.metrics.mean_ci`, with each number's step) covers it: ``coverage``,
and ``coverage_no_step`` for the interval with no step (before 2026-12-01).  ``aa_star`` is the
share of A/A comparisons (2k distinct runs, paired at random, as :func:`~llmlab.sim.compare.paired_table`
judges them) that starred the number: it should be at most 0.05; ``aa_any`` the share that
starred at least one number (with a dozen numbers judged alone, far more than 0.05).

Numbers that a rare event moves a lot (an incident in one run in sixteen: p50 latency, cost,
fallback rate) undercover whatever the method: k runs that all missed the incident say nothing
of it.  Those need many more seeds, or the ``outage_*`` numbers.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
from _report import emit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from llmlab.sim import simulate  # noqa: E402
from llmlab.sim.compare import COMPARED, difference_steps, paired_table  # noqa: E402
from llmlab.sim.metrics import mean_ci, metric_bounds, metric_steps  # noqa: E402
from llmlab.sim.replications import WITH_INTERVAL, combine_steps  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="b2b-saas")
    parser.add_argument("--runs", type=int, default=400)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--draws", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    import pandas as pd

    rows, steps = [], []
    for seed in range(args.runs):
        r = simulate(args.scenario, requests=args.requests, seed=seed, baseline=False, keep_requests=False,
                     parallel=False, overrides={"gateway.cache.embedder": "hashed"})
        rows.append({k: v for k, v in r.summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
        steps.append(metric_steps(r.turns))
    pool = pd.DataFrame(rows)
    rng = np.random.default_rng(0)
    out: dict = {"scenario": args.scenario, "runs": args.runs, "requests": args.requests, "draws": args.draws}
    for metric in sorted(WITH_INTERVAL & set(pool.columns)):
        x = pool[metric].to_numpy(dtype=float)
        measured = x[~np.isnan(x)]
        if len(measured) < 20 or not np.isfinite(measured).all():
            continue
        truth = float(measured.mean())
        result: dict = {"truth": truth}
        for k in (2, 3, 5, 10):
            hits = {"coverage": 0, "coverage_no_step": 0}
            drawn = 0
            for _ in range(args.draws):
                idx = rng.choice(len(x), k, replace=False)
                step = combine_steps([steps[i] for i in idx]).get(metric, 0.0)
                for name, s in (("coverage", step), ("coverage_no_step", 0.0)):
                    _, lo, hi = mean_ci(x[idx].tolist(), metric_bounds(metric), s)
                    if math.isnan(lo):
                        break
                    hits[name] += lo <= truth <= hi
                else:
                    drawn += 1
            result[f"k{k}"] = {name: round(h / drawn, 3) if drawn else None for name, h in hits.items()}
        out[metric] = result
    for k in (2, 3, 5):
        stars = dict.fromkeys(COMPARED, 0)
        flat = dict.fromkeys(COMPARED, 0)
        any_star = 0
        for _ in range(args.draws):
            idx = rng.choice(len(pool), 2 * k, replace=False)
            a = pool.iloc[idx[:k]].assign(seed=range(k)).reset_index(drop=True)
            b = pool.iloc[idx[k:]].assign(seed=range(k)).reset_index(drop=True)
            side = [combine_steps([steps[i] for i in part]) for part in (idx[:k], idx[k:])]
            table = paired_table(a, b, difference_steps(*side))
            any_star += bool(table["clear"].any())
            for r in table.itertuples():
                stars[r.metric] += r.clear
            for r in paired_table(a, b).itertuples():
                flat[r.metric] += r.clear
        out[f"aa_k{k}"] = {"aa_any": round(any_star / args.draws, 3),
                           "aa_star": {m: round(v / args.draws, 3) for m, v in stars.items() if v},
                           "aa_star_no_step": {m: round(v / args.draws, 3) for m, v in flat.items() if v}}
    emit(out, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
