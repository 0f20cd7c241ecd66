"""A sweep that is interrupted, or whose combination fails during its run, stops or goes on as it says.

Ctrl-C (a notebook's interrupt is a SIGINT to the kernel alone) used to wait for the process
pool to run every queued combination before it returned, and a Dask cluster went on computing
them after the call had given up; a combination that failed during its run threw away every
other row of the sweep, after waiting for them all.  The runs here are stand-ins (a sleep and a
line in a file), so that what ran, and when, is counted.
"""
from __future__ import annotations

import importlib
import multiprocessing
import os
import time

import pytest

from llmlab.sim import sweep
from llmlab.sim.scenario import ScenarioError

sweep_module = importlib.import_module("llmlab.sim.sweep")  # the module: llmlab.sim.sweep is the function
RATES = [float(r) for r in range(1, 13)]
GRID = {"traffic.rate_per_s": RATES}
STEP_S = 0.3  # each stand-in run


def _slow_run(task):
    """A stand-in for one combination's run (module level: a worker process finds it by name)."""
    combo = task[1]
    with open(os.environ["LLMLAB_TEST_RUNS"], "a", encoding="utf-8") as f:
        f.write(f"{combo['traffic.rate_per_s']}\n")
    time.sleep(STEP_S)
    if combo["traffic.rate_per_s"] == float(os.environ.get("LLMLAB_TEST_FAIL_AT", "nan")):
        raise ScenarioError("gateway.cache.embedder", "an embedder that works here", "litellm:x")
    return {"requests": 7, "cost_usd": combo["traffic.rate_per_s"] / 10}


@pytest.fixture
def stand_in(monkeypatch, tmp_path):
    runs = tmp_path / "runs.txt"
    runs.touch()
    monkeypatch.setenv("LLMLAB_TEST_RUNS", str(runs))
    monkeypatch.setattr(sweep_module, "_run", _slow_run)
    return lambda: runs.read_text(encoding="utf-8").split()


def _interrupt_after_first(done, total):
    raise KeyboardInterrupt  # Ctrl-C in the caller as the first combination comes back


def test_an_interrupted_local_sweep_ends_its_workers_and_runs_no_more_combinations(stand_in):
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        sweep("b2b-saas", GRID, requests=20, processes=2, progress=_interrupt_after_first)
    took = time.monotonic() - started
    ran = len(stand_in())
    time.sleep(2 * STEP_S)
    assert len(stand_in()) == ran <= 4, stand_in()  # the two running and at most two taken: not all twelve
    assert took < 6 * STEP_S + 1.5, took  # 12 runs on 2 workers would take 6 steps more
    assert multiprocessing.active_children() == []


def test_a_combination_that_fails_during_its_run_costs_no_other_row(stand_in, monkeypatch):
    from llmlab.sim.sweep import SweepIncomplete

    monkeypatch.setenv("LLMLAB_TEST_FAIL_AT", "3.0")
    for processes in (1, 2):
        with pytest.raises(SweepIncomplete) as info:
            sweep("b2b-saas", {"traffic.rate_per_s": [1.0, 3.0, 5.0]}, requests=20, processes=processes)
        error = info.value
        assert error.rows["traffic.rate_per_s"].tolist() == [1.0, 5.0]
        assert error.rows["cost_usd"].tolist() == [0.1, 0.5]
        (combo, failure), = error.failures
        assert combo == {"traffic.rate_per_s": 3.0} and isinstance(failure, ScenarioError)
        assert error.__cause__ is failure
        assert "1 of 3" in str(error) and "traffic.rate_per_s=3.0" in str(error) and "gateway.cache.embedder" in str(error)


def test_a_sweep_whose_every_combination_failed_raises_the_error_itself(stand_in, monkeypatch):
    monkeypatch.setenv("LLMLAB_TEST_FAIL_AT", "3.0")
    with pytest.raises(ScenarioError, match="^gateway.cache.embedder"):
        sweep("b2b-saas", {"traffic.rate_per_s": [3.0]}, requests=20, processes=2)


def test_the_command_prints_and_writes_the_rows_that_ran_then_names_the_failed_combination(stand_in, monkeypatch,
                                                                                            tmp_path, capsys):
    from llmlab.sim.sweep_cli import main

    monkeypatch.setenv("LLMLAB_TEST_FAIL_AT", "3.0")
    out = tmp_path / "rows.csv"
    code = main(["--scenario", "b2b-saas", "--grid", "traffic.rate_per_s=[1.0, 3.0, 5.0]", "--requests", "20",
                 "--processes", "1", "--out", str(out)])
    printed = capsys.readouterr()
    assert code == 2
    assert printed.out.count("\n") >= 3 and "0.5" in printed.out  # the header and the two rows that ran
    error = printed.err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("llmlab sweep: error: ") and "traffic.rate_per_s=3.0" in error[0]
    assert out.read_text(encoding="utf-8").count("\n") == 3  # the header and two rows


def test_an_interrupted_sweep_on_a_dask_cluster_leaves_it_nothing_to_compute(stand_in):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client:
            with pytest.raises(KeyboardInterrupt):
                sweep("b2b-saas", {"traffic.rate_per_s": RATES[:8]}, requests=20, scheduler=client,
                      progress=_interrupt_after_first)
            time.sleep(4 * STEP_S)
            ran = len(stand_in())
            assert ran <= 3, stand_in()  # the cluster's one thread: the first, the one running, no more
            time.sleep(2 * STEP_S)
            assert len(stand_in()) == ran


def test_a_dask_combination_that_fails_costs_no_other_row(stand_in, monkeypatch):
    distributed = pytest.importorskip("distributed")
    from llmlab.sim.sweep import SweepIncomplete

    monkeypatch.setenv("LLMLAB_TEST_FAIL_AT", "1.0")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client, pytest.raises(SweepIncomplete) as info:
            sweep("b2b-saas", {"traffic.rate_per_s": [1.0, 2.0]}, requests=20, scheduler=client)
    assert info.value.rows["cost_usd"].tolist() == [0.2]



@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
@pytest.mark.parametrize("sig, code", [("SIGTERM", 143), ("SIGKILL", -9)])
def test_a_sweep_command_ended_by_a_signal_leaves_no_worker_running(sig, code):
    """SIGTERM (a cancelled CI job, `timeout`) ended the command at once and left its workers
    computing the rest of the sweep for nobody; so did SIGKILL (out of memory), which no handler
    sees: the workers now end when the process that started them has gone."""
    import signal
    import subprocess
    import sys

    psutil = pytest.importorskip("psutil")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.path.dirname(os.path.dirname(__file__)),
                                                                      os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen([sys.executable, "-m", "llmlab", "sweep", "--scenario", "b2b-saas", "--grid",
                             "traffic.rate_per_s=[1, 2, 3, 4]", "--requests", "50000", "--json"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.monotonic() + 60
        while len(workers := psutil.Process(proc.pid).children()) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(workers) == 2, "the sweep's two workers never started"
        time.sleep(0.5)  # inside their runs
        proc.send_signal(getattr(signal, sig))
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == code, err[-2000:]
        if code == 143:
            assert err.decode().strip().endswith("llmlab sweep: terminated")
        gone = psutil.wait_procs(workers, timeout=5)[1]
        assert [w for w in gone if w.status() != psutil.STATUS_ZOMBIE] == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
