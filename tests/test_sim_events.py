"""How many SimPy events a simulated turn costs, and that the lean runners keep SimPy's order.

The simulator's own per-request work is part of its throughput target (benchmarks/sim_throughput.py);
these tests pin the event-level savings so that a refactor does not silently bring the costs back,
and check that the cheaper runners order events exactly as ``simpy.Process`` does."""
from __future__ import annotations

import collections

import simpy

from llmlab.sim import load_scenario
from llmlab.sim.run import _embed_model, make_traffic, run_once, run_windows


def _events_of_a_run(preset: str, requests: int = 200) -> tuple[collections.Counter, int]:
    sc = load_scenario(preset)
    traffic = make_traffic(sc, requests=requests, seed=0)
    seen: collections.Counter = collections.Counter()

    def observe(env, app):
        step = env.step

        def counting_step():
            if env._queue:
                seen[type(env._queue[0][3]).__name__] += 1
            step()

        env.step = counting_step  # an instance attribute: env.run() calls it for every event

    rec, _ = run_once(sc, traffic, seed=0, windows=run_windows(sc, traffic, 0), keep_requests=False,
                      embed_model=_embed_model(sc, traffic), observe=observe)
    assert len(rec) == requests
    return seen, requests


def test_a_turn_costs_no_process_events():
    """A turn was a ``simpy.Process``: an ``Initialize`` event to start it and the process's own
    event when it ended (nobody waits for a turn), plus a resumption of an arrivals process.  A
    turn now starts in its arrival's callback: its events are its own waits only."""
    for preset in ("b2b-saas", "realtime-chat"):
        seen, n = _events_of_a_run(preset)
        assert seen["Initialize"] == 0 and seen["Process"] == 0, (preset, seen)
        assert seen["Timeout"] >= n  # every arrival after the first instant is still a timeout


def _order(run_as_tasks: bool) -> list[tuple[float, str]]:
    """Three generators waiting on ties, a shared event and a condition: who runs when."""
    from llmlab.sim.driver import Task

    env = simpy.Environment()
    log: list[tuple[float, str]] = []
    gate = env.event()

    def worker(name: str, delays: list[float]):
        log.append((env.now, name + " start"))
        for d in delays:
            yield env.timeout(d)
            log.append((env.now, f"{name} after {d}"))
        if name == "a":
            gate.succeed("open")
        else:
            value = yield gate | env.timeout(5.0)
            log.append((env.now, f"{name} gate {sorted(map(str, value.values()))}"))
        yield env.timeout(0)
        log.append((env.now, name + " end"))

    starts = [("a", [1.0, 1.0]), ("b", [2.0, 0.0]), ("c", [0.5, 1.5, 0.0])]
    if run_as_tasks:
        go = env.timeout(0)
        for name, delays in starts:
            go.callbacks.append(lambda _e, name=name, delays=delays: Task(worker(name, delays)).start())
    else:
        first = env.timeout(0)
        first.callbacks.append(lambda _e: [env.process(worker(n, d)) for n, d in starts])
    env.run()
    return log


def test_tasks_run_in_the_order_processes_do():
    """Regression guard: a Task started where a Process would have been created sees every event in
    the same order as the Process (ties at one instant included)."""
    assert _order(True) == _order(False)
    assert len(_order(True)) == 15


def test_a_task_that_ends_before_waiting_is_fine():
    from llmlab.sim.driver import Task

    def instant():
        return
        yield  # pragma: no cover

    Task(instant()).start()  # no event, no error
