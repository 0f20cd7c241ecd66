"""``llmlab simulate``: a scenario in; a summary, a per-request table and plots out.

    llmlab simulate --scenario b2b-saas --requests 20000 --seed 1
    llmlab simulate --scenario my.toml --set gateway.cache.semantic=false --set traffic.rate_per_s=5
    llmlab simulate --scenario b2b-saas --trace example_trace.csv --speedup 10   # the shipped example
    llmlab simulate --scenario realtime-chat --replications 5 --json
    llmlab simulate --scenario b2b-saas --out results/    # requests.csv, summary.json, *.png
    llmlab simulate --fields                              # every field a scenario file or --set accepts

Exit codes: 0 success, 2 bad input (a one-line message on stderr naming the field), 130 Ctrl-C.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from ..cli_args import OneLineParser as _Parser
from ..cli_args import parse_or_refuse, refuse

PROGRESS_MIN_REQUESTS = 20_000
PROG = "llmlab simulate"


def command_parser(prog: str, description: str, doc: str | None) -> argparse.ArgumentParser:
    """A command's parser: usage errors left to :func:`parse_or_refuse` (one line, exit code 2);
    the ``llmlab …`` lines of its module's docstring ``doc`` as the examples of its help."""
    examples = [line.strip() for line in re.sub(r"\s*\\\n\s*", " ", doc or "").splitlines()
                if line.startswith("    llmlab ")]
    return _Parser(prog=prog, description=description,
                   epilog="examples:\n" + "\n".join(f"  {e}" for e in examples) + "\n\nexit codes: 0 success, "
                          "2 bad input (one line on stderr naming the field), 130 interrupted",
                   formatter_class=argparse.RawDescriptionHelpFormatter)


def scenario_with_sets(args: argparse.Namespace) -> Any:
    """``--scenario`` with every ``--set`` applied, validated."""
    from .scenario import load_scenario, parse_assignment

    return load_scenario(args.scenario, dict(parse_assignment(s) for s in args.sets))


