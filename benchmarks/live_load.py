"""Live gateway under load: requests/s and the latency llmlab *adds*, with and without Redis,
next to litellm's ``Router`` — all against the same fake OpenAI-compatible server (0 ms provider
latency, loopback, its own process) in the same run.

"Added" latency is end-to-end time minus the time spent inside ``litellm.acompletion`` (the
provider's own time as the client sees it: HTTP + server), measured per request, one request
at a time (no queueing).  The same definition is applied to ``Router.acompletion``.  Requests/s
is measured with ``--concurrency`` requests in flight.  Every llmlab request is a cache miss
(unique prompts) with a rate limit and a budget configured, so the Redis variant pays its real
round trips: rate-limit script, cache get, budget reserve, budget settle, cache put.

    python benchmarks/live_load.py --json [--requests 300] [--concurrency 32]

Prints one flat JSON object.  Machines are shared and noisy (±30 %): compare the columns of one
run, not numbers across runs.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("LITELLM_OFFLINE_MODE", "true")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: its sibling modules
from fake_provider_process import start_fake_provider  # noqa: E402



def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def ms(x: float | None) -> float | None:
    return None if x is None else round(x * 1000, 3)


class Inner:
    """Wraps ``litellm.acompletion`` to add up the time spent inside it (the provider's own time)."""

    def __init__(self, litellm) -> None:
        self.litellm = litellm
        self.original = litellm.acompletion
        self.total = 0.0

    async def __call__(self, *args, **kwargs):
        started = time.perf_counter()
        try:
            return await self.original(*args, **kwargs)
        finally:
            self.total += time.perf_counter() - started

    def install(self) -> "Inner":
        self.litellm.acompletion = self
        return self

    def remove(self) -> None:
        self.litellm.acompletion = self.original


def start_redis() -> tuple[subprocess.Popen | None, str | None, str | None]:
    binary = shutil.which("redis-server")
    if binary is None:
        return None, None, "redis-server not installed (apt-get install redis-server)"
    try:
        import redis  # noqa: F401
    except ImportError:
        return None, None, "the redis Python client is not installed (pip install 'llmlab[redis]')"
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    workdir = tempfile.mkdtemp(prefix="llmlab-bench-redis-")
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", workdir, "--logfile", os.path.join(workdir, "redis.log")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as c:
                c.sendall(b"PING\r\n")
                if c.recv(16).startswith(b"+PONG"):
                    return proc, f"redis://127.0.0.1:{port}/0", None
        except OSError:
            time.sleep(0.02)
    proc.kill()
    return None, None, "redis-server did not start within 5 s"


async def measure(call, n_latency: int, n_throughput: int, concurrency: int, inner: Inner, tag: str) -> dict:
    """Sequential requests for added latency, then concurrent ones for requests/s."""
    for i in range(20):  # warm up connections and caches
        await call(f"{tag} warm-up {i}")
    added, total = [], []
    for i in range(n_latency):
        inner.total = 0.0
        started = time.perf_counter()
        await call(f"{tag} latency {i}: where is my order?")
        elapsed = time.perf_counter() - started
        total.append(elapsed)
        added.append(elapsed - inner.total)
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with sem:
            await call(f"{tag} load {i}: where is my order?")

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n_throughput)))
    rps = n_throughput / (time.perf_counter() - started)
    return {"rps": round(rps, 1), "added_p50_ms": ms(statistics.median(added)),
            "added_p99_ms": ms(percentile(added, 99)), "total_p50_ms": ms(statistics.median(total))}


def build_gateway(base_url: str, **backends):
    from llmlab import BudgetPolicy, Deployment, FixedRouter, Gateway, RateLimit, RateLimiter

    if "rate_limiter" not in backends:
        backends["rate_limiter"] = RateLimiter(default=RateLimit(rpm=1e9, tpm=1e12))
    gw = Gateway([Deployment("gpt-4o", "openai/gpt-4o", {"api_base": base_url, "api_key": "sk-test"})],
                 router=FixedRouter("gpt-4o"), fallbacks={}, budget=BudgetPolicy(default_cap=1e9), **backends)
    gw.pipeline.ledger.keep = False
    return gw


async def hit_latency(gw, n: int = 200) -> float:
    await gw.acomplete("a question that is asked again and again")
    times = []
    for _ in range(n):
        started = time.perf_counter()
        out = await gw.acomplete("a question that is asked again and again")
        times.append(time.perf_counter() - started)
        assert out.cache.value == "exact_hit"
    return statistics.median(times)


