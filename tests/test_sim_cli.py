"""``llmlab simulate``: JSON on stdout, readable tables, output files, one-line errors with exit 2."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmlab.sim.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_json_prints_one_object(capsys):
    code, out, err = run(capsys, "--scenario", "b2b-saas", "--requests", "300", "--seed", "2", "--json")
    assert code == 0
    lines = out.strip().splitlines()
    assert len(lines) == 1
    summary = json.loads(lines[0])
    assert summary["requests"] == 300 and summary["scenario"] == "b2b-saas" and "savings_pct" in summary


def test_table_and_set_overrides(capsys):
    code, out, err = run(capsys, "--scenario", "b2b-saas", "--requests", "200", "--set", "gateway.cache.semantic=false",
                         "--set", "traffic.rate_per_s=5")
    assert code == 0
    assert "b2b-saas · 200 requests" in out and "cost" in out and "savings vs baseline" in out
    assert "semantic" in out


def test_out_writes_tables_summary_and_plots(capsys, tmp_path):
    code, out, err = run(capsys, "--scenario", "realtime-chat", "--requests", "300", "--out", str(tmp_path / "res"))
    assert code == 0
    names = {p.name for p in (tmp_path / "res").iterdir()}
    assert {"requests.csv", "turns.csv", "summary.json", "cost_over_time.png", "latency_cdf.png", "hit_rate.png",
            "outages.png"} <= names
    for png in ("cost_over_time.png", "latency_cdf.png", "hit_rate.png", "outages.png"):
        assert (tmp_path / "res" / png).read_bytes()[:4] == b"\x89PNG"
    assert json.loads((tmp_path / "res" / "summary.json").read_text())["requests"] == 300
    import pandas as pd

    assert len(pd.read_csv(tmp_path / "res" / "turns.csv")) == 300


@pytest.mark.parametrize("argv, field", [
    (["--scenario", "b2b-saas", "--set", "providers.gpt-4o.ttft_s=-1"], "providers.gpt-4o.ttft_s"),
    (["--scenario", "b2b-saas", "--set", "traffic.nonsense=1"], "traffic.nonsense"),
    (["--scenario", "no-such-scenario"], "scenario"),
    (["--scenario", "b2b-saas", "--requests", "0"], "--requests"),
    (["--scenario", "b2b-saas", "--requests", "many"], "--requests"),
    (["--scenario", "b2b-saas", "--trace", "/no/such/trace.csv"], "--trace"),
    (["--scenario", "b2b-saas", "--set", "oops"], "--set"),
    ([], "--scenario"),
])
def test_bad_input_is_one_line_on_stderr_and_exit_2(capsys, argv, field):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and field in err


def test_list_and_simulate_prefix(capsys):
    code, out, _ = run(capsys, "--list")
    assert code == 0 and "b2b-saas" in out and "realtime-chat" in out
    code, out, _ = run(capsys, "simulate", "--scenario", "b2b-saas", "--requests", "50", "--json", "--no-baseline")
    assert code == 0 and json.loads(out)["requests"] == 50


def test_replications_in_the_table(capsys):
    code, out, _ = run(capsys, "--scenario", "b2b-saas", "--requests", "150", "--replications", "2", "--no-baseline")
    assert code == 0 and "mean of 2 replications" in out


def _generic_keys(doc, prefix=""):
    """A preset's keys in the reference's spelling (providers.<name>.x, traffic.tenants[i].y)."""
    for key, value in doc.items():
        path = f"{prefix}{key}"
        if prefix in ("providers.", "gateway.rate_limits.", "gateway.retry_per_deployment."):
            path = prefix + "<name>"
        if isinstance(value, dict) and path.endswith("<name>"):
            yield from _generic_keys(value, path + ".")
        elif isinstance(value, dict) and not path.endswith(("languages", "mix", "fallbacks", "routes", "plans",
                                                          "models", "actions", "caps", "plan_caps", "options",
                                                          "refusal_rate")):
            yield path
            yield from _generic_keys(value, path + ".")
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            yield path
            for item in value:
                yield from _generic_keys(item, path + "[i].")
        else:
            yield path


def test_fields_lists_every_key_of_the_presets_with_its_range(capsys):
    from llmlab.sim.scenario import PRESET_DIR, tomllib  # tomli on Python 3.10

    code, out, _ = run(capsys, "--fields", "--json")
    assert code == 0
    rows = {r["key"]: r for r in json.loads(out)}
    for preset in PRESET_DIR.glob("*.toml"):
        missing = set(_generic_keys(tomllib.loads(preset.read_text(encoding="utf-8")))) - set(rows)
        assert not missing, (preset.name, missing)
    ratio = rows["gateway.breaker.failure_ratio"]
    assert (ratio["type"], ratio["allowed"], ratio["default"]) == ("float", "> 0; ≤ 1", "0.5")
    slow = rows["gateway.breaker.slow_call_s"]
    assert slow["type"] == "float | None" and slow["allowed"] == "> 0" and "slow" in slow["note"]
    assert rows["gateway.router.type"]["allowed"].startswith("one of 'fixed', 'plan'")
    assert rows["traffic.tenants[i].plan"]["default"] == "required"
    code, text, _ = run(capsys, "--fields")
    assert code == 0 and text.splitlines()[0].split()[:4] == ["key", "type", "allowed", "default"]
    assert len(text.splitlines()) == len(rows) + 1


def _present(scenario, key):
    """Does the object holding ``key`` (a concrete dotted key) exist in ``scenario``?"""
    node = scenario
    for part in key.split(".")[:-1]:
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list):
            node = node[int(part)] if int(part) < len(node) else None
        else:
            node = getattr(node, part, None)
        if node is None:
            return False
    return True


def test_every_range_in_the_field_list_is_what_validation_enforces():
    """Set each bounded field just outside its listed range: the error names exactly that field."""
    from llmlab.sim.fields import scenario_fields
    from llmlab.sim.scenario import ScenarioError, load_scenario

    base = load_scenario("realtime-chat")
    checked = set()
    for row in scenario_fields():
        bound = row.allowed.split(";")[0].strip()
        key = row.key.replace("providers.<name>", "providers.gpt-4o").replace("[i]", ".0")
        if not bound or bound[0] not in "≥>" or "<name>" in key or not _present(base, key):
            continue
        limit = float(bound[1:].strip())
        bad = int(limit) - 1 if row.type.startswith("int") else (limit if bound[0] == ">" else limit - 0.5)
        with pytest.raises(ScenarioError) as info:
            base.with_overrides({key: bad})
        assert str(info.value).startswith(f"{key}:"), (key, str(info.value))
        checked.add(key)
    assert {"traffic.rate_per_s", "providers.gpt-4o.timeout_s", "gateway.breaker.slow_call_s",
            "traffic.tenants.0.count", "outages.windows.0.start_s", "traffic.rag.latency_s"} <= checked
    assert len(checked) > 40


def test_the_field_list_shows_what_each_item_and_value_must_be():
    """`--fields` listed `traffic.languages` as `dict[str, float]` with nothing allowed, though a
    negative weight is refused; likewise refusal rates above 1, `incidents.mix` keys, tool
    names, URLs, empty plans, and the 24 weights of a `traffic.diurnal` list."""
    from llmlab.sim.fields import scenario_fields
    from llmlab.sim.scenario import ScenarioError, load_scenario

    rows = {row.key: row for row in scenario_fields()}
    assert rows["traffic.languages"].allowed == "each value ≥ 0"
    assert rows["providers.<name>.refusal_rate"].allowed == "each value ≥ 0, ≤ 1"
    assert rows["providers.<name>.incidents.mix"].allowed == "each key one of 'down', 'errors', 'slow'; each value ≥ 0"
    assert rows["gateway.router.thresholds"].allowed == "each item ≥ 1"
    assert rows["traffic.diurnal"].allowed.startswith("each item ≥ 0; one of 'flat'") and "24" in rows["traffic.diurnal"].note
    assert rows["traffic.tenants"].allowed == "at least 1 item" and rows["traffic.tenants[i].plan"].allowed == "not empty"
    assert "http:// or https:// URL" in rows["providers.<name>.api_base"].allowed
    assert "1 to 64 letters" in rows["traffic.tools.actions"].allowed
    # and each listed item or value bound is the one validation enforces: just past it is refused, naming it
    base = load_scenario("realtime-chat", {"gateway.cache.embedder": "hashed"})
    checked = []
    for row in rows.values():
        for part in row.allowed.split("; "):
            if not part.startswith(("each value ", "each item ")) or part.split()[2] not in ("≥", "≤"):
                continue
            for bound in part.split(" ", 2)[2].split(", "):
                op, limit = bound.split()
                bad = float(limit) - 1 if op == "≥" else float(limit) + 1
                key = row.key.replace("providers.<name>", "providers.gpt-4o").replace("[i]", ".0")
                value = {"x": bad} if part.startswith("each value") else [bad] * 24
                with pytest.raises(ScenarioError) as info:
                    base.with_overrides({key: value})
                assert str(info.value).startswith(f"{key}."), (key, value, str(info.value))
                checked.append(key)
    assert len(checked) >= 8, checked


class _GonePipe:
    """stdout whose reader has left (`llmlab simulate ... | true`)."""

    def write(self, text):
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self):
        raise BrokenPipeError(32, "Broken pipe")


@pytest.mark.parametrize("as_json", [False, True])
def test_out_files_are_written_when_the_reader_of_stdout_has_left(monkeypatch, capsys, tmp_path, as_json):
    monkeypatch.setattr("sys.stdout", _GonePipe())
    argv = ["--scenario", "b2b-saas", "--requests", "30", "--no-baseline", "--set", "gateway.cache.embedder=hashed",
            "--out", str(tmp_path / "res")] + (["--json"] if as_json else [])
    assert main(argv) == 0
    names = {p.name for p in (tmp_path / "res").iterdir()}
    assert {"requests.csv", "turns.csv", "summary.json", "latency_cdf.png"} <= names


def test_set_accepts_list_items_as_fields_spells_them(capsys):
    """--fields lists traffic.tenants[i].plan; --set traffic.tenants[0]... said 'not a dotted key'."""
    from llmlab.sim.scenario import load_scenario

    code, out, _ = run(capsys, "--fields")
    assert "traffic.tenants[i].monthly_budget_usd" in out
    for key in ("traffic.tenants[1].monthly_budget_usd", "traffic.tenants.1.monthly_budget_usd"):
        assert load_scenario("b2b-saas", {key: 0.25}).traffic.tenants[1].monthly_budget_usd == 0.25
    code, out, err = run(capsys, "--scenario", "b2b-saas", "--requests", "20", "--no-baseline", "--json",
                         "--set", "gateway.cache.embedder=hashed", "--set", "traffic.tenants[0].monthly_budget_usd=0")
    assert code == 0 and err == "" and json.loads(out)["budget_rejections"] > 0
    code, _, err = run(capsys, "--scenario", "b2b-saas", "--set", "traffic.tenants[7].plan='x'")
    assert code == 2 and "traffic.tenants.7: an index below 2" in err


def test_readme_names_every_column_of_the_tables_out_writes(capsys, tmp_path):
    import re
    from pathlib import Path

    import pandas as pd

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    code, _, _ = run(capsys, "--scenario", "realtime-chat", "--requests", "60", "--replications", "2",
                     "--set", "gateway.cache.embedder=hashed", "--out", str(tmp_path / "res"))
    assert code == 0
    for name in ("turns.csv", "requests.csv", "tenants.csv", "outages.csv", "summary.json"):
        assert f"`{name}`" in readme
    # each table's columns in its own paragraph (a column named elsewhere in the README, such as
    # finish_reason under Outcome, is not documented as one of requests.csv's)
    turns, requests = readme.index("`turns.csv` has one row"), readme.index("`requests.csv` has one row")
    end = readme.index("told apart by a `replication` column", requests) + 40  # that sentence is both tables'
    for table, text in (("turns.csv", readme[turns:requests] + readme[end - 120:end]),
                        ("requests.csv", readme[requests:end])):
        documented = set(re.findall(r"`([a-z_0-9<>]+)`", text))
        columns = [c for c in pd.read_csv(tmp_path / "res" / table, nrows=1).columns if not c.startswith("meta_")]
        assert set(columns) <= documented, (table, sorted(set(columns) - documented))
    tenants = readme.index("`tenants.csv` has one row")
    documented = set(re.findall(r"`([a-z_0-9<>]+)`", readme[tenants:readme.index("* **Replications**", tenants)]))
    columns = list(pd.read_csv(tmp_path / "res" / "tenants.csv", nrows=1).columns)
    assert set(columns) <= documented, sorted(set(columns) - documented)
    outages = readme.index("`outages.csv` has one row")
    documented = set(re.findall(r"`([a-z_0-9<>]+)`", readme[outages:readme.index("* **Replications**", outages)]))
    columns = list(pd.read_csv(tmp_path / "res" / "outages.csv", nrows=1).columns)
    assert columns and set(columns) <= documented, sorted(set(columns) - documented)


def test_ctrl_c_ends_a_command_with_one_line_and_exit_130(monkeypatch, capsys):
    """Ctrl-C during a long `llmlab simulate` printed SimPy's whole traceback."""
    import llmlab.sim.cli
    from llmlab.cli import main as llmlab_main

    def interrupted(argv):
        raise KeyboardInterrupt

    monkeypatch.setattr(llmlab.sim.cli, "main", interrupted)
    assert llmlab_main(["simulate", "--scenario", "b2b-saas"]) == 130
    out, err = capsys.readouterr()
    assert out == "" and err.strip() == "llmlab simulate: interrupted"