def _parser() -> argparse.ArgumentParser:
    p = command_parser(PROG, "Replay synthetic traffic or a trace through the gateway in virtual time (SimPy) and "
                             "compare it with a baseline.", __doc__)
    p.add_argument("--scenario", required=False, help="preset name or TOML file")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--requests", type=int, help="number of user requests (default: the scenario's)")
    size.add_argument("--hours", type=float, help="simulate every request arriving within H hours")
    p.add_argument("--seed", type=int, default=0,
                   help="random seed (default 0): the same seed gives the same summary; the baseline shares its draws")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a scenario field (dotted TOML key, TOML value; a list item by number: "
                        "traffic.tenants[0].plan); repeatable")
    p.add_argument("--trace", help="replay a CSV/JSONL trace instead of synthetic traffic")
    p.add_argument("--speedup", type=float, help="time compression of the trace (e.g. 10 = ten times faster)")
    p.add_argument("--replications", type=int, default=1, help="runs with seeds seed..seed+N-1: means and 95 %% CIs")
    p.add_argument("--no-baseline", action="store_true", help="skip the baseline run")
    p.add_argument("--one-process", action="store_true",
                   help="run the baseline after the policy in this process (by default a long run has it run "
                        "beside the policy in a second process when two CPUs are usable; the results are the same)")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object on stdout")
    p.add_argument("--out", help="write requests.csv, turns.csv, tenants.csv, outages.csv, summary.json and PNG "
                                 "plots into this folder")
    p.add_argument("--list", action="store_true", help="list the preset scenarios and exit; with --json as JSON")
    p.add_argument("--fields", action="store_true",
                   help="list every scenario field (type, allowed range, default) and exit; with --json as JSON")
    return p


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()  # numpy scalars
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    return value


def _write_outputs(result: Any, out: Path) -> list[Path]:
    """Every file of ``--out``, written into a hidden folder inside ``out`` and moved into ``out``
    once all are written: interrupted (Ctrl-C while a long run's tables are written) or failing,
    ``out`` holds what it held before, not a cut ``requests.csv`` beside the previous run's summary."""
    import shutil
    import tempfile

    from .. import report

    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".llmlab-writing-", dir=out))
    try:
        requests = result.requests.copy()
        if "attempts" in requests.columns:
            requests["attempts"] = requests["attempts"].map(lambda a: json.dumps(_jsonable(a), ensure_ascii=False))
        names = ["requests.csv", "turns.csv", "summary.json", "tenants.csv", "outages.csv"]
        requests.to_csv(staging / names[0], index=False)
        result.turns.to_csv(staging / names[1], index=False)
        result.tenants().to_csv(staging / names[3], index=False)
        result.outage_table().to_csv(staging / names[4], index=False)
        (staging / names[2]).write_text(json.dumps(_jsonable(result.summary), indent=2, ensure_ascii=False) + "\n",
                                        encoding="utf-8")
        names += [path.name for path in report.write_report(result, staging)]
        for name in names:
            _replace(staging / name, out / name)
        return [out / name for name in names]
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_whole(path: Path, write: Callable[[Path], None]) -> None:
    """``write(file)`` into a hidden file beside ``path`` (of the same extension: it names a
    figure's format), then renamed onto ``path``: interrupted or failing, ``path`` is as it was.
    A path that is no regular file (``/dev/stdout``, a pipe) is written as it is."""
    if _in_place(path):
        write(path)
        return
    temporary = _beside(path)
    try:
        write(temporary)
        _replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _replace(written: Path, path: Path) -> None:
    """Rename ``written`` onto ``path`` with the permissions ``path`` had: a new file takes the
    umask's (0644), and a results file its owner had made private (0600) became world-readable."""
    import shutil

    try:
        shutil.copymode(path, written)
    except FileNotFoundError:  # a new file: the umask's permissions, as before
        pass
    os.replace(written, path)


def _in_place(path: Path) -> bool:
    """Written where it is: a device or pipe (`/dev/stdout`), or a link (its target keeps its place)."""
    return path.is_symlink() or (path.exists() and not path.is_file())


def _beside(path: Path) -> Path:
    return path.with_name(f".{path.stem}.llmlab-{os.getpid()}{path.suffix}")


