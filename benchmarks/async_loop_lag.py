#!/usr/bin/env python3
"""Does a Redis-backed gateway hold up the event loop?  Pipeline steps on the loop vs on threads.

    python benchmarks/async_loop_lag.py --json          # needs redis-server on PATH

A burst of ``--requests`` concurrent ``acomplete`` calls (a provider answering in 20 ms, Redis
exact cache, budgets and rate limits on a ``redis-server`` this script starts on loopback),
while a ticker task asks the loop to wake it every millisecond: how late it wakes is how long
other requests' streams would wait.  Then the same burst while Redis stalls for
``--stall-s`` (``DEBUG SLEEP``), as a Redis under a long command or a failover would.  Each
case runs with the steps on the loop (``step_threads=False``) and on threads (the default with
Redis backends).  Prints requests/s and the ticker's lag (p50, p99, max) for each.
"""
from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _redis import have_redis, redis_server  # noqa: E402
from _report import emit  # noqa: E402


class _Provider:
    """A provider that answers in 20 ms on the loop (the gateway's own work is what is measured)."""

    def perform(self, effect):  # pragma: no cover - async only
        raise RuntimeError("async only")

    async def aperform(self, effect):
        from llmlab import CallResult

        await asyncio.sleep(0.02)
        return CallResult("An answer from the provider, long enough to be cached.", 30, 20, 0.02, 0.01)


async def _burst(gw, n: int, stall: tuple[int, float] | None, tag: str) -> dict:
    from llmlab.testing.loop_lag import loop_lags

    async def burst():
        if stall is not None:
            port, seconds = stall
            threading.Timer(0.05, subprocess.run, (["redis-cli", "-p", str(port), "DEBUG", "SLEEP", str(seconds)],),
                            {"stdout": subprocess.DEVNULL}).start()
        start = time.perf_counter()
        outcomes = await asyncio.gather(*(gw.acomplete(f"{tag} question number {i}", tenant=f"t{i % 20}")
                                          for i in range(n)))
        return outcomes, time.perf_counter() - start

    lags, (outcomes, elapsed) = await loop_lags(burst, 0.001)
    lags.sort()
    return {"requests_per_s": round(n / elapsed, 1), "answered": sum(o.ok for o in outcomes),
            "loop_lag_p50_ms": round(lags[len(lags) // 2] * 1e3, 2),
            "loop_lag_p99_ms": round(lags[int(len(lags) * 0.99)] * 1e3, 2), "loop_lag_max_ms": round(lags[-1] * 1e3, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--stall-s", type=float, default=0.3, help="how long Redis stalls in the second case")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if not have_redis():
        print("redis-server and redis-cli are needed (make system-deps installs them)", file=sys.stderr)
        return 2

    from llmlab import BudgetPolicy, Deployment, FixedRouter, Gateway, RateLimit
    from llmlab.backends import from_url

    with redis_server() as port:
        out: dict = {"requests": args.requests, "stall_s": args.stall_s, "python": sys.version.split()[0]}
        for threads in (False, True):
            backends = from_url(f"redis://127.0.0.1:{port}/0", prefix=f"lag{int(threads)}",
                                default_limit=RateLimit(rpm=1_000_000), socket_timeout_s=max(1.0, 2 * args.stall_s))
            gw = Gateway([Deployment("gpt-4o", "gpt-4o")], router=FixedRouter("gpt-4o"), fallbacks={},
                         driver=_Provider(), budget=BudgetPolicy(default_cap=1_000.0), step_threads=threads,
                         **backends.gateway_kwargs())
            where = "threads" if threads else "loop"
            out[f"steps_on_{where}"] = asyncio.run(_burst(gw, args.requests, None, "a"))
            out[f"steps_on_{where}_redis_stalled"] = asyncio.run(_burst(gw, args.requests, (port, args.stall_s), "b"))
            backends.close()
    emit(out, args.json, width=32)
    return 0


if __name__ == "__main__":
    sys.exit(main())
