"""Parameter sweeps: one simulation per combination of overrides, run in parallel.

    sweep("b2b-saas", {"gateway.cache.threshold": [0.85, 0.9, 0.95],
                       "traffic.rate_per_s": [1.0, 4.0]}, requests=5_000)

returns a DataFrame with one row per combination: the override keys as columns, then the
summary.  Every combination goes through :func:`~llmlab.sim.run.preflight` *before* anything
runs (fields, run size, cache options, languages, plans), so a typo fails in a second rather
than after the first hour of a sweep.  A combination that fails during its run (an embedder that
cannot embed here, a worker killed) costs no other row: the others run, and
:class:`SweepIncomplete` holds their rows; when no combination ran, the error reaches the caller
as itself (llmlab's errors survive pickling).  Runs are independent (each builds its own
gateway, providers and traffic from the seed), so they go to local processes by default, or to a
Dask cluster when given a scheduler address or a ``distributed.Client``
(:mod:`llmlab.sim.sweep_runs`, which also stops them when the caller is interrupted).
"""
from __future__ import annotations

import itertools
import json
import multiprocessing
import re
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from ..errors import LLMLabError
from .progress import progress_bar
from .scenario import Scenario, ScenarioError, load_scenario, split_key

if TYPE_CHECKING:
    import pandas as pd


class SweepWorkerDied(LLMLabError, RuntimeError):
    """A local worker process ended without returning its run.

    Besides memory and kill signals, the usual cause is Python's start method: where workers
    start by ``spawn`` or ``forkserver`` (macOS, and Linux from Python 3.14) each re-imports the
    calling script, so a script that calls :func:`sweep` at import time breaks every worker —
    the same code that ran under ``fork`` (Linux up to 3.13).  The pool said only that a process
    "terminated abruptly"; this says what to do.
    """


class SweepIncomplete(LLMLabError, RuntimeError):
    """Some combinations failed during their runs; the others ran to the end.

    ``rows`` is the frame :func:`sweep` would have returned, holding the combinations that ran
    (in the grid's order); ``failures`` each combination that failed and the exception its run
    raised, the first of which is this error's ``__cause__``.  A sweep used to raise the first
    failure alone, after waiting for every other run, and lose all their rows with it.
    """

    def __init__(self, rows: "pd.DataFrame", failures: list[tuple[dict[str, Any], BaseException]],
                 total: int) -> None:
        self.rows, self.failures, self.total = rows, failures, total
        combo, first = failures[0]
        said = (str(first).splitlines() or [""])[0]
        super().__init__(f"{len(failures)} of {total} combinations failed during their runs, first "
                         f"{named(combo)}: {type(first).__name__}: {said}")

    def __reduce__(self) -> tuple:
        return type(self), (self.rows, self.failures, self.total)


def named(combo: Mapping[str, Any]) -> str:
    """A combination as ``key=value, …`` (the values as Python writes them)."""
    return ", ".join(f"{key}={value!r}" for key, value in combo.items())


def flatten(summary: Mapping[str, Any]) -> dict[str, Any]:
    """Scalars as they are; one level of dicts as ``key.sub``; lists dropped, but for an
    interval's ``[low, high]`` in a dict (``ci95``), as ``key.sub.low`` and ``key.sub.high``: a
    sweep with replications gave each row's means and dropped every interval, so no row said
    whether its difference from the next was more than the seeds' luck."""
    out: dict[str, Any] = {}
    for k, v in summary.items():
        if isinstance(v, Mapping):
            for sub, x in v.items():
                if isinstance(x, (list, tuple)) and len(x) == 2:
                    out[f"{k}.{sub}.low"], out[f"{k}.{sub}.high"] = x
                elif not isinstance(x, (Mapping, list, tuple)):
                    out[f"{k}.{sub}"] = x
        elif not isinstance(v, (list, tuple)):
            out[k] = v
    return out


def _run(task: tuple[Scenario, dict[str, Any], int | None, float | None, int, int]) -> dict[str, Any]:
    from .run import simulate

    scenario, combo, requests, hours, seed, replications = task
    # the sweep's runs fill the CPUs already: no second process per run for its baseline
    result = simulate(scenario.with_overrides(combo), requests=requests, hours=hours, seed=seed,
                      replications=replications, keep_requests=False, parallel=False)
    return flatten(result.summary)


