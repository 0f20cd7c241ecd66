"""A small scenario and trace files for the trace-replay tests.

One deployment ``m`` at a round price ($1 / $2 per million tokens, so costs are checkable by
hand), a fixed route, no incidents, ``m`` as the baseline; each test adds the tables it is about.
"""
from __future__ import annotations

from pathlib import Path

#: the columns the helpers' trace rows fill
HEADER = "timestamp,tenant,plan,prompt,prompt_tokens,output_tokens"


def scenario_file(tmp_path: Path, *, max_tokens: int = 60, traffic: str = "", tables: str = "") -> str:
    """The scenario's path; ``traffic`` adds lines to ``[traffic]``, ``tables`` whole tables."""
    path = tmp_path / "sc.toml"
    path.write_text(f"""
name = "trace-test"
[traffic]
max_tokens = {max_tokens}
{traffic}
[providers.m]
profile = "openai-gpt-4o-mini"
price = {{ input_per_1m = 1.0, output_per_1m = 2.0 }}
[gateway.router]
type = "fixed"
deployment = "m"
[outages]
incidents = false
[baseline]
model = "m"
{tables}
""", encoding="utf-8")
    return str(path)


def trace_file(tmp_path: Path, rows: list[str], header: str = HEADER) -> str:
    """A CSV trace of ``rows`` (cells as written) under ``header``."""
    path = tmp_path / "t.csv"
    path.write_text(header + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return str(path)
