"""``llmlab demo`` as a learner reads it: comparable latencies and plain-language totals."""
from __future__ import annotations

import pytest

pytest.importorskip("litellm")


def _rows(out: str) -> list[list[str]]:
    """The table's cells, cut at the columns of its dashed rule (prompts contain spaces)."""
    import re

    lines = out.splitlines()
    rule = next(i for i, line in enumerate(lines) if line.startswith("--"))
    spans = [m.span() for m in re.finditer(r"-+", lines[rule])]
    rows = []
    for line in lines[rule + 1:]:
        if not line.strip():
            break
        rows.append([line[a:b + 2].strip() for a, b in spans])
    return rows


def test_demo_rows_compare_like_with_like_and_totals_read_as_sentences(capsys):
    from llmlab.demo import main

    assert main([]) == 0
    out = capsys.readouterr().out
    rows = _rows(out)
    assert len(rows) == 12
    first, other = float(rows[0][-1].replace(",", "")), float(rows[3][-1].replace(",", ""))
    assert rows[0][6] == rows[3][6] == "model"  # both answered by gpt-4o-mini, both cache misses
    # litellm's first-call set-up (0.2-0.5 s) is not charged to request 1
    assert first <= 3 * other + 60, (first, other)
    assert "exact cache: 8 entries, 2 hits of 11 lookups (18%)" in out
    assert "claude-sonnet-4-20250514 open" in out and "{" not in out  # no Python dict reprs
