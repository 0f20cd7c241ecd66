"""``llmlab sweep``: one simulation per combination of scenario values, one row each.

    llmlab sweep --scenario b2b-saas --grid 'gateway.cache.threshold=[0.85, 0.9, 0.95]' \\
                 --grid 'traffic.rate_per_s=[1, 4]' --requests 5000 --out sweep.csv
    llmlab sweep --scenario realtime-chat --grid 'gateway.retry.max_retries=[0, 1, 2]' --json --plot retries.png
    llmlab sweep --scenario my.toml --grid 'gateway.cache.semantic=[true, false]' --scheduler tcp://10.0.0.5:8786

The command line of :func:`llmlab.sim.sweep`: a platform team's CI job or a cluster runs a
grid without writing Python.  Each ``--grid KEY=[V1, V2, …]`` is a scenario field (as
``--set`` and ``llmlab simulate --fields`` spell it) and a TOML list of its values; the
combinations are every product.  Every combination is checked before the first run.  The
table printed holds the grid's columns and the headline numbers; ``--out`` writes every column
as CSV, ``--json`` prints the rows as one JSON list, ``--plot`` draws the headline numbers
against the first grid key (:mod:`llmlab.sim.sweep_plot`).

Exit codes: 0 success, 2 bad input (a one-line message on stderr naming the field), 130 Ctrl-C.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any, Sequence

from .cli import _Parser, keyed_values, out_file, parse_or_refuse, print_rows, refuse

PROG = "llmlab sweep"

#: the columns the printed table shows after the grid's, those with a value in some row (``--out``
#: and ``--json`` have them all): no baseline, no savings; no turn during an outage, no outage SLO
SHOWN = ("requests", "cost_usd", "savings_pct", "cache_hit_rate", "false_hit_rate", "p95_latency_s", "ttft_p95_s",
         "availability", "fallback_rate", "budget_rejections", "slo_violation_rate", "outage_slo_value_s")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="llmlab sweep",
                description="Simulate every combination of scenario values (a grid), one row each.",
                epilog="example:\n  llmlab sweep --scenario b2b-saas --grid 'gateway.cache.threshold=[0.85, 0.9, 0.95]' "
                       "--grid 'traffic.rate_per_s=[1, 4]' --requests 5000 --out sweep.csv\n\n"
                       "exit codes: 0 success, 2 bad input (one line on stderr naming the field), 130 interrupted",
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenario", required=True, help="preset name or TOML file")
    p.add_argument("--grid", action="append", default=[], metavar="KEY=[V1, V2, ...]", required=True,
                   help="a scenario field and a TOML list of its values; repeatable (every combination runs)")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--requests", type=int, help="requests per run (default 2,000, unless the grid sizes runs)")
    size.add_argument("--hours", type=float, help="every request arriving within H hours, per run")
    p.add_argument("--seed", type=int, default=0, help="random seed of every run (default 0)")
    p.add_argument("--replications", type=int, default=1, help="runs per combination (seeds seed..seed+N-1): means")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a scenario field for every combination; repeatable")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--processes", type=int, default=2, help="local worker processes (default 2; 1 = this one)")
    where.add_argument("--scheduler", help="a Dask scheduler address (tcp://host:8786) instead of local processes")
    p.add_argument("--json", action="store_true", help="print the rows as one JSON list on stdout")
    p.add_argument("--out", help="write every row and column to this CSV file")
    p.add_argument("--plot", help="draw the headline numbers against the first --grid key into this PNG file")
    return p


def parse_grid(items: Sequence[str]) -> dict[str, list[Any]]:
    """``["traffic.rate_per_s=[1, 4]", …]`` → ``{"traffic.rate_per_s": [1, 4], …}``."""
    return keyed_values(items, "--grid", "KEY=[V1, V2, ...] (a dotted key and a TOML list)",
                        "given once (put every value in one list)", _a_list)


def _a_list(key: str, values: Any, item: str) -> None:
    from .scenario import ScenarioError

    if not isinstance(values, list) or not values:
        raise ScenarioError(f"--grid {key}", "a non-empty TOML list of values, e.g. [0.85, 0.9]",
                            item.split("=", 1)[1].strip())


def table(frame: Any, grid_keys: Sequence[str]) -> str:
    """The grid's columns and the headline numbers, as aligned text."""
    shown = [*grid_keys, *(c for c in SHOWN if c in frame.columns and c not in grid_keys and frame[c].notna().any())]
    return frame[shown].to_string(index=False, float_format=lambda x: f"{x:.4g}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_or_refuse(_parser(), PROG, argv)
    if args is None:
        return 2
    from ..errors import ConfigError
    from .scenario import load_scenario, parse_assignment
    from .sweep import SweepWorkerDied, sweep

    try:
        grid = parse_grid(args.grid)
        scenario = load_scenario(args.scenario, dict(parse_assignment(s) for s in args.sets))
        out = out_file(args.out) if args.out is not None else None
        plot = out_file(args.plot, "--plot", "PNG") if args.plot is not None else None
        progress = not args.json and sys.stderr.isatty()
        size = {"requests": args.requests} if args.requests is not None else {}  # else sweep()'s 2,000
        frame = sweep(scenario, grid, **size, hours=args.hours, seed=args.seed, replications=args.replications,
                      processes=args.processes, scheduler=args.scheduler, progress=progress)
    except (ConfigError, OSError, SweepWorkerDied) as exc:
        return refuse(PROG, exc)
    if out is not None:  # the numbers are kept before anything is printed
        frame.to_csv(out, index=False)
    if plot is not None:
        from .sweep_plot import plot_sweep

        plot_sweep(frame, list(grid), f"{scenario.name}: sweep over {next(iter(grid))}").savefig(plot, dpi=110)
    after = ([f"wrote {len(frame)} rows to {out}"] if out is not None else []) + \
        ([f"drew the sweep in {plot}"] if plot is not None else [])
    print_rows(frame.to_dict(orient="records"), lambda: table(frame, list(grid)), as_json=args.json, after=after)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
