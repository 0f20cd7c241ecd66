"""The baseline run beside the policy run, in a child interpreter (llmlab.sim.sidecar).

What must hold: the results are exactly those of one process (the child gets the very traffic
and outage windows); progress covers both runs and only grows; a child that cannot run, raises
or dies leaves the caller to run the baseline itself, with a warning saying why; the default
asks for a second process only for long runs with two CPUs to use; a sweep never does.
"""
from __future__ import annotations

import logging
import math
import sys

import pytest

import llmlab.sim.parallel as sim_parallel
import llmlab.sim.run as sim_run
from llmlab.sim import simulate, sidecar
from llmlab.sim.scenario import ScenarioError
from llmlab.sim.sidecar import SideCall, SideCallFailed

# a pipe or file of a child left open is a failure here, not a warning
pytestmark = [pytest.mark.filterwarnings("error::ResourceWarning"),
              pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")]
SMALL = {"requests": 1_200, "seed": 5}


def _same(a: dict, b: dict) -> list[str]:
    """Keys whose values differ (NaN equals NaN)."""
    def eq(x, y):
        return x == y or (isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y))

    return sorted(k for k in a.keys() | b.keys() if not eq(a.get(k), b.get(k)))


@pytest.fixture
def side_calls(monkeypatch):
    """The targets of the side calls started while the test runs (they still run)."""
    started = []

    class Spy(SideCall):
        def __init__(self, *args, **kwargs):
            started.append(args[0])
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(sidecar, "SideCall", Spy)
    return started


@pytest.fixture(scope="module")
def in_process():
    return simulate("realtime-chat", parallel=False, **SMALL)


def test_the_baseline_beside_gives_exactly_the_results_of_one_process(in_process):
    seen = []
    beside = simulate("realtime-chat", parallel=True, progress=lambda done, total: seen.append((done, total)), **SMALL)
    assert _same(beside.summary, in_process.summary) == []
    assert _same(beside.baseline_summary, in_process.baseline_summary) == []
    assert beside.baseline_turns.equals(in_process.baseline_turns) and beside.turns.equals(in_process.turns)
    n = in_process.summary["requests"]
    assert {total for _, total in seen} == {2 * n}  # one progress over both runs
    assert all(a <= b for (a, _), (b, _) in zip(seen, seen[1:])) and seen[-1][0] == 2 * n


def test_a_child_that_cannot_run_leaves_the_baseline_to_this_process(in_process, monkeypatch, caplog):
    monkeypatch.setattr(sidecar, "BOOT", "import sys; sys.stderr.write('no llmlab here'); sys.exit(3)")
    with caplog.at_level(logging.WARNING, "llmlab.sim"):
        beside = simulate("realtime-chat", parallel=True, **SMALL)
    assert _same(beside.summary, in_process.summary) == []
    warned = [r.getMessage() for r in caplog.records if "second process failed" in r.getMessage()]
    assert len(warned) == 1 and "exit code 3" in warned[0] and "no llmlab here" in warned[0]


def test_by_default_only_long_runs_on_two_cpus_run_the_baseline_beside(monkeypatch, side_calls):
    started = side_calls
    monkeypatch.setattr(sim_parallel, "PARALLEL_MIN_TURNS", 300)
    for cpus, requests, expected in [(2, 300, 1), (2, 299, 0), (1, 300, 0)]:
        monkeypatch.setattr(sidecar, "usable_cpus", lambda cpus=cpus: cpus)
        started.clear()
        simulate("b2b-saas", requests=requests, seed=0)
        assert len(started) == expected, (cpus, requests)
    started.clear()
    simulate("b2b-saas", requests=300, seed=0, parallel=False)
    simulate("b2b-saas", requests=300, seed=0, baseline=False)  # no baseline, nothing beside
    assert started == []
    simulate("b2b-saas", requests=50, seed=0, parallel=True)
    assert started == ["llmlab.sim.parallel:baseline_run"]


def test_parallel_must_be_a_bool_or_none():
    with pytest.raises(ScenarioError, match="parallel"):
        simulate("b2b-saas", requests=10, parallel="yes")


def test_a_sweep_never_starts_a_second_process_per_run(monkeypatch):
    from llmlab.sim import sweep

    asked = []
    real = sim_run.simulate
    monkeypatch.setattr(sim_run, "simulate", lambda *a, **k: asked.append(k.get("parallel")) or real(*a, **k))
    sweep("b2b-saas", {"gateway.cache.semantic": [True, False]}, requests=100, processes=1)
    assert asked == [False, False]


