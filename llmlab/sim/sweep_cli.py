"""``llmlab sweep``: one simulation per combination of scenario values, one row each.

    llmlab sweep --scenario b2b-saas --grid 'gateway.cache.threshold=[0.85, 0.9, 0.95]' \\
                 --grid 'traffic.rate_per_s=[1, 4]' --requests 5000 --out sweep.csv
    llmlab sweep --scenario realtime-chat --grid 'gateway.retry.max_retries=[0, 1, 2]' --json --plot retries.png
    llmlab sweep --scenario my.toml --grid 'gateway.cache.semantic=[true, false]' --scheduler tcp://10.0.0.5:8786

The command line of :func:`llmlab.sim.sweep`: a platform team's CI job or a cluster runs a
grid without writing Python.  Each ``--grid KEY=[V1, V2, …]`` is a scenario field (as
``--set`` and ``llmlab simulate --fields`` spell it, once whatever the spelling) and a TOML list
of its values (no null: a grid cannot unset a field); the combinations are every product.  Every
combination, ``--out``, ``--plot`` (its format too) and ``--scheduler``'s address are checked
before the first run.  The table printed holds the grid's columns and the headline numbers;
``--out`` writes every column as CSV, ``--json`` prints the rows as one JSON list, ``--plot``
draws the headline numbers against the first grid key (:mod:`llmlab.sim.sweep_plot`).  The rows
are printed before the files are written: a file that cannot be written is an error (exit code
2) after them.  A combination that fails during its run costs no other row: the rows that ran are
printed and written, then one line names the combination that failed (exit code 2).

Exit codes: 0 success, 2 bad input (a one-line message on stderr naming the field), 130 Ctrl-C.
"""
from __future__ import annotations

import argparse
import re
import sys
from typing import Any, Sequence

from ..cli_args import refuse
from .cli import (add_outputs, add_runs, command_parser, keyed_values, output_files, print_then_write, run_command,
                  scenario_with_sets)

PROG = "llmlab sweep"

#: the columns the printed table shows after the grid's, those with a value in some row (``--out``
#: and ``--json`` have them all): no baseline, no savings; no turn during an outage, no outage SLO
SHOWN = ("requests", "cost_usd", "savings_pct", "cache_hit_rate", "false_hit_rate", "p95_latency_s", "ttft_p95_s",
         "availability", "fallback_rate", "budget_rejections", "slo_violation_rate", "outage_slo_value_s")


def _parser() -> argparse.ArgumentParser:
    p = command_parser(PROG, "Simulate every combination of scenario values (a grid), one row each.", __doc__)
    add_runs(p, sets="for every combination", requests="2,000, unless the grid sizes runs",
             seed="random seed of every run (default 0)", replications=1,
             replications_help="runs per combination (seeds seed..seed+N-1): means, and 95 %% intervals "
                               "as ci95.NUMBER.low / .high in --out and --json")
    p.add_argument("--grid", action="append", default=[], metavar="KEY=[V1, V2, ...]", required=True,
                   help="a scenario field (once, whatever its spelling) and a TOML list of its values (no null); "
                        "repeatable (every combination runs)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--processes", type=int, default=2, help="local worker processes (default 2; 1 = this one)")
    where.add_argument("--scheduler", help="a Dask scheduler address (tcp://host:8786) instead of local processes")
    add_outputs(p, "every row and column", "the headline numbers against the first --grid key")
    return p


def parse_grid(items: Sequence[str]) -> dict[str, list[Any]]:
    """``["traffic.rate_per_s=[1, 4]", …]`` → ``{"traffic.rate_per_s": [1, 4], …}``."""
    return keyed_values(items, "--grid", "KEY=[V1, V2, ...] (a dotted key and a TOML list)",
                        "given once (put every value in one list)", _a_list)


def _a_list(key: str, values: Any, item: str) -> None:
    from .scenario import ScenarioError, parse_value

    text = item.split("=", 1)[1].strip()
    if isinstance(values, str) and isinstance(parse_value(_NULL.sub("0", text)), list):
        # TOML has no null: `[null, 0.5]` read as the text it is, and was called "not a list"
        raise ScenarioError(f"--grid {key}", "values without null (a grid cannot unset a field: sweep its values, "
                                            "or unset it for every run with --set KEY=null)", text)
    if not isinstance(values, list) or not values:
        raise ScenarioError(f"--grid {key}", "a non-empty TOML list of values, e.g. [0.85, 0.9]", text)


_NULL = re.compile(r"(?<![\w\"'.-])(?:null|none)(?![\w\"'.-])", re.IGNORECASE)


def table(frame: Any, grid_keys: Sequence[str]) -> str:
    """The grid's columns and the headline numbers, as aligned text."""
    shown = [*grid_keys, *(c for c in SHOWN if c in frame.columns and c not in grid_keys and frame[c].notna().any())]
    return frame[shown].to_string(index=False, float_format=lambda x: f"{x:.4g}")


def main(argv: Sequence[str] | None = None) -> int:
    from .sweep import SweepWorkerDied

    return run_command(PROG, _parser(), argv, _run, refused=(SweepWorkerDied,))


def _run(args: argparse.Namespace) -> int:
    from .sweep import SweepIncomplete, sweep

    grid = parse_grid(args.grid)
    scenario = scenario_with_sets(args)
    out, plot = output_files(args)
    progress = not args.json and sys.stderr.isatty()
    size = {"requests": args.requests} if args.requests is not None else {}  # else sweep()'s 2,000
    failed = None
    try:
        frame = sweep(scenario, grid, **size, hours=args.hours, seed=args.seed, replications=args.replications,
                      processes=args.processes, scheduler=args.scheduler, progress=progress, arg_prefix="--")
    except SweepIncomplete as exc:  # the rows that ran are printed and written, then the failure said
        frame, failed = exc.rows, exc
    keys = list(grid)

    def draw() -> Any:
        from .sweep_plot import plot_sweep

        return plot_sweep(frame, keys, f"{scenario.name}: sweep over {keys[0]}")

    code = print_then_write(PROG, frame, lambda: table(frame, keys), as_json=args.json, out=out, plot=plot,
                            draw=draw, drawn="the sweep")
    return code if failed is None else refuse(PROG, failed)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