def _output_dir(text: str) -> Path:
    """``--out``, created and checked for writing before the run (not after an hour of simulation)."""
    from .scenario import ScenarioError

    if not text.strip():
        raise ScenarioError("--out", "a folder path", text)
    out = Path(text)
    if out.exists() and not out.is_dir():
        raise ScenarioError("--out", "a folder (this path is a file)", text)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".llmlab-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ScenarioError("--out", f"a folder this user can write ({exc.strerror})", text) from None
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args_in = list(sys.argv[1:] if argv is None else argv)
    if args_in and args_in[0] == "simulate":
        args_in = args_in[1:]
    args = parse_or_refuse(_parser(), PROG, args_in)
    if args is None:
        return 2
    from .scenario import ScenarioError, list_presets, load_scenario, parse_assignment, preset_description

    if args.list:
        presets = {name: preset_description(name) for name in list_presets()}
        if args.json:
            print(json.dumps([{"name": k, "description": v} for k, v in presets.items()], ensure_ascii=False))
        else:
            for name, description in presets.items():
                print(f"{name:16s} {description}")
        return 0
    if args.fields:
        from .fields import format_fields, scenario_fields

        rows = scenario_fields()
        try:
            print(json.dumps([r.as_dict() for r in rows], ensure_ascii=False) if args.json else format_fields(rows))
            sys.stdout.flush()
        except BrokenPipeError:  # `llmlab simulate --fields | head`
            pass
        return 0
    if not args.scenario:
        print("llmlab simulate: error: --scenario: a preset name (" + ", ".join(list_presets()) + ") or a TOML file",
              file=sys.stderr)
        return 2
    from ..errors import ConfigError
    from .run import check_run_args, simulate

    try:
        overrides = dict(parse_assignment(s) for s in args.sets)
        if args.speedup is not None:
            overrides["traffic.speedup"] = args.speedup
        if args.trace is not None:
            from .trace import EXAMPLE_TRACE, shipped_trace

            trace = Path(args.trace) if Path(args.trace).is_file() else shipped_trace(args.trace)
            if trace is None:
                raise ScenarioError("--trace", f"an existing CSV or JSONL file, or a shipped trace ({EXAMPLE_TRACE})",
                                    args.trace)
            overrides["traffic.trace"] = str(trace.resolve())
        scenario = load_scenario(args.scenario, overrides)
        if args.speedup is not None and scenario.traffic.trace is None:
            raise ScenarioError("--speedup", "only with a trace (--trace FILE or traffic.trace)", args.speedup)
        check_run_args(scenario, requests=args.requests, hours=args.hours, seed=args.seed,
                       replications=args.replications, arg_prefix="--")
        out = _output_dir(args.out) if args.out is not None else None
    except (ConfigError, ValueError, OSError) as exc:
        return refuse(PROG, exc)
    size = args.requests or scenario.traffic.requests or 0
    # a trace replays all its rows unless --requests says otherwise (traffic.requests does not
    # apply): its size is unknown here, as with --hours, so a long replay is not silent
    unknown = args.hours is not None or (scenario.traffic.trace is not None and args.requests is None)
    progress = (not args.json and sys.stderr.isatty() and
                (unknown or size * args.replications >= PROGRESS_MIN_REQUESTS))
    try:
        # the per-request table is kept only for --out to write: it holds every ledger record
        # (≈ 5 KB a request: 200k requests took 1.1 GB instead of 0.23 GB, and a third more time)
        result = simulate(scenario, requests=args.requests, hours=args.hours, seed=args.seed, progress=progress,
                          replications=args.replications, baseline=False if args.no_baseline else None,
                          keep_requests=out is not None, parallel=False if args.one_process else None)
    except (ConfigError, OSError) as exc:  # e.g. a trace row that cannot be replayed, an embedder not installed
        return refuse(PROG, exc)
    summary = result.summary
    reader, code = True, 0
    try:  # the summary first: a folder that fails to take the files must not lose the run's numbers
        if args.json:
            print(json.dumps(_jsonable(summary), ensure_ascii=False, allow_nan=False))
        else:
            from ..report import summary_table

            print(summary_table(summary))
        sys.stdout.flush()
    except BrokenPipeError:  # `llmlab simulate ... | head`: the reader left, but --out's files are still wanted
        reader = False
        _discard_stdout()
    except OSError as exc:  # a stdout that cannot take it (`> /dev/full`): said, and --out still written
        print(f"{PROG}: error: stdout: cannot write ({exc})", file=sys.stderr)
        reader, code = False, 2
        _discard_stdout()
    if out is not None:
        try:
            written = _write_outputs(result, out)
        except OSError as exc:
            print(f"llmlab simulate: error: --out: cannot write ({exc})", file=sys.stderr)
            return 2
        if reader or args.json:
            print(f"wrote {len(written)} files to {out}", file=sys.stderr if args.json else sys.stdout)
    return code


def out_file(text: str, option: str = "--out", kind: str = "CSV") -> Path:
    """A file option, checked for writing before the runs (not after hours of them): the file
    as :func:`write_whole` writes it, a new file beside it; the check leaves no file behind (an
    empty one stayed when the runs were refused or interrupted)."""
    from .scenario import ScenarioError

    out = Path(text)
    if not text.strip() or out.is_dir():
        raise ScenarioError(option, f"a {kind} file path (not a folder)", text)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if _in_place(out):
            with open(out, "a", encoding="utf-8"):
                pass
        else:
            _beside(out).touch()
            _beside(out).unlink()
    except OSError as exc:
        raise ScenarioError(option, f"a file this user can write ({exc.strerror})", text) from None
    return out