def test_help_explains_every_option_and_shows_examples(capsys):
    import re

    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "examples:\n  llmlab simulate --scenario b2b-saas" in out and "exit codes: 0 success, 2 bad input" in out
    options = out.split("options:", 1)[1].split("examples:", 1)[0]
    # an option whose line ends at its metavar and whose next line is another option has no help
    bare = re.findall(r"^  (--\S+(?: [A-Z_]+)?)\n  -", options, flags=re.M)
    assert bare == [], bare
    from llmlab.demo import main as demo_main

    with pytest.raises(SystemExit):
        demo_main(["--help"])
    assert "``" not in capsys.readouterr().out


def test_replications_report_progress_over_all_runs():
    """A progress callable saw each replication restart at 0 with the same total."""
    from llmlab.sim import simulate

    seen = []
    simulate("b2b-saas", requests=40, seed=0, replications=3, progress=lambda done, total: seen.append((done, total)),
             overrides={"gateway.cache.embedder": "hashed"})
    dones, totals = zip(*seen)
    assert len(set(totals)) == 1 and list(dones) == sorted(dones)  # one total, never going back
    assert dones[-1] == totals[0] and totals[0] == 3 * 2 * 40  # three runs, policy and baseline


def test_a_trace_replay_on_a_terminal_shows_progress(monkeypatch, capsys):
    """The bar was decided by traffic.requests (5,000), which a trace replay ignores: a
    million-row log replayed in silence."""
    from pathlib import Path

    import llmlab.sim.run

    seen = {}
    real = llmlab.sim.run.simulate

    def spy(*args, **kwargs):
        seen["progress"] = kwargs.get("progress")
        return real(*args, **{**kwargs, "progress": False})

    monkeypatch.setattr(llmlab.sim.run, "simulate", spy)
    monkeypatch.setattr("sys.stderr.isatty", lambda: True, raising=False)
    trace = Path(__file__).resolve().parents[1] / "datasets" / "traces" / "example_trace.csv"
    code, _, _ = run(capsys, "--scenario", "b2b-saas", "--trace", str(trace), "--no-baseline",
                     "--set", "gateway.cache.embedder=hashed")
    assert code == 0 and seen["progress"] is True
    code, _, _ = run(capsys, "--scenario", "b2b-saas", "--trace", str(trace), "--requests", "50", "--no-baseline",
                     "--set", "gateway.cache.embedder=hashed")
    assert code == 0 and seen["progress"] is False  # a size given, and a small one


