#!/usr/bin/env python3
"""How long does marking the turns of outage windows take?  Merged spans vs a pass per window.

    python benchmarks/outage_windows.py --json                       # 10M turns, a year of incidents
    python benchmarks/outage_windows.py --turns 1000000 --windows 40 --json

``llmlab.sim.metrics.during_windows`` marks which turns arrived during an outage (the summary's
``outage_*`` numbers, the turn table's ``during_outage``).  It merges the windows into disjoint
spans and looks each arrival up among them; ``per_window_s`` is the plain way it replaced, a
pass over every turn per window, timed in the same run on the same arrays.  ``identical`` says
the two marked the same turns.  Defaults: the 10M-request limit over a year with 360 windows
(≈ 10 incidents a month for each of three provider groups).
"""
from __future__ import annotations

import argparse
import sys

import numpy as np
from _report import emit, speedup, timed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=10_000_000)
    parser.add_argument("--windows", type=int, default=360)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    from llmlab.sim.metrics import during_windows
    from llmlab.sim.outages import Window

    rng = np.random.default_rng(args.seed)
    year = 366 * 86_400.0
    arrival = np.sort(rng.uniform(0, year, args.turns))
    windows = [Window("openai", start, start + 3600 * rng.uniform(0.2, 5)) for start in rng.uniform(0, year, args.windows)]

    def per_window() -> np.ndarray:
        plain = np.zeros(len(arrival), dtype=bool)
        for w in windows:
            plain |= (arrival >= w.start_s) & (arrival < w.end_s)
        return plain

    merged, merged_s = timed(during_windows, arrival, windows)
    plain, plain_s = timed(per_window)
    emit({"turns": args.turns, "windows": args.windows, "merged_spans_s": round(merged_s, 4),
          "per_window_s": round(plain_s, 4), "speedup": speedup(plain_s, merged_s, 2),
          "share_during_outages": round(float(merged.mean()), 4), "identical": bool((merged == plain).all())},
         args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
