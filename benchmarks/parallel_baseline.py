#!/usr/bin/env python3
"""How much sooner does ``simulate()`` finish with the baseline run beside the policy run?

    python benchmarks/parallel_baseline.py --json                  # b2b-saas, 100k requests
    python benchmarks/parallel_baseline.py --scenario realtime-chat --requests 50000 --json
    python benchmarks/parallel_baseline.py --requests 50000 --replications 2 --no-baseline --json

With ``--replications N`` each timed call is ``simulate(..., replications=N)``: with
``parallel=True`` the replications run beside each other in child interpreters (each with its
baseline beside it, so two CPUs a replication; ``--no-baseline`` leaves one).

Times :func:`llmlab.sim.simulate` end to end (traffic, the embedder's priming, both runs, the
summary; no per-request table, as ``llmlab simulate`` without ``--out``) with ``parallel=False``
(the baseline after the policy, in this process) and ``parallel=True`` (the baseline in a child
interpreter meanwhile), alternating, ``--rounds`` times each, so that the machine's noise falls
on both alike.  Prints the medians, their ratio, and whether the summaries were identical.  On
one usable CPU the two runs take turns on it and nothing is won.
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import time

from _report import emit


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="b2b-saas")
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--replications", type=int, default=1)
    parser.add_argument("--no-baseline", action="store_true", help="runs without their baseline")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)

    from llmlab.sim import simulate
    from llmlab.sim.sidecar import usable_cpus

    simulate(args.scenario, requests=200, seed=0, parallel=False)  # imports and the embedder: not timed
    times: dict[bool, list[float]] = {False: [], True: []}
    summaries: dict[bool, dict] = {}
    for _ in range(args.rounds):
        for parallel in (False, True):
            t0 = time.perf_counter()
            result = simulate(args.scenario, requests=args.requests, seed=0, parallel=parallel, keep_requests=False,
                              replications=args.replications, baseline=False if args.no_baseline else None)
            times[parallel].append(time.perf_counter() - t0)
            summaries[parallel] = result.summary
    one, beside = statistics.median(times[False]), statistics.median(times[True])
    same = all(a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))
               for a, b in ((summaries[False][k], summaries[True].get(k)) for k in summaries[False]))
    emit({"scenario": args.scenario, "requests": args.requests, "replications": args.replications,
          "baseline": not args.no_baseline, "usable_cpus": usable_cpus(),
          "one_process_s": round(one, 2), "parallel_s": round(beside, 2),
          "speedup": round(one / beside, 2), "identical_summaries": same,
          "python": sys.version.split()[0]}, args.json, width=22)
    return 0


if __name__ == "__main__":
    sys.exit(main())
