"""How a replayed trace's cache hits are judged when the log carries no labels, or only some.

A false hit is a cached answer written for another intent.  A trace row with neither `intent`
nor `answer_key` had the intent "unknown" while its answer key was its prompt, so every hit of
an unlabelled trace — the same prompt served from the exact cache included — counted as false
(`false hits (of cache hits) 100.00 %`).  A row with an `answer_key` but no `intent` column
had the same fate, although the documented key starts with its intent.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from llmlab.sim import simulate

CALM = {"gateway.cache.embedder": "hashed", "gateway.cache.semantic": False, "outages.incidents": False,
        "outages.windows": []}


def _replay(path: Path):
    return simulate("b2b-saas", trace=str(path), overrides=CALM, seed=0, baseline=False)


def _rows(header: str, cells: list[str]) -> str:
    return header + "\n" + "".join(f"2025-03-04T09:00:{i * 5:02d}Z,{c}\n" for i, c in enumerate(cells))


@pytest.mark.parametrize("prompt", ["Where is my order 1234?", "a|b: a prompt with the key separator in it"])
def test_an_unlabelled_trace_repeating_a_prompt_has_exact_hits_that_are_not_false(tmp_path, prompt):
    path = tmp_path / "t.csv"
    path.write_text(_rows("timestamp,tenant,plan,prompt", [f'acme,paid,"{prompt}"'] * 3
                          + ["acme,paid,How do I reset my password?"]), encoding="utf-8")
    result = _replay(path)
    turns = result.turns
    assert (turns["cache"] == "exact_hit").sum() == 2
    assert result.summary["cache_hit_rate"] == pytest.approx(0.5)
    assert result.summary["false_hit_rate"] == 0.0 and not turns["false_hit"].any()
    assert not turns["wrong_answer"].any()


def test_a_row_with_an_answer_key_and_no_intent_takes_the_keys_intent(tmp_path):
    path = tmp_path / "t.jsonl"
    key = "ecom.order_status.en|order_id=1234"
    rows = [f'{{"timestamp": {1741078800 + 5 * i}, "tenant": "acme", "plan": "paid", '
            f'"prompt": "Where is my order 1234?", "answer_key": "{key}"}}' for i in range(3)]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    result = _replay(path)
    turns = result.turns
    assert (turns["cache"] == "exact_hit").sum() == 2
    assert result.summary["false_hit_rate"] == 0.0
    assert set(turns["intent"]) == {"ecom.order_status.en"}


def test_labelled_rows_still_judge_hits_by_their_intent(tmp_path):
    """A regression guard: a cached answer for another intent is still a false hit."""
    path = tmp_path / "t.csv"
    path.write_text(_rows("timestamp,tenant,plan,prompt,intent,answer_key",
                          ["acme,paid,Where is my order 1234?,ecom.order_status.en,ecom.order_status.en|order_id=1234",
                           "acme,paid,Where is my order 1234?,ecom.receipt_request.en,ecom.receipt_request.en|order_id=1234"]),
                    encoding="utf-8")
    turns = _replay(path).turns
    assert list(turns["cache"]) == ["miss", "exact_hit"]
    assert list(turns["false_hit"]) == [False, True]
