"""Sweeps: one row per combination, on local processes or a Dask cluster."""
from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import pytest

from llmlab.sim import sweep
from llmlab.sim.scenario import ScenarioError

GRID = {"gateway.cache.semantic": [False, True], "traffic.rate_per_s": [1.0, 3.0]}


def test_sweep_on_local_processes():
    df = sweep("b2b-saas", GRID, requests=300, seed=1, processes=2)
    assert len(df) == 4
    assert list(df.columns[:2]) == list(GRID)
    assert {"cost_usd", "savings_pct", "p95_latency_s", "cache_hit_rate"} <= set(df.columns)
    assert (df[~df["gateway.cache.semantic"]]["semantic_hit_rate"] == 0).all()
    # same seed, same combination → the same numbers in this process
    one = sweep("b2b-saas", {"gateway.cache.semantic": [True], "traffic.rate_per_s": [3.0]}, requests=300, seed=1,
                processes=1)
    row = df[(df["gateway.cache.semantic"]) & (df["traffic.rate_per_s"] == 3.0)].iloc[0]
    assert one.iloc[0]["cost_usd"] == pytest.approx(row["cost_usd"], rel=1e-12)


@pytest.mark.parametrize("processes", [1, 2])
def test_a_sweep_reports_each_combination_as_it_finishes(processes):
    seen = []
    df = sweep("b2b-saas", GRID, requests=150, seed=1, processes=processes,
               progress=lambda done, total: seen.append((done, total)))
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)] and len(df) == 4


def test_a_sweep_with_progress_true_draws_a_bar_on_stderr(capsys):
    sweep("b2b-saas", {"gateway.cache.exact": [False, True]}, requests=100, seed=1, processes=1, progress=True)
    err = capsys.readouterr().err
    assert "sweep:" in err and "/2 " in err and "run/s" in err  # the bar counts runs, not requests


def test_sweep_validates_every_combination_before_running():
    with pytest.raises(ScenarioError, match="^traffic.rate_per_s: must be > 0"):
        sweep("b2b-saas", {"traffic.rate_per_s": [1.0, -1.0]}, requests=100)
    with pytest.raises(ScenarioError, match="^grid"):
        sweep("b2b-saas", {}, requests=100)


def test_sweep_on_a_dask_cluster():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client:
            seen = []
            df = sweep("b2b-saas", {"gateway.cache.exact": [False, True]}, requests=200, seed=2, scheduler=client,
                       progress=lambda done, total: seen.append((done, total)))
    assert len(df) == 2 and df["cost_usd"].notna().all() and seen == [(1, 2), (2, 2)]
    assert df.loc[df["gateway.cache.exact"], "exact_hit_rate"].iloc[0] >= 0


def test_an_error_code_or_model_a_run_did_not_see_counts_zero_not_missing():
    """Before: NaN in model_share.azure-gpt-4o for the run that never used it (and in errors.* alike)."""
    df = sweep("realtime-chat", {"gateway.retry.max_retries": [0, 1]}, requests=300, seed=0, processes=1)
    shares = df[[c for c in df.columns if c.startswith("model_share.")]]
    assert "model_share.azure-gpt-4o" in shares and shares.notna().all().all()
    assert (shares.sum(axis=1) <= 1 + 1e-9).all() and (shares == 0).any().any()


def test_a_grid_over_the_traffic_size_sizes_each_run():
    """Before: every row ran sweep()'s requests=2000, next to a traffic.requests column of 100 and 200."""
    df = sweep("b2b-saas", {"traffic.requests": [100, 200]}, processes=1, seed=0)
    assert df["requests"].tolist() == [100, 200]
    by_hours = sweep("b2b-saas", {"traffic.hours": [0.02, 0.04]}, processes=1, seed=0)
    assert by_hours["duration_s"].iloc[1] > by_hours["duration_s"].iloc[0]
    assert by_hours["requests"].iloc[1] > by_hours["requests"].iloc[0]


@pytest.mark.skipif("forkserver" not in multiprocessing.get_all_start_methods(), reason="needs the forkserver start method")
def test_an_unguarded_script_under_forkserver_is_told_what_to_do(tmp_path):
    """Before: only "a process in the process pool was terminated abruptly" (BrokenProcessPool).
    forkserver is Linux's default start method from Python 3.14 (spawn is macOS's): each worker
    re-imports the script, so the README's sweep() at a script's top level broke every worker."""
    script = tmp_path / "unguarded.py"
    script.write_text("import multiprocessing\n"
                      "multiprocessing.set_start_method('forkserver', force=True)\n"
                      "from llmlab.sim import sweep\n"
                      "sweep('realtime-chat', {'gateway.retry.max_retries': [0, 1]}, requests=50)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parents[1]),
                                                                      os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 1
    # the traceback's last line, wherever it is: multiprocessing's resource tracker may warn of a
    # leaked semaphore after it (it did in 2 of 6 runs on a loaded machine)
    told = [line for line in proc.stderr.splitlines() if line.startswith("llmlab.sim.sweep.SweepWorkerDied:")]
    assert len(told) == 1 and "if __name__ == \"__main__\":" in told[0], proc.stderr[-2000:]
    assert "BrokenProcessPool" not in told[0]


def test_a_grid_key_is_one_field_whatever_its_spelling():
    """Before: `traffic . requests` ran sweep()'s 2,000 requests in every row (the sizing check read
    the key's text), and two spellings of one field made two columns, the last value run in both."""
    df = sweep("b2b-saas", {"traffic . requests": [60, 90], 'gateway."cache".semantic': [False]}, processes=1)
    assert list(df.columns[:2]) == ["traffic.requests", "gateway.cache.semantic"]
    assert df["requests"].tolist() == [60, 90]
    with pytest.raises(ScenarioError, match=r"^grid.traffic.tenants.0.monthly_budget_usd: the same field as "
                                            r"traffic.tenants\[0\].monthly_budget_usd"):
        sweep("b2b-saas", {"traffic.tenants[0].monthly_budget_usd": [1.0],
                           "traffic.tenants.0.monthly_budget_usd": [5.0]}, requests=50)


def test_field_key_keeps_a_list_item_as_written_and_quotes_what_needs_it():
    from llmlab.sim.sweep import field_key

    assert field_key("traffic.tenants[0].plan")[0] == "traffic.tenants[0].plan"
    assert field_key(" traffic . tenants . 0 . plan")[0] == "traffic.tenants.0.plan"
    assert field_key("providers.'gpt-4.1'.ttft_s")[0] == 'providers."gpt-4.1".ttft_s'
    seen = {}
    assert field_key("a.b", seen) == ("a.b", None) and field_key('"a".b', seen) == ("a.b", "a.b")


def test_a_scheduler_address_is_checked_before_any_run(monkeypatch):
    pytest.importorskip("distributed")
    import llmlab.sim.run as sim_run

    monkeypatch.setattr(sim_run, "simulate", lambda *a, **k: pytest.fail("ran before the address was checked"))
    with pytest.raises(ScenarioError, match="^scheduler: a Dask scheduler address such as .*missing port number"):
        sweep("b2b-saas", {"gateway.cache.exact": [False]}, requests=50, scheduler="localhost")
    with pytest.raises(ScenarioError, match="^processes: a whole number"):
        sweep("b2b-saas", {"gateway.cache.exact": [False]}, requests=50, processes=0)
