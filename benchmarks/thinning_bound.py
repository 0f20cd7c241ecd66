#!/usr/bin/env python3
"""How long does the traffic's thinning bound take with many flash crowds?  By multiplier vs per burst.

    python benchmarks/thinning_bound.py --json                 # a day's run, week-long crowds, 1,440 a day
    python benchmarks/thinning_bound.py --days 30 --duration-s 600 --json

Synthetic traffic is drawn by thinning a bounding Poisson process; its bound is the largest
product of the burst multipliers in force at one instant (``llmlab.sim.traffic._peak_multiplier``),
computed before the run.  It counts the bursts in force by multiplier; ``per_burst_s`` is the
plain way it replaced, a product over every burst in force at each start, timed in the same run on
the same bursts.  ``identical`` says the two bounds agree (to 1e-12).  The defaults are the
allowed 1,440 crowds a day lasting a week, thousands in force at once: the per-burst way took
seconds before a run of 200 requests (minutes with longer crowds).
"""
from __future__ import annotations

import argparse
import math
import sys

import numpy as np
from _report import emit, speedup, timed


def _per_burst(bursts: list[tuple[float, float, float]]) -> float:
    edges = sorted([(lo, 1, k) for k, (lo, _, _) in enumerate(bursts)] + [(hi, 0, k) for k, (_, hi, _) in enumerate(bursts)])
    active: set[int] = set()
    peak = 1.0
    for _, starts, k in edges:
        if starts:
            active.add(k)
            peak = max(peak, math.prod(bursts[j][2] for j in active))
        else:
            active.discard(k)
    return peak


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=float, default=1.0, help="the run's span")
    parser.add_argument("--per-day", type=float, default=1_440.0, help="flash crowds a day")
    parser.add_argument("--duration-s", type=float, default=7 * 86_400.0,
                        help="each crowd's length (crowds begun up to one length before the run count)")
    parser.add_argument("--multiplier", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    from llmlab.sim.traffic import _peak_multiplier

    rng = np.random.default_rng(args.seed)
    horizon = args.days * 86_400.0
    # as the traffic draws them: the process runs all along, so crowds begun a length before count
    count = int(rng.poisson(args.per_day * (horizon + args.duration_s) / 86_400.0))
    starts = np.sort(rng.uniform(-args.duration_s, horizon, count))
    bursts = [(float(s), float(s) + args.duration_s, args.multiplier) for s in starts]

    by_multiplier, fast_s = timed(_peak_multiplier, bursts)
    plain, plain_s = timed(_per_burst, bursts)
    emit({"bursts": len(bursts), "peak_multiplier": by_multiplier, "by_multiplier_s": round(fast_s, 4),
          "per_burst_s": round(plain_s, 4), "speedup": speedup(plain_s, fast_s),
          "identical": math.isclose(by_multiplier, plain, rel_tol=1e-12)}, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
