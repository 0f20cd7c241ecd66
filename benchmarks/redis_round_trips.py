#!/usr/bin/env python3
"""Requests/s of one process on Redis backends: round trips with the step lock let go vs held.

    python benchmarks/redis_round_trips.py --json          # needs redis-server on PATH

A gateway on Redis (exact cache, budgets, rate limits) serves ``--requests`` distinct questions
from ``--threads`` threads through ``complete()``, and the same from ``acomplete`` (its steps on
``--step-threads`` worker threads, on by default with Redis); the provider answers in ``--provider-ms``.  Each case
runs with every Redis command delayed by ``--rtt-ms`` (0, and a network's round trip, added in
the client: the server itself is on loopback) and twice: as llmlab does it (the step lock let go
while a command waits, ``llmlab.steplock.outside_step_lock``) and with the lock held across the
round trip, as before 2026-11-30.  The ratio of the two, measured in the same run, is the point.
"""
from __future__ import annotations

import argparse
import asyncio
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _redis import have_redis, redis_server  # noqa: E402
from _report import emit  # noqa: E402


class _Provider:
    """Answers every call after ``seconds`` (a sleep on the calling thread or on the loop)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def _answer(self):
        from llmlab import CallResult

        return CallResult("An answer from the provider, long enough to be cached.", 30, 20, self.seconds,
                          self.seconds / 2)

    def perform(self, effect):
        time.sleep(self.seconds)
        return self._answer()

    async def aperform(self, effect):
        await asyncio.sleep(self.seconds)
        return self._answer()


def _delay_commands(client, seconds: float) -> None:
    """Every command through ``client`` waits ``seconds`` first (its scripts' EVALSHA too)."""
    if seconds <= 0:
        return
    execute = client.execute_command

    def delayed(*args, **kw):
        time.sleep(seconds)
        return execute(*args, **kw)

    client.execute_command = delayed


@contextmanager
def _lock_held_across_round_trips(held: bool) -> Iterator[None]:
    """Put back the earlier behaviour (the lock held while Redis answers) for the control case."""
    from llmlab.backends import redis_link

    let_go = redis_link.outside_step_lock
    if held:
        redis_link.outside_step_lock = lambda fn, *args: fn(*args)
    try:
        yield
    finally:
        redis_link.outside_step_lock = let_go


def _gateway(port: int, tag: str, provider_s: float, rtt_s: float, step_threads: int):
    from llmlab import BudgetPolicy, Deployment, FixedRouter, Gateway, RateLimit
    from llmlab.backends import from_url

    backends = from_url(f"redis://127.0.0.1:{port}/0", prefix=tag, default_limit=RateLimit(rpm=10_000_000))
    _delay_commands(backends.link.client, rtt_s)
    gw = Gateway([Deployment("gpt-4o", "gpt-4o")], router=FixedRouter("gpt-4o"), fallbacks={},
                 driver=_Provider(provider_s), budget=BudgetPolicy(default_cap=1_000.0), step_threads=step_threads,
                 **backends.gateway_kwargs())
    return gw, backends


def _run(port: int, tag: str, args, rtt_s: float, mode: str) -> float:
    gw, backends = _gateway(port, tag, args.provider_ms / 1e3, rtt_s, args.step_threads)
    questions = [f"{tag} question number {i}" for i in range(args.requests)]
    try:
        start = time.perf_counter()
        if mode == "threads":
            with ThreadPoolExecutor(args.threads) as pool:
                outcomes = list(pool.map(lambda i: gw.complete(questions[i], tenant=f"t{i % 20}"),
                                         range(args.requests)))
        else:
            async def burst():
                return await asyncio.gather(*(gw.acomplete(q, tenant=f"t{i % 20}") for i, q in enumerate(questions)))
            outcomes = asyncio.run(burst())
        elapsed = time.perf_counter() - start
    finally:
        backends.close()
    if not all(o.ok for o in outcomes):
        raise RuntimeError(f"{tag}: {sum(not o.ok for o in outcomes)} requests failed")
    return args.requests / elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=16, help="caller threads for complete()")
    parser.add_argument("--step-threads", type=int, default=8, help="acomplete's step threads (Gateway(step_threads=N))")
    parser.add_argument("--provider-ms", type=float, default=20.0, help="how long the provider takes to answer")
    parser.add_argument("--rtt-ms", type=float, nargs="+", default=[0.0, 1.0],
                        help="delays added to every Redis command, one case each")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if not have_redis():
        print("redis-server and redis-cli are needed (make system-deps installs them)", file=sys.stderr)
        return 2

    out: dict = {"requests": args.requests, "threads": args.threads, "step_threads": args.step_threads,
                 "provider_ms": args.provider_ms,
                 "python": sys.version.split()[0]}
    with redis_server() as port:
        for rtt_ms in args.rtt_ms:
            for mode in ("threads", "async"):
                rates = {}
                for held in (False, True):
                    with _lock_held_across_round_trips(held):
                        rates[held] = _run(port, f"rt{rtt_ms:g}{mode}{int(held)}", args, rtt_ms / 1e3, mode)
                case = f"{'complete_threads' if mode == 'threads' else 'acomplete'}_rtt_{rtt_ms:g}ms"
                out[case] = {"requests_per_s": round(rates[False], 1),
                             "requests_per_s_lock_held": round(rates[True], 1),
                             "speedup": round(rates[False] / rates[True], 2)}
    emit(out, args.json, width=28)
    return 0


if __name__ == "__main__":
    sys.exit(main())
