"""``llmlab compare``: a scenario against the same scenario with a change, seed by seed.

    llmlab compare --scenario realtime-chat --change providers.gpt-4o-mini.timeout_s=3.0 --plot timeout.png
    llmlab compare --scenario b2b-saas --change gateway.cache.threshold=0.85 --replications 10 --requests 5000
    llmlab compare --scenario my.toml --set traffic.rate_per_s=4 --change gateway.cache.semantic=false --json

The command line of :func:`llmlab.sim.compare.compare`.  ``--change KEY=VALUE`` (repeatable)
makes B; ``--set`` applies to both sides.  Both configurations are checked before either runs.
It prints, per headline number, A's and B's means over the seeds, the mean difference B − A and
its 95 % interval (paired by seed: common random numbers), starred when the interval leaves out
0.  ``--json`` prints the table as one JSON list; ``--out`` writes it as CSV; ``--plot`` draws
each difference relative to A with its interval (:mod:`llmlab.sim.compare_plot`).

Exit codes: 0 success, 2 bad input (a one-line message on stderr naming the field), 130 Ctrl-C.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any, Sequence

from .cli import _Parser, keyed_values, out_file, parse_or_refuse, print_rows, refuse

PROG = "llmlab compare"


def _parser() -> argparse.ArgumentParser:
    examples = [line.strip() for line in (__doc__ or "").splitlines() if line.startswith("    llmlab ")]
    p = _Parser(prog=PROG,
                description="Simulate a scenario (A) and the same scenario with a change (B) on the same seeds; "
                            "print the paired differences with 95 % intervals.",
                epilog="examples:\n" + "\n".join(f"  {e}" for e in examples) + "\n\nexit codes: 0 success, "
                       "2 bad input (one line on stderr naming the field), 130 interrupted",
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenario", required=True, help="preset name or TOML file")
    p.add_argument("--change", dest="changes", action="append", default=[], metavar="KEY=VALUE", required=True,
                   help="a scenario field and its value in B (as --set spells it); repeatable")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a scenario field on both sides; repeatable")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--requests", type=int, help="requests per run (default: the scenario's)")
    size.add_argument("--hours", type=float, help="every request arriving within H hours, per run")
    p.add_argument("--seed", type=int, default=0, help="the first seed (default 0)")
    p.add_argument("--replications", type=int, default=5, help="paired runs, seeds seed..seed+N-1 (default 5, >= 2)")
    p.add_argument("--json", action="store_true", help="print the table as one JSON list on stdout")
    p.add_argument("--out", help="write the table to this CSV file")
    p.add_argument("--plot", help="draw each difference, relative to A, with its interval into this PNG file")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_or_refuse(_parser(), PROG, argv)
    if args is None:
        return 2
    from ..errors import ConfigError
    from .compare import compare
    from .scenario import parse_assignment

    try:
        changes = parse_changes(args.changes)
        overrides = dict(parse_assignment(s) for s in args.sets)
        out = out_file(args.out) if args.out is not None else None
        plot = out_file(args.plot, "--plot", "PNG") if args.plot is not None else None
        result = compare(args.scenario, changes, requests=args.requests, hours=args.hours, seed=args.seed,
                         replications=args.replications, overrides=overrides,
                         progress=not args.json and sys.stderr.isatty())
    except (ConfigError, OSError) as exc:
        return refuse(PROG, exc)
    if out is not None:  # the numbers are kept before anything is printed
        result.table.to_csv(out, index=False)
    if plot is not None:
        from .compare_plot import plot_comparison

        plot_comparison(result).savefig(plot, dpi=110)
    after = ([f"wrote {len(result.table)} rows to {out}"] if out is not None else []) + \
        ([f"drew the comparison in {plot}"] if plot is not None else [])
    print_rows(result.table.to_dict(orient="records"), lambda: str(result), as_json=args.json, after=after)
    return 0


def parse_changes(items: Sequence[str]) -> dict[str, Any]:
    """``["gateway.cache.threshold=0.85", …]`` → ``{"gateway.cache.threshold": 0.85, …}``."""
    return keyed_values(items, "--change", "KEY=VALUE (a dotted key, a TOML value)")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