def _run_size(combo: Mapping[str, Any], requests: int | None, hours: float | None) -> tuple[int | None, float | None]:
    """A combination that sets ``traffic.requests`` or ``traffic.hours`` sizes its run itself: the
    sweep's ``requests`` argument (2,000 by default) overrode it, so every row ran the same traffic
    while its first column said otherwise.  The keys are those of :func:`combinations`: one
    spelling per field (``traffic."requests"`` is ``traffic.requests``)."""
    if "traffic.requests" in combo or "traffic.hours" in combo:
        return None, None
    return requests, hours


_BARE = re.compile(r"[A-Za-z0-9_-]+")


def field_key(key: str, seen: dict[tuple[str, ...], str] | None = None) -> tuple[str, str | None]:
    """A dotted key in one spelling, and the key in ``seen`` that names the same field (None: a
    new field, added to ``seen``).

    ``traffic."requests"`` and ``traffic . requests`` are ``traffic.requests``; a list item keeps
    the spelling it was given (``traffic.tenants[0].plan`` or ``traffic.tenants.0.plan``, the same
    field).  Two spellings of one field in a grid used to be two columns, the last value applied
    to both; a quoted ``traffic."requests"`` escaped the check that lets it size the runs.
    """
    parts = tuple(split_key(key))
    text = ".".join(p if _BARE.fullmatch(p) else json.dumps(p, ensure_ascii=False) for p in parts)
    first = None if seen is None else seen.get(parts)
    if seen is not None and first is None:
        seen[parts] = key
    return (key if re.sub(r"\[(\d+)\]", r".\1", key) == text else text), first