def test_the_per_request_table_is_kept_only_for_out(monkeypatch, capsys, tmp_path):
    """Every ledger record was kept for a table only --out writes: 200k requests took 1.1 GB
    where 0.23 GB does, and a third more time."""
    import llmlab.sim.run

    results = []
    real = llmlab.sim.run.simulate

    def spy(*args, **kwargs):
        results.append(real(*args, **kwargs))
        return results[-1]

    monkeypatch.setattr(llmlab.sim.run, "simulate", spy)
    args = ("--scenario", "b2b-saas", "--requests", "60", "--no-baseline", "--set", "gateway.cache.embedder=hashed")
    code, _, _ = run(capsys, *args, "--json")
    assert code == 0 and results[-1].requests.empty and len(results[-1].turns) == 60
    code, _, _ = run(capsys, *args, "--out", str(tmp_path / "out"))
    assert code == 0 and len(results[-1].requests) >= 60
    assert sum(1 for _ in open(tmp_path / "out" / "requests.csv", encoding="utf-8")) == len(results[-1].requests) + 1


def test_a_stdout_that_cannot_take_the_summary_still_writes_the_files(tmp_path):
    """`llmlab simulate … --out DIR > /dev/full`: a traceback from print() and no files, before."""
    import os
    import subprocess
    import sys

    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parents[1]),
                                                                      os.environ.get("PYTHONPATH")]))}
    with open("/dev/full", "w") as full:
        proc = subprocess.run([sys.executable, "-m", "llmlab", "simulate", "--scenario", "b2b-saas", "--requests", "50",
                               "--set", "gateway.cache.embedder=hashed", "--out", str(out)], stdout=full,
                              stderr=subprocess.PIPE, text=True, timeout=300, env=env, check=False)
    assert proc.returncode == 2 and proc.stderr == \
        "llmlab simulate: error: stdout: cannot write ([Errno 28] No space left on device)\n", proc.stderr
    assert (out / "summary.json").exists() and (out / "turns.csv").exists()


def test_llmlab_help_lists_every_option_the_command_line_takes(capsys):
    """`llmlab --version` (and -V) worked but `llmlab --help` listed only the commands; `simulate
    --list --json` printed JSON while --help promised JSON for --fields alone."""
    from llmlab.cli import main as llmlab_main

    assert llmlab_main(["--help"]) == 0
    usage = capsys.readouterr().out
    assert "-V, --version" in usage and "-h, --help" in usage
    assert llmlab_main(["-V"]) == 0 and capsys.readouterr().out.strip() == __import__("llmlab").__version__
    with pytest.raises(SystemExit):
        main(["--help"])
    listed = " ".join(capsys.readouterr().out.split())
    assert "--list list the preset scenarios and exit; with --json as JSON" in listed
    assert main(["--list", "--json"]) == 0
    assert {p["name"] for p in json.loads(capsys.readouterr().out)} == {"b2b-saas", "realtime-chat"}