def test_one_process_on_the_command_line(monkeypatch, capsys):
    from llmlab.sim import cli

    asked = []
    real = sim_run.simulate
    monkeypatch.setattr(sim_run, "simulate", lambda *a, **k: asked.append(k.get("parallel")) or real(*a, **k))
    assert cli.main(["--scenario", "b2b-saas", "--requests", "50", "--json", "--one-process"]) == 0
    assert cli.main(["--scenario", "b2b-saas", "--requests", "50", "--json"]) == 0
    assert asked == [False, None]


# ----------------------------------------------------------------------------- replications
REPLICATED = {"requests": 400, "seed": 7, "replications": 3}


@pytest.fixture(scope="module")
def replicated_in_process():
    return simulate("b2b-saas", parallel=False, **REPLICATED)


def test_replications_beside_each_other_give_exactly_the_results_of_one_process(replicated_in_process):
    seen = []
    beside = simulate("b2b-saas", parallel=True, progress=lambda done, total: seen.append((done, total)), **REPLICATED)
    one = replicated_in_process
    assert _same({k: v for k, v in beside.summary.items() if k != "ci95"},
                 {k: v for k, v in one.summary.items() if k != "ci95"}) == []
    assert beside.summary["ci95"] == one.summary["ci95"]
    assert beside.replications.equals(one.replications)
    assert beside.requests.equals(one.requests) and beside.turns.equals(one.turns)
    total = 3 * 2 * one.replications["requests"].iloc[0]  # three runs, each a policy and a baseline
    assert {t for _, t in seen} == {total}
    assert all(a <= b for (a, _), (b, _) in zip(seen, seen[1:])) and seen[-1][0] == total


def test_a_replication_whose_child_fails_runs_in_this_process(replicated_in_process, monkeypatch, caplog):
    monkeypatch.setattr(sidecar, "BOOT", "import sys; sys.exit(4)")
    with caplog.at_level(logging.WARNING, "llmlab.sim"):
        beside = simulate("b2b-saas", parallel=True, **REPLICATED)
    assert beside.replications.equals(replicated_in_process.replications)
    warned = [r.getMessage() for r in caplog.records if "in a second process failed" in r.getMessage()]
    assert any(m.startswith("llmlab: replication 1 ") and "exit code 4" in m for m in warned), warned
    assert sum(m.startswith("llmlab: replication ") for m in warned) == 3


def test_by_default_replications_go_beside_each_other_only_when_long_and_the_cpus_allow(monkeypatch, side_calls):
    started = side_calls
    monkeypatch.setattr(sim_parallel, "PARALLEL_MIN_TURNS", 200)
    cases = [  # cpus, requests, baseline → replications started in children
        (2, 200, False, 2), (2, 199, False, 0), (1, 200, False, 0),
        (2, 200, True, 0),  # each replication's baseline beside it takes the second CPU
        (4, 200, True, 2)]
    for cpus, requests, baseline, expected in cases:
        monkeypatch.setattr(sidecar, "usable_cpus", lambda cpus=cpus: cpus)
        started.clear()
        simulate("b2b-saas", requests=requests, seed=0, replications=2, baseline=baseline, keep_requests=False)
        assert started.count("llmlab.sim.parallel:replication_run") == expected, (cpus, requests, baseline)


def test_counting_the_turns_draws_no_traffic_when_the_size_says_it_or_one_cpu_settles_it(monkeypatch):
    """Replications of a given size have that many turns each: their traffic is not drawn (a
    trace's not read) an extra time to count them, nor at all when one CPU rules out parallel."""
    from llmlab.sim import load_scenario
    from llmlab.sim import run as sim_run

    drawn = []
    real = sim_run.make_traffic
    monkeypatch.setattr(sim_run, "make_traffic", lambda *a, **k: drawn.append(k) or real(*a, **k))
    monkeypatch.setattr(sim_parallel, "PARALLEL_MIN_TURNS", 200)
    sc = load_scenario("b2b-saas")
    monkeypatch.setattr(sidecar, "usable_cpus", lambda: 2)
    assert sim_parallel.replication_slots(sc, 2, 0, {"requests": 200, "baseline": False}) == 2
    assert sim_parallel.replication_slots(sc, 2, 0, {"requests": 199, "baseline": False}) == 1
    assert drawn == []
    assert sim_parallel.replication_slots(sc, 2, 0, {"hours": 0.01, "baseline": False}) == 1  # counted: ≈ 40 turns
    assert [k["hours"] for k in drawn] == [0.01]
    monkeypatch.setattr(sidecar, "usable_cpus", lambda: 1)
    drawn.clear()
    assert sim_parallel.replication_slots(sc, 2, 0, {"hours": 5.0, "baseline": False}) == 1
    assert drawn == []