def plot_file(text: str, option: str = "--plot") -> Path:
    """A figure file option: its extension names a format matplotlib saves (``.png``, ``.pdf``,
    ``.svg``, …), checked with the file's folder before the runs — matplotlib refused ``.txt``
    (or drew a name without an extension into ``NAME.png``) only after all of them."""
    from .scenario import ScenarioError

    if text.strip() and not Path(text).is_dir():
        # the formats savefig draws, whatever the backend (none is chosen by importing this)
        from matplotlib.backend_bases import FigureCanvasBase

        formats = sorted(FigureCanvasBase.get_supported_filetypes())
        suffix = Path(text).suffix[1:].lower()
        if suffix not in formats:
            shown = ", ".join(f".{f}" for f in formats if f not in ("png", "pdf", "svg"))
            raise ScenarioError(option, f"a file name ending in .png, .pdf, .svg or another format matplotlib "
                                        f"saves ({shown})", text)
        if suffix == "pgf":  # matplotlib sets a .pgf figure's text with TeX
            import shutil

            from matplotlib import rcParams

            if shutil.which(rcParams["pgf.texsystem"]) is None:
                raise ScenarioError(option, f"a format this machine can draw: .pgf needs {rcParams['pgf.texsystem']} "
                                            "(matplotlib's pgf.texsystem), not found", text)
    return out_file(text, option, "figure")


def print_then_write(prog: str, table: Any, text: Any, *, as_json: bool, out: Path | None, plot: Path | None,
                     draw: Any, drawn: str) -> int:
    """``table``'s rows printed (:func:`print_rows`: ``text()`` unless ``as_json``), then written
    to ``out`` as CSV and ``draw()``'s figure to ``plot`` (each when given, and said unless
    ``as_json``: ``drawn`` names the figure); the exit code.  Nothing computed is lost to a file
    that will not take it (a full disk): the numbers are on stdout already, and each failure is
    one line on stderr naming its option, exit code 2, after the other file is written (a stdout
    that will not take the rows, ``> /dev/full``, likewise)."""
    code, say = 0, not as_json
    try:
        print_rows(table.to_dict(orient="records"), text, as_json=as_json)
    except OSError as exc:
        print(f"{prog}: error: stdout: cannot write ({exc})", file=sys.stderr)
        _discard_stdout()  # the exit's flush must not fail again
        code, say = 2, False
    for option, path, write, done in (
            ("--out", out, lambda: write_whole(out, lambda path: table.to_csv(path, index=False)),
             f"wrote {len(table)} rows to {out}"),
            ("--plot", plot, lambda: write_whole(plot, lambda path: _save_figure(draw(), path)),
             f"drew {drawn} in {plot}")):
        if path is None:
            continue
        try:
            write()
        except Exception as exc:  # after the runs: one line, never a traceback over the printed results
            why = str(exc) if isinstance(exc, OSError) else f"{type(exc).__name__}: {exc}"
            print(f"{prog}: error: {option}: cannot write ({why})".splitlines()[0], file=sys.stderr)
            code = 2
            continue
        if say:
            _say(done)
    return code


def _save_figure(fig: Any, path: Path) -> None:
    """``fig`` into ``path`` (the format its extension names), then closed: pyplot keeps every figure it made."""
    from ..figure_files import save_figure
    from ..report import pyplot

    try:
        save_figure(fig, path)
    finally:
        pyplot().close(fig)


