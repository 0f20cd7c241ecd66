"""Running a benchmark of ``benchmarks/`` from a test: a small smoke run, its one JSON object back.

Benchmarks print speed, which tests never assert; the smoke run checks that a benchmark still
runs and says what it should (both timings, identical results).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from script_loader import load_script

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def run_benchmark(name: str, *args: str, timeout: float = 120.0) -> dict:
    """Run ``benchmarks/<name>`` with ``args`` and ``--json``; its JSON, after checking it exited cleanly."""
    done = subprocess.run([sys.executable, str(BENCHMARKS / name), *args, "--json"], capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def load_benchmark(name: str) -> ModuleType:
    """``benchmarks/<name>`` imported, for the way it times a new path against: a test checks the
    path against that same reference instead of a copy of it."""
    if str(BENCHMARKS) not in sys.path:  # its sibling modules (_report) are imported as a script's are
        sys.path.insert(0, str(BENCHMARKS))
    return load_script(f"benchmark_{Path(name).stem}", BENCHMARKS / name)