@pytest.mark.parametrize("files, allowed", [
    ({"cpu.max": "150000 100000\n"}, 1),  # cgroup v2: 1.5 CPUs → one busy process
    ({"cpu.max": "100000 100000\n"}, 1),
    ({"cpu.max": "max 100000\n"}, None),  # no quota: the affinity mask says
    ({"cpu/cpu.cfs_quota_us": "100000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 1),  # cgroup v1
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
    ({}, None),  # no cgroup files (macOS, Windows, no /sys)
])
def test_a_containers_cpu_quota_bounds_the_cpus_used(tmp_path, files, allowed):
    """A container limited to one CPU sees all of its host's: two processes would only take turns."""
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    unbounded = sidecar.usable_cpus(str(tmp_path / "nothing-here"))
    assert sidecar.usable_cpus(str(tmp_path)) == (unbounded if allowed is None else min(unbounded, allowed))


# ----------------------------------------------------------------------------- the side call itself
def noisy_sum(values, *, progress):
    """A target for the child: prints to stdout (which must not corrupt the messages) and reports."""
    total = 0
    for k, v in enumerate(values, 1):
        print("working on", v)
        total += v
        progress(k)
    return {"total": total, "python": sys.executable}


def failing(*, progress):
    progress(1)
    raise ValueError("the target failed on purpose")


def slow(*, progress):
    import time

    progress(1)
    time.sleep(60)


def test_a_side_call_returns_its_value_and_its_progress():
    call = SideCall(f"{__name__}:noisy_sum", ([1, 2, 3, 4],))
    seen = []
    assert call.result(seen.append, poll_s=0.01) == {"total": 10, "python": sys.executable}
    assert call.done == 4 and all(a <= b for a, b in zip(seen, seen[1:]))


def test_a_side_call_that_raises_says_why():
    with pytest.raises(SideCallFailed, match="the target failed on purpose"):
        SideCall(f"{__name__}:failing").result()


def test_a_side_call_that_cannot_start_says_why(monkeypatch):
    monkeypatch.setattr(sys, "executable", "/nonexistent/python")
    call = SideCall(f"{__name__}:noisy_sum", ([1],))
    assert call.ready
    with pytest.raises(SideCallFailed, match="could not start.*nonexistent"):
        call.result()
    with pytest.raises(SideCallFailed, match="could not start: (PicklingError|AttributeError)"):
        SideCall(f"{__name__}:noisy_sum", (lambda: 1,)).result()  # arguments that do not pickle


def nested(*, progress):
    """A child that starts a side call of its own (as a replication's baseline does) and waits."""
    import time

    inner = SideCall(f"{__name__}:slow")
    while not inner.done:  # its report sent: it writes nothing more, so only a signal ends it early
        time.sleep(0.01)
    progress(inner._proc.pid)
    time.sleep(60)


@pytest.mark.skipif(sys.platform == "win32", reason="process groups are POSIX")
def test_closing_a_side_call_ends_its_children_too():
    import time

    call = SideCall(f"{__name__}:nested")
    deadline = time.monotonic() + 30
    while not call.done and time.monotonic() < deadline:
        time.sleep(0.05)
    grandchild = call.done
    assert grandchild, "the child never reported its own child"
    call.close()
    while time.monotonic() < deadline and _running(grandchild):
        time.sleep(0.05)
    assert not _running(grandchild), f"the grandchild {grandchild} outlived close()"


def _running(pid: int) -> bool:
    """Is ``pid`` a live process (a zombie, dead but not yet reaped by init, is not)?"""
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:  # no /proc (macOS): kill(0) said it is there
        return True


def test_closing_a_side_call_ends_its_child():
    call = SideCall(f"{__name__}:slow")
    while call.done == 0 and call._proc.poll() is None:
        call._reader.join(0.05)
    call.close()
    assert call._proc.poll() is not None


def test_the_benchmark_prints_both_timings_and_identical_summaries():
    """benchmarks/parallel_baseline.py on a small run: one JSON object, the same summary both ways."""
    from benchmark_runs import run_benchmark

    out = run_benchmark("parallel_baseline.py", "--requests", "300", "--rounds", "1", timeout=300)
    assert out["identical_summaries"] is True and out["requests"] == 300
    assert out["one_process_s"] > 0 and out["parallel_s"] > 0 and out["usable_cpus"] >= 1
