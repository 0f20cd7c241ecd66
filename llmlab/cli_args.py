"""One-line command-line errors, shared by every ``llmlab`` command.

argparse prints its usage and then the error (three to eight lines on stderr) and exits itself;
llmlab's commands print one line — ``llmlab <command>: error: …`` — and return exit code 2, so
that a script reading stderr sees the reason and nothing else, whichever command it ran.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any, Sequence


class UsageError(Exception):
    """A command line argparse refused: its message, said by :func:`parse_or_refuse`."""


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are raised (:class:`UsageError`), not printed with the usage."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def parse_or_refuse(parser: argparse.ArgumentParser, prog: str, argv: Sequence[str] | None) -> Any:
    """The parsed command line, or None after a one-line ``<prog>: error: …`` on stderr."""
    try:
        return parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    except UsageError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return None


def refuse(prog: str, exc: BaseException | str) -> int:
    """Bad input: its first line on stderr, exit code 2."""
    print(f"{prog}: error: {exc}".splitlines()[0], file=sys.stderr)
    return 2