async def run(args) -> dict:
    from llmlab.live import import_litellm

    t_import = time.perf_counter()
    litellm = import_litellm()
    import_s = time.perf_counter() - t_import
    out: dict = {"benchmark": "live_load", "provider_latency_ms": 0, "requests_latency": args.requests,
                 "requests_throughput": args.requests * 2, "concurrency": args.concurrency,
                 "latency_mode": "sequential, added = end-to-end minus time inside litellm.acompletion",
                 "python": platform.python_version(), "litellm_version": getattr(litellm, "__version__", None)}
    try:
        from importlib.metadata import version
        out["litellm_version"] = version("litellm")
    except Exception:
        pass
    provider, base_url = start_fake_provider()
    redis_proc, redis_url, redis_reason = start_redis()
    inner = Inner(litellm).install()
    n_lat, n_thr, conc = args.requests, args.requests * 2, args.concurrency
    messages = lambda text: [{"role": "user", "content": text}]  # noqa: E731
    try:
        # litellm.acompletion alone: the reference the others are compared with
        async def bare(text):
            return await litellm.acompletion(model="openai/gpt-4o", messages=messages(text), api_base=base_url,
                                             api_key="sk-test", num_retries=0, max_retries=0)

        r = await measure(bare, n_lat, n_thr, conc, inner, "bare")
        out.update({"litellm_acompletion_rps": r["rps"], "litellm_acompletion_p50_ms": r["total_p50_ms"]})

        gw = build_gateway(base_url)

        async def via_llmlab(text):
            o = await gw.acomplete(text)
            assert o.ok, o.error
            return o

        r = await measure(via_llmlab, n_lat, n_thr, conc, inner, "llmlab")
        out.update({"llmlab_rps": r["rps"], "llmlab_total_p50_ms": r["total_p50_ms"], "llmlab_added_p50_ms": r["added_p50_ms"],
                    "llmlab_added_p99_ms": r["added_p99_ms"], "llmlab_cache_hit_p50_ms": ms(await hit_latency(gw))})

        if redis_url is not None:
            from llmlab import RateLimit
            from llmlab.backends import from_url

            shared = from_url(redis_url, "bench", default_limit=RateLimit(rpm=1e9, tpm=1e12))
            # the default (steps on threads: the event loop never waits on Redis), then steps on the loop
            for name, threads in (("llmlab_redis", None), ("llmlab_redis_steps_on_loop", False)):
                rgw = build_gateway(base_url, step_threads=threads, **shared.gateway_kwargs())

                async def via_redis(text, rgw=rgw):
                    o = await rgw.acomplete(text)
                    assert o.ok, o.error
                    return o

                r = await measure(via_redis, n_lat, n_thr, conc, inner, name)
                out.update({f"{name}_rps": r["rps"], f"{name}_total_p50_ms": r["total_p50_ms"],
                            f"{name}_added_p50_ms": r["added_p50_ms"], f"{name}_added_p99_ms": r["added_p99_ms"],
                            f"{name}_cache_hit_p50_ms": ms(await hit_latency(rgw))})
            out["llmlab_redis_reason"] = None
            shared.close()
        else:
            out.update({"llmlab_redis_rps": None, "llmlab_redis_total_p50_ms": None, "llmlab_redis_added_p50_ms": None,
                        "llmlab_redis_added_p99_ms": None,
                        "llmlab_redis_cache_hit_p50_ms": None, "llmlab_redis_reason": redis_reason})

        router = litellm.Router(model_list=[{"model_name": "gpt-4o", "litellm_params": {
            "model": "openai/gpt-4o", "api_base": base_url, "api_key": "sk-test"}}], num_retries=0)

        async def via_router(text):
            return await router.acompletion(model="gpt-4o", messages=messages(text))

        r = await measure(via_router, n_lat, n_thr, conc, inner, "router")
        out.update({"router_rps": r["rps"], "router_total_p50_ms": r["total_p50_ms"], "router_added_p50_ms": r["added_p50_ms"],
                    "router_added_p99_ms": r["added_p99_ms"]})
    finally:
        inner.remove()
        provider.terminate()
        provider.wait(timeout=10)
        if redis_proc is not None:
            redis_proc.terminate()
            redis_proc.wait(timeout=10)
    out["litellm_import_s"] = round(import_s, 2)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object (the default output)")
    parser.add_argument("--requests", type=int, default=200, help="sequential requests per variant (x2 for load)")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight for the requests/s phase")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    result = asyncio.run(run(args))
    result["elapsed_s"] = round(time.perf_counter() - started, 1)
    print(json.dumps(result, indent=None if args.json else 2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
