"""Gateway overhead: the pipeline with an instant in-process provider vs litellm's Router.

Prints one JSON object.  Both measurements run in the same process, so compare the ratio, not
the absolute numbers (the machines are shared and noisy).

    python benchmarks/gateway_overhead.py --json [--requests 5000]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def import_time() -> tuple[float, bool]:
    code = ("import time, sys; t=time.perf_counter(); import llmlab; "
            "print(time.perf_counter()-t, 'litellm' in sys.modules)")
    runs = []
    imported = False
    for _ in range(3):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
        runs.append(float(out[0]))
        imported = imported or out[1] == "True"
    return min(runs), imported


def pipeline_us(n: int) -> tuple[float, float]:
    from llmlab import Deployment, FixedRouter, Gateway
    from llmlab.scripted import FakeClock, ScriptedDriver

    clock = FakeClock()
    driver = ScriptedDriver(clock=clock, default="An instant answer from an in-process provider.")
    gw = Gateway([Deployment("gpt-4o", "gpt-4o"), Deployment("mini", "gpt-4o-mini")], router=FixedRouter("gpt-4o"),
                 fallbacks={"gpt-4o": ["mini"]}, clock=clock, driver=driver, seed=0)
    gw.pipeline.ledger.keep = False
    prompts = [f"Where is my order {i}? It has not arrived yet." for i in range(n)]
    miss, hit = [], []
    for p in prompts[:200]:  # warm up
        gw.complete(p, tenant="warm")
    for p in prompts:
        t = time.perf_counter_ns()
        gw.complete(p, tenant="t")
        miss.append(time.perf_counter_ns() - t)
    for p in prompts:
        t = time.perf_counter_ns()
        gw.complete(p, tenant="t")
        hit.append(time.perf_counter_ns() - t)
    return statistics.median(miss) / 1000, statistics.median(hit) / 1000


def router_us(n: int) -> float:
    import litellm

    litellm.suppress_debug_info = True
    router = litellm.Router(model_list=[{"model_name": "gpt-4o", "litellm_params": {
        "model": "gpt-4o", "mock_response": "An instant answer.", "api_key": "sk-bench"}}], num_retries=0)
    samples = []
    for i in range(n + 50):
        t = time.perf_counter_ns()
        router.completion(model="gpt-4o", messages=[{"role": "user", "content": f"Where is my order {i}?"}])
        if i >= 50:
            samples.append(time.perf_counter_ns() - t)
    litellm.logging_callback_manager._reset_all_callbacks()
    return statistics.median(samples) / 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object (the default output)")
    parser.add_argument("--requests", type=int, default=5000)
    args = parser.parse_args()
    import_s, imported = import_time()
    miss, hit = pipeline_us(args.requests)
    router = router_us(min(args.requests, 1000))
    print(json.dumps({
        "pipeline_miss_us_p50": round(miss, 2), "pipeline_hit_us_p50": round(hit, 2),
        "litellm_router_us_p50": round(router, 1), "ratio_miss_vs_router": round(miss / router, 4),
        "import_llmlab_s": round(import_s, 4), "litellm_imported_by_llmlab": imported,
        "requests": args.requests,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
