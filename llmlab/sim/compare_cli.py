"""``llmlab compare``: a scenario against the same scenario with a change, seed by seed.

    llmlab compare --scenario realtime-chat --change providers.gpt-4o-mini.timeout_s=3.0 --plot timeout.png
    llmlab compare --scenario b2b-saas --change gateway.cache.threshold=0.85 --replications 10 --requests 5000
    llmlab compare --scenario my.toml --set traffic.rate_per_s=4 --change gateway.cache.semantic=false --json

The command line of :func:`llmlab.sim.compare.compare`.  ``--change KEY=VALUE`` (repeatable)
makes B; ``--set`` applies to both sides.  Both configurations are checked before either runs,
and a change that leaves the scenario as it is (B would be A) is refused.  It prints, per
headline number, A's and B's means over the seeds, the mean difference B − A and its 95 %
interval (paired by seed: common random numbers), starred when the interval leaves out 0.
``--one-process`` keeps every run in this process (as ``llmlab simulate``'s).  ``--json`` prints
the table as one JSON list; ``--out`` writes it as CSV; ``--plot`` draws each
difference relative to A with its interval (:mod:`llmlab.sim.compare_plot`; ``--plot``'s format,
named by its extension, is checked before the runs).  The table is printed before the files are
written: a file that cannot be written is an error (exit code 2) after it.

Exit codes: 0 success, 2 bad input (a one-line message on stderr naming the field), 130 Ctrl-C.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any, Sequence

from .cli import (add_outputs, add_runs, command_parser, keyed_values, output_files, print_then_write, run_command,
                  scenario_with_sets)

PROG = "llmlab compare"


def _parser() -> argparse.ArgumentParser:
    p = command_parser(PROG, "Simulate a scenario (A) and the same scenario with a change (B) on the same seeds; "
                             "print the paired differences with 95 % intervals.", __doc__)
    add_runs(p, sets="on both sides", requests="the scenario's", seed="the first seed (default 0)", replications=5,
             replications_help="paired runs, seeds seed..seed+N-1 (default 5, >= 2)")
    p.add_argument("--change", dest="changes", action="append", default=[], metavar="KEY=VALUE", required=True,
                   help="a scenario field and its value in B (as --set spells it); repeatable")
    p.add_argument("--one-process", action="store_true",
                   help="run every replication in this process (by default long runs go to child processes as "
                        "the CPUs allow; the numbers are the same)")
    add_outputs(p, "the table", "each difference, relative to A, with its interval")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(PROG, _parser(), argv, _run)


def _run(args: argparse.Namespace) -> int:
    from .compare import compare

    changes = parse_changes(args.changes)
    a = scenario_with_sets(args)
    unchanged(a, changes)
    out, plot = output_files(args)
    result = compare(a, changes, requests=args.requests, hours=args.hours, seed=args.seed,
                     replications=args.replications, progress=not args.json and sys.stderr.isatty(),
                     parallel=False if args.one_process else None)

    def draw() -> Any:
        from .compare_plot import plot_comparison

        return plot_comparison(result)

    return print_then_write(PROG, result.table, lambda: str(result), as_json=args.json, out=out, plot=plot, draw=draw,
                            drawn="the comparison")


def unchanged(a: Any, changes: dict[str, Any]) -> None:
    """Refuse ``changes`` that leave scenario ``a`` as it is (a value A has already, by ``--set``
    or its own): both sides would run the same and the table say 0 throughout.  The scenarios
    are compared as loaded (every field's value; the name and description change no run), not
    as the options spell them."""
    from .scenario import ScenarioError

    b = a.with_overrides(changes)
    if a.model_dump(exclude={"name", "description"}) == b.model_dump(exclude={"name", "description"}):
        raise ScenarioError("--change", "a value that differs from the scenario's: this change leaves the scenario "
                                        "as it is (B would be A)", " ".join(f"{k}={v!r}" for k, v in changes.items()))


def parse_changes(items: Sequence[str]) -> dict[str, Any]:
    """``["gateway.cache.threshold=0.85", …]`` → ``{"gateway.cache.threshold": 0.85, …}``."""
    return keyed_values(items, "--change", "KEY=VALUE (a dotted key, a TOML value)")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
