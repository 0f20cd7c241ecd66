#!/usr/bin/env python3
"""How fast does the lab simulate?  The full pipeline vs a bare SimPy M/M/c loop, same arrivals.

    python benchmarks/sim_throughput.py --json            # 100k requests of b2b-saas
    python benchmarks/sim_throughput.py --requests 1000000 --json
    python benchmarks/sim_throughput.py --profile         # cProfile of the hot path

``sim_requests_per_s`` is the policy run of ``b2b-saas`` (plan routing, PII masking, exact +
semantic cache with the preset's embedder, named in the JSON, budgets, fallback chain,
outages, the ledger) with no per-request table kept.  The preset's tiny per-customer caps
are lifted (``--keep-caps`` keeps them): over a long run almost every request would otherwise be a cheap budget refusal, which
flatters the number; lifted, every request goes through every stage (the budget stage still
reserves and settles).  Traffic generation and the one-off embedding of the distinct queries
are timed separately (``traffic_s``, ``prime_s``).  ``--variants`` adds the same run without
the semantic cache, to show where the time goes.  ``bare_simpy_requests_per_s`` is
a plain M/M/c loop (``simpy.Resource``, exponential service) over the *same* arrival times in
the same process, so machine noise affects both alike.  Targets: ratio ≥ 0.3 and
≤ 60 s per million requests on one core.
"""
from __future__ import annotations

import argparse
import platform
import sys
import time

import numpy as np
from _report import emit


def bare_mmc(arrivals: np.ndarray, servers: int = 64, mean_service_s: float = 1.5, seed: int = 0) -> float:
    """Seconds to simulate an M/M/c queue over ``arrivals`` with SimPy, nothing else."""
    import simpy

    env = simpy.Environment()
    res = simpy.Resource(env, capacity=servers)
    service = np.random.default_rng(seed).exponential(mean_service_s, len(arrivals)).tolist()
    times = arrivals.tolist()

    def customer(k: int):
        with res.request() as req:
            yield req
            yield env.timeout(service[k])

    def source():
        for k, t in enumerate(times):
            delay = t - env.now
            if delay > 0:
                yield env.timeout(delay)
            env.process(customer(k))

    env.process(source())
    start = time.perf_counter()
    env.run()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--scenario", default="b2b-saas")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--profile", action="store_true", help="print the top of a cProfile of the policy run")
    parser.add_argument("--sort", default="tottime", help="cProfile sort key for --profile (tottime, cumulative)")
    parser.add_argument("--top", type=int, default=35, help="rows of the profile to print")
    parser.add_argument("--keep-caps", action="store_true", help="keep the preset's small monthly caps")
    parser.add_argument("--variants", action="store_true", help="also time the run without the semantic cache")
    args = parser.parse_args(argv)

    from llmlab.sim.outages import scenario_windows
    from llmlab.sim.run import _embed_model, make_traffic, run_once
    from llmlab.sim.scenario import load_scenario

    sc = load_scenario(args.scenario)
    if not args.keep_caps:
        sc = sc.with_overrides({f"traffic.tenants.{k}.monthly_budget_usd": 1e6 for k in range(len(sc.traffic.tenants))
                                if sc.traffic.tenants[k].monthly_budget_usd is not None})
    t0 = time.perf_counter()
    traffic = make_traffic(sc, requests=args.requests, seed=args.seed)
    traffic_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    embed = _embed_model(sc, traffic)
    prime_s = time.perf_counter() - t0
    windows = scenario_windows(sc, traffic.horizon_s, args.seed)
    n = len(traffic)

    if args.profile:
        import cProfile
        import pstats

        prof = cProfile.Profile()
        prof.enable()
        run_once(sc, traffic, seed=args.seed, windows=windows, keep_requests=False, embed_model=embed)
        prof.disable()
        pstats.Stats(prof, stream=sys.stderr).sort_stats(args.sort).print_stats(args.top)
        return 0

    t0 = time.perf_counter()
    rec, summary = run_once(sc, traffic, seed=args.seed, windows=windows, keep_requests=False, embed_model=embed)
    sim_s = time.perf_counter() - t0
    bare_s = bare_mmc(traffic.arrival_s)
    sim_rate = n / sim_s
    bare_rate = n / bare_s
    out = {
        "scenario": sc.name,
        "requests": n,
        "sim_seconds": round(sim_s, 3),
        "sim_requests_per_s": round(sim_rate, 1),
        "bare_simpy_requests_per_s": round(bare_rate, 1),
        "ratio": round(sim_rate / bare_rate, 3),
        "seconds_for_1M_requests": round(1e6 / sim_rate, 1),
        "traffic_s": round(traffic_s, 3),
        "traffic_seconds_for_1M_requests": round(traffic_s * 1e6 / n, 1),
        "prime_s": round(prime_s, 3),
        "distinct_queries": len(traffic.texts),
        "embedder": sc.gateway.cache.embedder if sc.gateway.cache.semantic else None,
        "cache_hit_rate": round(summary["cache_hit_rate"], 4),
        "python": platform.python_version(),
    }
    if args.variants:
        plain = sc.with_overrides({"gateway.cache.semantic": False})
        t0 = time.perf_counter()
        run_once(plain, traffic, seed=args.seed, windows=windows, keep_requests=False)
        out["sim_requests_per_s_without_semantic_cache"] = round(n / (time.perf_counter() - t0), 1)
    emit(out, args.json, width=34)
    return 0


if __name__ == "__main__":
    sys.exit(main())