def add_runs(parser: argparse.ArgumentParser, *, sets: str, requests: str, seed: str, replications: int,
             replications_help: str) -> None:
    """``--scenario``, ``--set`` (applied ``sets``), ``--requests`` or ``--hours`` (the default:
    ``requests``), ``--seed`` and ``--replications`` of a command that runs a scenario many times."""
    parser.add_argument("--scenario", required=True, help="preset name or TOML file")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help=f"override a scenario field {sets}; repeatable")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--requests", type=int, help=f"requests per run (default {requests})")
    size.add_argument("--hours", type=float, help="every request arriving within H hours, per run")
    parser.add_argument("--seed", type=int, default=0, help=seed)
    parser.add_argument("--replications", type=int, default=replications, help=replications_help)


def add_outputs(parser: argparse.ArgumentParser, what: str, plot: str) -> None:
    """``--json``, ``--out`` and ``--plot``: ``what`` is printed or written, ``plot`` drawn."""
    parser.add_argument("--json", action="store_true", help=f"print {what} as one JSON list on stdout")
    parser.add_argument("--out", help=f"write {what} to this CSV file")
    parser.add_argument("--plot", help=f"draw {plot} into this figure file (.png, .pdf, .svg, ...)")


def output_files(args: argparse.Namespace) -> tuple[Path | None, Path | None]:
    """``--out`` and ``--plot`` (:func:`add_outputs`), checked for writing before the runs."""
    return (out_file(args.out) if args.out is not None else None,
            plot_file(args.plot) if args.plot is not None else None)


def keyed_values(items: Sequence[str], option: str, form: str, once: str = "given once",
                 check: Any = None) -> dict[str, Any]:
    """Repeatable ``KEY=VALUE`` options (``--grid``, ``--change``) → ``{key: value}``: each must
    have an ``=`` (else ``form`` says what it should be) and name its field once, in whatever
    spelling (``once`` says how; :func:`~llmlab.sim.sweep.field_key` gives the key's);
    ``check(key, value, item)``, when given, vets a value before that."""
    from .scenario import ScenarioError, parse_assignment
    from .sweep import field_key

    values: dict[str, Any] = {}
    seen: dict[tuple[str, ...], str] = {}
    for item in items:
        if "=" not in item:
            raise ScenarioError(option, form, item)
        key, value = parse_assignment(item)
        if check is not None:
            check(key, value, item)
        name, first = field_key(key, seen)
        if first is not None:
            raise ScenarioError(f"{option} {key}", once if first == key else f"{once}: {first} is the same field",
                                item)
        values[name] = value
    return values


def run_command(prog: str, parser: argparse.ArgumentParser, argv: Sequence[str] | None, run: Any,
                refused: tuple[type[BaseException], ...] = ()) -> int:
    """A command's ``main``: ``argv`` parsed (a usage error is one line, exit code 2), then
    ``run(args)``'s exit code; a :class:`~llmlab.errors.ConfigError`, an ``OSError`` (a file that
    cannot be read) or one of ``refused`` from it is one line on stderr, exit code 2
    (:func:`refuse`).  Whatever ``run`` has computed, it prints before it writes
    (:func:`print_then_write`), so no result is refused away."""
    from ..errors import ConfigError

    args = parse_or_refuse(parser, prog, argv)
    if args is None:
        return 2
    try:
        return run(args)
    except (ConfigError, OSError, *refused) as exc:
        return refuse(prog, exc)


def print_rows(rows: list[dict[str, Any]], text: Any, *, as_json: bool) -> None:
    """Rows as one JSON list (``as_json``; NaN and infinities as null), else ``text()``.  A
    reader that left (``… | head``) ends the output quietly."""
    _say(json.dumps(_jsonable(rows), ensure_ascii=False, allow_nan=False) if as_json else text())


def _say(text: str) -> None:
    """``text`` on stdout; a reader that left (``… | head``) ends the output quietly."""
    try:
        print(text)
        sys.stdout.flush()
    except BrokenPipeError:
        _discard_stdout()


def _discard_stdout() -> None:
    """Point stdout at /dev/null once its reader has gone, so no later write or exit flush fails."""
    import os

    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no file descriptor (a test double): nothing is written again
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
