"""How long the first live call holds the event loop: cold, after importing litellm only (all
``Gateway.warm_up()`` did before it warmed litellm's routes), and after ``warm_up()``.

Each measurement is a fresh process (what is lazily built is built once per process): a gateway
on the fake OpenAI-compatible server (loopback, its own process), prepared as above, then
one event loop runs a probe — a task sleeping 5 ms in a loop, recording its worst overshoot —
while the first ``acomplete`` (or the first ``astream``, read to its end) runs; then a second
call on the same loop, then a first call on a new loop (litellm keeps one HTTP client per event
loop: what no warm-up can build beforehand).  Besides the lag it counts what the first call did
lazily, process-wide: modules imported, pydantic models built, tiktoken encodings loaded.

    python benchmarks/first_call_lag.py --json [--repeat 3]

Prints one JSON object: per ``acomplete``/``astream`` and ``cold``/``imported``/``warmed``, the
median and worst of ``--repeat`` runs (the cold first call also imports litellm, off the loop).
The machine is shared and noisy: compare columns of one run.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: its sibling modules
from fake_provider_process import start_fake_provider  # noqa: E402

PROBE_S = 0.005


class Lazy:
    """Counts, process-wide, what runs for the first time: imports, pydantic model builds
    (class creation and deferred builds alike) and tiktoken encodings loaded."""

    def __init__(self) -> None:
        import pydantic._internal._model_construction as construction

        self.builds: list[str] = []
        self._construction = construction
        original = construction.complete_model_class

        def counted(cls, *args, **kwargs):
            self.builds.append(f"{cls.__module__}.{cls.__qualname__}")
            return original(cls, *args, **kwargs)

        construction.complete_model_class = counted

    def start(self) -> None:
        self.builds.clear()
        self.modules = set(sys.modules)
        self.encodings = self._encodings()

    def seen(self) -> dict:
        return {"imports": sorted(set(sys.modules) - self.modules), "builds": list(self.builds),
                "encodings": sorted(self._encodings() - self.encodings)}

    @staticmethod
    def _encodings() -> set:
        registry = sys.modules.get("tiktoken.registry")
        return set(getattr(registry, "ENCODINGS", {}) or {})


async def lag_of(call) -> tuple[float, float]:
    """(worst overshoot of a 5 ms sleep while ``call()`` runs, the call's own time), in seconds."""
    done = asyncio.Event()
    worst = 0.0

    async def probe() -> None:
        nonlocal worst
        while not done.is_set():
            started = time.perf_counter()
            await asyncio.sleep(PROBE_S)
            worst = max(worst, time.perf_counter() - started - PROBE_S)

    task = asyncio.create_task(probe())
    await asyncio.sleep(0.02)  # the probe is running before the call starts
    started = time.perf_counter()
    outcome = await call()
    elapsed = time.perf_counter() - started
    done.set()
    await task
    if not outcome.ok:
        raise RuntimeError(f"the call failed: {outcome.error}")
    return worst, elapsed


LEVELS = ("cold", "imported", "warmed")


def child(mode: str, level: str, url: str) -> dict:
    """One cold process's measurement (see the module docstring)."""
    from llmlab import Deployment, FixedRouter, Gateway

    gw = Gateway([Deployment("gpt-4o", "openai/gpt-4o", {"api_base": url, "api_key": "sk-test"})],
                 router=FixedRouter("gpt-4o"))
    import_s = warm_up_s = 0.0
    if level != "cold":  # timed apart: the import alone is what warm_up() paid before it warmed the routes
        from llmlab.live import import_litellm

        started = time.perf_counter()
        import_litellm()
        import_s = time.perf_counter() - started
        if level == "warmed":
            gw.warm_up()
            warm_up_s = time.perf_counter() - started - import_s
    lazy = Lazy()

    asked = iter(range(1_000, 10_000))

    async def call():  # a new question each time: an exact-cache hit would not reach litellm
        question = f"Where is my order {next(asked)}?"
        if mode == "acomplete":
            return await gw.acomplete(question)
        response = gw.astream(question)
        async for _ in response:
            pass
        return response.outcome

    async def twice() -> dict:
        lazy.start()
        first_lag, first_s = await lag_of(call)
        first = lazy.seen()
        second_lag, _ = await lag_of(call)
        return {"first_lag_ms": round(first_lag * 1000, 1), "first_call_s": round(first_s, 3),
                "second_lag_ms": round(second_lag * 1000, 1), **{f"first_{k}": v for k, v in first.items()}}

    out = asyncio.run(twice())
    new_loop_lag, _ = asyncio.run(lag_of(call))  # a second loop: its own HTTP client, built on it
    return {"import_s": round(import_s, 3), "warm_up_s": round(warm_up_s, 3), **out,
            "new_loop_first_lag_ms": round(new_loop_lag * 1000, 1)}


def run_child(mode: str, level: str, url: str) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, __file__, "--child", mode, level, url],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"child failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def summary(runs: list[dict]) -> dict:
    out: dict = {"runs": len(runs)}
    for key in ("first_lag_ms", "second_lag_ms", "new_loop_first_lag_ms", "first_call_s", "import_s", "warm_up_s"):
        values = [r[key] for r in runs]
        out[key] = {"median": round(statistics.median(values), 3), "max": max(values)}
    for key in ("first_imports", "first_builds", "first_encodings"):
        out[key.replace("first_", "first_call_lazy_")] = max(len(r[key]) for r in runs)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print JSON (the only output format)")
    parser.add_argument("--repeat", type=int, default=3, help="cold processes per cell (default 3)")
    parser.add_argument("--child", nargs=3, metavar=("MODE", "LEVEL", "URL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, level, url = args.child
        print(json.dumps(child(mode, level, url)))
        return
    if args.repeat < 1:
        parser.error(f"--repeat must be >= 1 (got {args.repeat})")
    provider, url = start_fake_provider()
    try:
        from importlib.metadata import version

        cells = [(mode, level) for mode in ("acomplete", "astream") for level in LEVELS]
        runs: dict = {cell: [] for cell in cells}
        for _ in range(args.repeat):  # round-robin, so a noisy minute hits every column
            for mode, level in cells:
                runs[mode, level].append(run_child(mode, level, url))
        result: dict = {"litellm": version("litellm"), "cpus": os.cpu_count(), "probe_sleep_ms": PROBE_S * 1000}
        for (mode, level), cell_runs in runs.items():
            result[f"{mode}_{level}"] = summary(cell_runs)
    finally:
        provider.terminate()
        provider.wait(timeout=10)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
