"""Runs that go on beside each other in child interpreters (:mod:`llmlab.sim.sidecar`).

A simulation is independent runs over the same traffic — the policy and the baseline, and
each replication's pair — and CPython runs one at a time per process.  Here the baseline runs
in a child while the policy runs in the caller, and long replications run in children as the
CPUs allow.  Each child gets the very traffic, outage windows and arguments (pickled), so the
results are those one process would have made; a child that fails is named in a warning and
its work is done in the caller after all.
"""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Callable, Mapping

from .metrics import Recorder
from .outages import Window
from .progress import RunsProgress, progress_bar
from .scenario import Scenario
from .traffic import Traffic

if TYPE_CHECKING:
    from .driver import EmbedModel
    from .run import SimResult

log = logging.getLogger("llmlab.sim")


#: turns from which :func:`~llmlab.sim.run.simulate` runs the baseline in a second process by default: below it
#: the child's start (≈ 0.5 s: an interpreter, llmlab's imports) outweighs the baseline's run
PARALLEL_MIN_TURNS = 20_000


def baseline_beside(parallel: bool | None, turns: int) -> bool:
    """Run the baseline in a second process?  As asked, else for long runs with two CPUs to use."""
    if parallel is not None:
        return parallel
    from .sidecar import usable_cpus

    return turns >= PARALLEL_MIN_TURNS and usable_cpus() >= 2


def baseline_run(sc: Scenario, traffic: Traffic, seed: int, windows: list[Window], *,
                 progress: Callable[[int], None] | None = None) -> tuple[Recorder, dict[str, Any]]:
    """The baseline over ``traffic`` (no per-request table): what :func:`~llmlab.sim.run.simulate` runs in this
    process or, as ``llmlab.sim.parallel:baseline_run``, in the child of :mod:`llmlab.sim.sidecar`."""
    from .run import run_once

    return run_once(sc, traffic, seed=seed, baseline=True, windows=windows, keep_requests=False, progress=progress)


def policy_and_baseline(sc: Scenario, traffic: Traffic, seed: int, windows: list[Window], embed: EmbedModel,
                        keep_requests: bool, progress: Any) -> tuple[Recorder, dict[str, Any], tuple]:
    """The policy run here while the baseline runs in a child interpreter, one progress over both.

    The child gets the very traffic and outage windows (pickled), so its run is the one this
    process would have made; a child that fails (it could not start, was killed) is reported
    in a warning and the baseline runs here after all."""
    from .run import run_once
    from .sidecar import SideCall, SideCallFailed

    n = len(traffic)
    side = SideCall("llmlab.sim.parallel:baseline_run", (sc, traffic, seed, windows))
    bar = progress_bar(2 * n, progress, "policy + baseline")
    # the baseline's progress once the policy is done, wherever the baseline runs
    after_policy = (lambda done: bar.update_to(n + done)) if bar else None
    try:
        rec, summary = run_once(sc, traffic, seed=seed, windows=windows, keep_requests=keep_requests,
                                progress=(lambda done: bar.update_to(done + side.done)) if bar else None,
                                embed_model=embed)
        try:
            base = side.result(after_policy)
        except SideCallFailed as exc:
            log.warning("llmlab: the baseline run in a second process failed; running it in this one: %s", exc)
            base = baseline_run(sc, traffic, seed, windows, progress=after_policy)
        if bar:
            bar.update_to(2 * n)
    finally:
        side.close()  # the caller interrupted the policy run: the child must not outlive it
        if bar:
            bar.close()
    return rec, summary, base


def replication_slots(sc: Scenario, n: int, seed: int, kw: Mapping[str, Any]) -> int:
    """How many replications to run at once, each in a child interpreter (1: one after the
    other in this process).  None for ``parallel`` asks for it when each run holds
    :data:`PARALLEL_MIN_TURNS` turns (a child's start, ≈ 1 s with the embedder's, costs more
    than a shorter run) and the CPUs allow two at once; a replication that runs its own baseline
    beside it (:func:`baseline_beside`) counts for two CPUs.  True runs two at least."""
    parallel = kw.get("parallel")
    if parallel is False or n < 2:
        return 1
    from .sidecar import usable_cpus

    cpus = usable_cpus()
    if parallel is None and cpus < 2:
        return 1
    turns = _turns(sc, seed, kw)
    if parallel is None and turns < PARALLEL_MIN_TURNS:
        return 1
    baseline = sc.baseline.enabled if kw.get("baseline") is None else kw["baseline"]
    each = 2 if baseline and baseline_beside(parallel, turns) else 1
    return min(n, cpus // each) if parallel is None else min(n, max(2, cpus // each))


def _turns(sc: Scenario, seed: int, kw: Mapping[str, Any]) -> int:
    """How many turns each replication will have.  Synthetic traffic of a given size has exactly
    that many; otherwise (a time window, a trace) the first seed's traffic is drawn or read to
    count them — a large trace file is then parsed once more by each replication."""
    requests, trace = kw.get("requests"), kw.get("trace") or sc.traffic.trace
    if requests is not None and trace is None:
        return int(requests)
    from .run import make_traffic

    return len(make_traffic(sc, requests=requests, hours=kw.get("hours"), seed=seed, trace=kw.get("trace")))


def replication_run(sc: Scenario, seed: int, kw: Mapping[str, Any], *,
                    progress: Callable[[tuple[int, int]], None]) -> SimResult:
    """One replication, as ``llmlab.sim.parallel:replication_run`` in a child of :mod:`llmlab.sim.sidecar`:
    :func:`~llmlab.sim.run.simulate` with its ``(done, total)`` progress sent to the parent."""
    from .run import simulate

    return simulate(sc, seed=seed, progress=lambda done, total: progress((done, total)), **kw)


def replications_beside(sc: Scenario, n: int, seed: int, slots: int, overall: "RunsProgress | None",
                        kw: Mapping[str, Any]) -> list[SimResult]:
    """``n`` replications, ``slots`` at a time, each in a child interpreter; a child that fails is
    named in a warning and its replication runs in this process."""
    from .run import simulate
    from .sidecar import SideCall, SideCallFailed

    runs: list[SimResult | None] = [None] * n
    waiting = list(range(n))
    running: dict[int, SideCall] = {}
    try:
        while waiting or running:
            while waiting and len(running) < slots:
                k = waiting.pop(0)
                running[k] = SideCall("llmlab.sim.parallel:replication_run", (sc, seed + k, kw))
            for k, call in list(running.items()):
                if overall and call.done:
                    overall.for_run(k)(*call.done)
                if not call.ready:
                    continue
                del running[k]
                try:
                    runs[k] = call.result()
                except SideCallFailed as exc:
                    log.warning("llmlab: replication %d in a second process failed; running it in this one: %s",
                                k + 1, exc)
                    runs[k] = simulate(sc, seed=seed + k, progress=overall.for_run(k) if overall else False, **kw)
            time.sleep(0.05)
    finally:
        for call in running.values():  # interrupted: no child outlives the call
            call.close()
    return runs  # type: ignore[return-value]