def combinations(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination of ``grid``'s values, keyed by :func:`field_key` (a field named twice is refused)."""
    if not isinstance(grid, Mapping) or not grid:
        raise ScenarioError("grid", "a non-empty mapping of dotted keys to lists of values", grid)
    seen: dict[tuple[str, ...], str] = {}
    named: dict[str, Sequence[Any]] = {}
    for key, values in grid.items():
        if not isinstance(key, str):
            raise ScenarioError("grid", "dotted keys as text, e.g. 'gateway.cache.threshold'", key)
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or len(values) == 0:
            raise ScenarioError(f"grid.{key}", "a non-empty list of values", values)
        name, first = field_key(key, seen)
        if first is not None:
            raise ScenarioError(f"grid.{key}", f"the same field as {first}: give it once, every value in one list")
        named[name] = values
    return [dict(zip(named, values)) for values in itertools.product(*named.values())]


def check_scheduler(address: Any, field: str = "scheduler") -> None:
    """A Dask scheduler address as ``distributed`` reads it (``tcp://host:port``, ``host:port``,
    ``tls://…``, ``ws://…``, ``inproc://…``), checked before the first run: ``distributed`` said
    only "missing port number" from deep inside ``Client``, naming no option.  Imports
    ``distributed`` (only when an address is given)."""
    form = "a Dask scheduler address such as tcp://10.0.0.5:8786 or 10.0.0.5:8786"
    try:
        from distributed.comm import registry
        from distributed.comm.addressing import parse_address
    except ImportError:
        raise ScenarioError(field, "needs the 'distributed' package: pip install 'llmlab[dask]'") from None
    try:
        scheme, where = parse_address(address)
        backend = registry.get_backend(scheme)
        try:
            host, port = backend.get_address_host_port(where)
        except NotImplementedError:  # inproc://, ucx://: no host and port to check
            return
    except (ValueError, TypeError) as exc:
        raise ScenarioError(field, f"{form} ({exc})", address) from None
    if not host:
        raise ScenarioError(field, f"{form} (no host before the port)", address)
    if not 0 < port < 65_536:
        raise ScenarioError(field, f"{form} (a port from 1 to 65535)", address)


def sweep(scenario: "Scenario | str", grid: Mapping[str, Sequence[Any]], *, requests: int | None = 2_000,
          hours: float | None = None, seed: int = 0, scheduler: Any = None, processes: int = 2,
          replications: int = 1, progress: bool | Callable[[int, int], None] = False,
          arg_prefix: str = "") -> "pd.DataFrame":
    """Simulate every combination of ``grid`` (dotted override keys → values); one row each.

    ``scenario`` is a preset name, a TOML path or a :class:`~llmlab.sim.scenario.Scenario`.  Every
    combination runs :func:`~llmlab.sim.run.simulate` with the same ``requests`` (or ``hours``,
    which wins when given), ``seed`` and ``replications``, without the per-request table; a grid
    that sweeps ``traffic.requests`` or ``traffic.hours`` sizes each run itself instead.
    ``scheduler``: None runs on ``processes`` local processes (1 = in this process); a string
    is a Dask scheduler address; a ``distributed.Client`` is used as it is.  ``progress=True``
    shows a bar of the combinations done (a sweep can run for hours); a callable gets
    ``(done, total)`` as each one finishes, in whatever order they finish.  A grid key is a field
    in one spelling (:func:`field_key`): a field given in two is refused.  Errors about
    ``processes`` and ``scheduler`` name them with ``arg_prefix`` in front (the command line
    passes ``"--"``); a scheduler address is checked before anything runs.
    """
    import pandas as pd

    from .run import preflight

    if isinstance(processes, bool) or not isinstance(processes, int) or processes < 1:
        raise ScenarioError(f"{arg_prefix}processes", "a whole number >= 1 (1 = in this process)", processes)
    if isinstance(scheduler, str):
        check_scheduler(scheduler, f"{arg_prefix}scheduler")
    elif scheduler is not None and not hasattr(scheduler, "map") \
            and not hasattr(scheduler, "scheduler_address"):  # a Client, or a cluster object a Client accepts
        raise ScenarioError(f"{arg_prefix}scheduler",
                            "None, a Dask scheduler address or a distributed.Client / LocalCluster", scheduler)
    base = load_scenario(scenario)
    combos = combinations(grid)
    if hours is not None:
        requests = None
    sizes = [_run_size(combo, requests, hours) for combo in combos]
    for combo, (n, h) in zip(combos, sizes):  # validate everything before any compute
        preflight(base.with_overrides(combo), requests=n, hours=h, seed=seed, replications=replications)
    tasks = [(base, combo, n, h, seed, replications) for combo, (n, h) in zip(combos, sizes)]
    bar = progress_bar(len(tasks), progress, "sweep", unit="run")
    try:
        outcomes = _results(tasks, scheduler, processes, bar, f"{arg_prefix}scheduler")
    finally:
        if bar is not None:
            bar.close()
    from .sweep_runs import Failed

    rows, failures = [], []
    for combo, outcome in zip(combos, outcomes):
        if isinstance(outcome, Failed):
            failures.append((combo, _said(outcome.error)))
        else:
            rows.append({**combo, **{k: v for k, v in outcome.items() if k not in combo}})
    frame = pd.DataFrame(rows)
    # a summary lists only the error codes and models a run saw: absent from a run means none there
    counted = [c for c in frame.columns if c.startswith(("errors.", "model_share."))]
    frame[counted] = frame[counted].fillna(0)
    if failures and not rows:
        raise failures[0][1]
    if failures:
        raise SweepIncomplete(frame, failures, len(combos)) from failures[0][1]
    return frame


def _results(tasks: list, scheduler: Any, processes: int, bar: Any, field: str = "scheduler") -> list[Any]:
    """Every task's summary (or :class:`~llmlab.sim.sweep_runs.Failed`), in the tasks' order;
    ``bar.update_to(done)`` as each one finishes."""
    from . import sweep_runs

    if scheduler is not None:
        return _on_dask(scheduler, tasks, bar, field)
    if processes <= 1 or len(tasks) == 1:
        return sweep_runs.on_this_process(_run, tasks, bar)
    return sweep_runs.on_processes(_run, tasks, processes, bar)


def _said(error: BaseException) -> BaseException:
    """A run's exception as the caller should read it: a pool whose worker died says why it may have."""
    if not isinstance(error, BrokenProcessPool):
        return error
    method = multiprocessing.get_start_method()
    died = SweepWorkerDied(
        "a sweep worker process died before returning its run (out of memory or killed?)"
        + ("" if method == "fork" else
           f"; this Python starts workers with {method!r}, which re-imports the calling script:"
           " in a script, call sweep() under `if __name__ == \"__main__\":`")
        + "; processes=1 runs the sweep in this process")
    died.__cause__ = error
    return died


def _on_dask(scheduler: Any, tasks: list, bar: Any, field: str = "scheduler") -> list[Any]:
    try:
        from distributed import Client
    except ImportError:
        raise ScenarioError(field, "needs the 'distributed' package: pip install 'llmlab[dask]'") from None
    from .sweep_runs import on_dask

    own = not isinstance(scheduler, Client)
    try:
        client = Client(scheduler) if own else scheduler
    except (OSError, ValueError) as exc:  # unreachable (after distributed's connect timeout), refused, malformed
        where = scheduler if isinstance(scheduler, str) else type(scheduler).__name__
        raise ScenarioError(field, f"a Dask scheduler that answers (cannot connect: {exc})", where) from None
    try:
        return on_dask(_run, tasks, client, bar)
    finally:
        if own:
            client.close()
