"""``llmlab`` command line: each subcommand lives in the module that owns it, imported on use."""
from __future__ import annotations

import importlib
import sys
from typing import Callable, Sequence

#: subcommand → (module, function, one-line help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "simulate": ("llmlab.sim.cli", "main", "replay synthetic traffic or a trace through the gateway in SimPy"),
    "sweep": ("llmlab.sim.sweep_cli", "main", "simulate every combination of scenario values, one row each"),
    "compare": ("llmlab.sim.compare_cli", "main", "a scenario against the same with a change: paired differences"),
    "demo": ("llmlab.demo", "main", "walk a dozen requests through cache, router and fallback (offline)"),
    "cache-eval": ("llmlab.cache.calibration", "cli_main", "calibrate the semantic cache on labelled pairs"),
    "fake-provider": ("llmlab.testing.fake_provider", "cli_main", "run a fault-injecting OpenAI-compatible server"),
    "checklist": ("llmlab.checklist", "cli_main", "evaluate the production checklist against a configuration"),
}


def _usage() -> str:
    lines = ["usage: llmlab <command> [options]", "", "commands:"]
    lines += [f"  {name:<14} {help_}" for name, (_, _, help_) in COMMANDS.items()]
    lines += ["", "options:", "  -h, --help     this list", "  -V, --version  the installed llmlab's version",
              "", "Run 'llmlab <command> --help' for a command's options."]
    return "\n".join(lines)


class Terminated(BaseException):
    """SIGTERM to a running command (a cancelled CI job, ``timeout``, ``kill``), raised in its main
    thread so that every ``finally`` runs: a sweep's worker processes and a run's child
    interpreters are ended with it.  Python's default for SIGTERM ends the process at once, and
    they went on computing for nobody.  A BaseException, as KeyboardInterrupt is: no handler of
    a run's errors takes it for one."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


def _catch_sigterm() -> object:
    """Raise :class:`Terminated` on SIGTERM while a command runs, unless someone else handles
    SIGTERM already (or this is not the main thread); the previous handler, to put back."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return None
    return signal.signal(signal.SIGTERM, _terminate)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if args[0] in ("-V", "--version"):
        from . import __version__

        print(__version__)
        return 0
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"llmlab: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module, func, _ = COMMANDS[name]
    try:
        entry: Callable[[list[str]], int] = getattr(importlib.import_module(module), func)
    except (ImportError, AttributeError) as exc:
        print(f"llmlab {name}: not available in this installation ({exc})", file=sys.stderr)
        return 2
    previous = _catch_sigterm()
    try:
        return int(entry(rest) or 0)
    except KeyboardInterrupt:  # Ctrl-C during a long simulation: a line, not SimPy's traceback
        print(f"\nllmlab {name}: interrupted", file=sys.stderr)
        return 130  # the shell's code for a SIGINT
    except Terminated:
        print(f"\nllmlab {name}: terminated", file=sys.stderr)
        return 143  # the shell's code for a SIGTERM
    except BrokenPipeError:  # output piped into `head` and closed early: not an error
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    finally:
        if previous is not None:
            import signal

            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
