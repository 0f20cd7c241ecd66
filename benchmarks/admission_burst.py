#!/usr/bin/env python3
"""A burst of concurrent ``acomplete`` calls, with and without admission control.

    python benchmarks/admission_burst.py --json [--requests 1500] [--max-in-flight 64]

The gateway calls the fake OpenAI-compatible provider (its own process, ``--latency-ms`` per
answer) through litellm, with a tight ``--timeout-s`` and the default breaker.  Without an
admission every call starts at once: litellm's own work per call runs on the event loop, the
loop falls behind, and calls time out waiting for it — failures the breaker counts against a
healthy provider.  With ``Admission(max_in_flight)`` the rest wait their turn (up to
``--max-wait-s``).  For each case: answered, timed out, shed (``overloaded``), other errors,
whether a breaker opened, the burst's wall time, end-to-end latency p50/p99 of the answered
calls, and how late the loop woke a 10 ms ticker (max).  Machines are noisy: compare the two
cases of one run.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("LITELLM_OFFLINE_MODE", "true")
os.environ.setdefault("LITELLM_LOG", "ERROR")  # litellm warns of its saturated pool per call: the numbers say it
sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: its sibling modules
from _report import emit  # noqa: E402
from fake_provider_process import start_fake_provider  # noqa: E402


def gateway(base_url: str, timeout_s: float, admission):
    from llmlab import Deployment, FixedRouter, Gateway

    gw = Gateway([Deployment("gpt-4o-mini", "openai/gpt-4o-mini", {"api_base": base_url, "api_key": "sk-bench"},
                             timeout_s=timeout_s)],
                 router=FixedRouter("gpt-4o-mini"), fallbacks={}, cache=False, admission=admission)
    gw.warm_up()
    return gw


async def burst(gw, n: int, tag: str) -> dict:
    from llmlab.testing.loop_lag import loop_lags

    async def one(i: int):
        started = time.perf_counter()
        outcome = await gw.acomplete(f"{tag} question number {i}: where is my order?", max_tokens=50)
        return outcome, time.perf_counter() - started

    async def everything():
        started = time.perf_counter()
        results = await asyncio.gather(*(one(i) for i in range(n)))
        return results, time.perf_counter() - started

    lags, (results, wall_s) = await loop_lags(everything, 0.01)
    codes = Counter("answered" if o.ok else o.error.code for o, _ in results)
    timed_out = sum(1 for o, _ in results if not o.ok and any(a.error is not None and a.error.kind.value == "timeout"
                                                              for a in o.attempts))
    answered = sorted(t for o, t in results if o.ok)
    opened = [name for name, b in gw.pipeline.breakers.items() if b.state != "closed"]
    return {"answered": codes.pop("answered", 0), "timed_out": timed_out, "shed": codes.pop("overloaded", 0),
            "other_errors": dict(codes), "breaker_not_closed": opened, "wall_s": round(wall_s, 2),
            "p50_s": round(answered[len(answered) // 2], 3) if answered else None,
            "p99_s": round(answered[int(len(answered) * 0.99)], 3) if answered else None,
            "loop_lag_max_s": round(max(lags), 3) if lags else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1500)
    parser.add_argument("--max-in-flight", type=int, default=64)
    parser.add_argument("--max-wait-s", type=float, default=60.0)
    parser.add_argument("--timeout-s", type=float, default=3.0, help="each call's timeout (Deployment.timeout_s)")
    parser.add_argument("--latency-ms", type=float, default=50.0, help="the fake provider's time per answer")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    from llmlab import Admission

    proc, base_url = start_fake_provider("--latency-ms", str(args.latency_ms))
    try:
        out: dict = {"requests": args.requests, "timeout_s": args.timeout_s, "provider_latency_ms": args.latency_ms}
        for name, admission in (("no_admission", None),
                                (f"admission_{args.max_in_flight}",
                                 Admission(args.max_in_flight, max_waiting=args.requests, max_wait_s=args.max_wait_s))):
            gw = gateway(base_url, args.timeout_s, admission)
            for key, value in asyncio.run(burst(gw, args.requests, name)).items():
                out[f"{name}.{key}"] = value
    finally:
        proc.kill()
    emit(out, args.json, width=44)


if __name__ == "__main__":
    main()
