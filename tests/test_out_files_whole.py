"""``--out`` and ``--plot`` hold a command's whole output or what they held before, never part of it.

The file options were checked by creating the file before the runs, and the creation stayed:
a sweep refused for a bad value, or interrupted, left an empty ``sweep.csv`` and a ``.png`` no
viewer opens.  ``llmlab simulate --out DIR`` wrote its files one by one into the folder (seconds
for a long run): Ctrl-C meanwhile left a cut ``requests.csv``, or this run's tables beside the
previous run's ``summary.json``.
"""
from __future__ import annotations

import pytest

from llmlab.sim import cli as sim_cli
from llmlab.sim.sweep_cli import main as sweep_main


def test_a_refused_sweep_leaves_no_empty_out_or_plot_file(tmp_path, capsys):
    out, plot = tmp_path / "deep" / "sweep.csv", tmp_path / "sweep.png"
    code = sweep_main(["--scenario", "b2b-saas", "--grid", "gateway.cache.threshold=[0.9, 1.5]", "--requests", "20",
                       "--out", str(out), "--plot", str(plot)])
    assert code == 2 and "gateway.cache.threshold" in capsys.readouterr().err
    assert not out.exists() and not plot.exists()


def test_a_simulation_interrupted_while_writing_out_leaves_the_folder_as_it_was(tmp_path, monkeypatch):
    out = tmp_path / "run"
    out.mkdir()
    (out / "summary.json").write_text('{"from": "the previous run"}\n', encoding="utf-8")
    (out / "requests.csv").write_text("previous\n", encoding="utf-8")

    def interrupted(result, folder):
        raise KeyboardInterrupt  # Ctrl-C after the tables, while the figures are drawn

    import llmlab.report

    monkeypatch.setattr(llmlab.report, "write_report", interrupted)
    with pytest.raises(KeyboardInterrupt):
        sim_cli.main(["--scenario", "b2b-saas", "--requests", "40", "--out", str(out), "--json"])
    assert sorted(p.name for p in out.iterdir()) == ["requests.csv", "summary.json"]
    assert (out / "requests.csv").read_text(encoding="utf-8") == "previous\n"
    assert "previous run" in (out / "summary.json").read_text(encoding="utf-8")


def test_a_simulation_writes_every_file_of_out_and_nothing_else(tmp_path, capsys):
    """A regression guard: the files written beside the folder first are all moved into it."""
    out = tmp_path / "run"
    assert sim_cli.main(["--scenario", "b2b-saas", "--requests", "40", "--out", str(out), "--json"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(["requests.csv", "turns.csv", "summary.json", "tenants.csv", "outages.csv",
                            "cost_over_time.png", "latency_cdf.png", "hit_rate.png", "outages.png"])
    assert "wrote 9 files to" in capsys.readouterr().err


def test_a_rewritten_file_keeps_the_permissions_its_owner_gave_it(tmp_path, capsys):
    """The new file was written beside the old one and renamed onto it: it took the umask's
    permissions, and results made private (0600) became world-readable (0644)."""
    import os
    import stat

    csv, out = tmp_path / "rows.csv", tmp_path / "run"
    csv.write_text("previous\n", encoding="utf-8")
    out.mkdir()
    (out / "summary.json").write_text("{}\n", encoding="utf-8")
    for path in (csv, out / "summary.json"):
        os.chmod(path, 0o600)
    sim_cli.write_whole(csv, lambda path: path.write_text("new\n", encoding="utf-8"))
    assert sim_cli.main(["--scenario", "b2b-saas", "--requests", "40", "--out", str(out), "--json"]) == 0
    assert csv.read_text(encoding="utf-8") == "new\n" and "from" not in (out / "summary.json").read_text()
    assert [stat.S_IMODE(p.stat().st_mode) for p in (csv, out / "summary.json")] == [0o600, 0o600]
