"""Trace files the replayer used to misread: an unclosed quote, a field past the csv module's
limit, lone surrogates and wrongly typed values in JSON lines, a speedup that stretches or
crushes the replay.  Each must be a TraceError naming the file and row (CSV) or line (JSONL)
and the column before the run starts, never rows silently dropped or a traceback midway."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from llmlab.sim import simulate
from llmlab.sim.scenario import ScenarioError
from llmlab.sim.trace import TraceError, load_trace

TRACE = Path(__file__).resolve().parents[1] / "datasets" / "traces" / "example_trace.csv"
HEADER = "timestamp,tenant,plan,prompt,prompt_hash,prompt_tokens,output_tokens,intent,answer_key\n"
HASHED = {"gateway.cache.embedder": "hashed"}
MAX_FIELD_CHARS = 16 * 1024 * 1024  # the documented bound on a trace field (16 Mi characters)


def csv_row(minute: int, prompt: str = "hello") -> str:
    return f"2025-03-04T09:{minute:02d}:00Z,t1,paid,{prompt},,,,,\n"


def jsonl(path: Path, rows: list[dict]) -> Path:
    # ensure_ascii: a lone surrogate is written as the escape "\ud800", valid JSON
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def jrow(second: int = 0, **kw: object) -> dict:
    return {"timestamp": 1741078800 + second, "tenant": "t1", "plan": "paid", "prompt": "hi", **kw}


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "llmlab", "simulate", "--scenario", "b2b-saas",
                           "--set", "gateway.cache.embedder=hashed", "--no-baseline", *args],
                          check=False, capture_output=True, text=True, timeout=600)


def assert_refused(done: subprocess.CompletedProcess, *words: str) -> None:
    err = done.stderr.strip()
    assert done.returncode == 2, (done.returncode, err)
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith("llmlab simulate: error: traffic.trace: ") and all(w in err for w in words), err


# ----------------------------------------------------------------------------- CSV quoting
def test_an_unclosed_quote_is_refused_naming_its_row_instead_of_swallowing_the_rest(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text(HEADER + csv_row(0, '"unterminated,,,,,') + "".join(csv_row(m) for m in range(1, 9)),
                    encoding="utf-8")
    closed = r"^traffic\.trace: .*t\.csv, row 2 \(line 2\): a quoted field is never closed"
    with pytest.raises(ScenarioError, match=closed):
        simulate("b2b-saas", trace=str(path), overrides=HASHED, seed=0)


def test_an_unclosed_quote_far_down_names_its_row_and_line(tmp_path):
    # a legitimate multi-line quoted prompt first: the row number and the line number differ
    path = tmp_path / "t.csv"
    path.write_text(HEADER + csv_row(0, '"two\nlines"') + csv_row(1) + "\n" + csv_row(2, '"open') +
                    csv_row(3) + csv_row(4), encoding="utf-8")
    with pytest.raises(TraceError, match=r"t\.csv, row 4 \(line 6\): a quoted field is never closed"):
        load_trace(path)


def test_a_well_quoted_csv_still_reads_as_before(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text(HEADER + csv_row(0, '"hello, world"') + csv_row(1, '"say ""hi"""') + "\n" +
                    csv_row(2, 'he said "hi" there') + "2025-03-04T09:03:00Z,t1,paid,short row\n", encoding="utf-8")
    traffic = load_trace(path)
    assert len(traffic) == 4
    assert set(traffic.texts) == {'hello, world', 'say "hi"', 'he said "hi" there', 'short row'}


def test_text_after_a_closing_quote_is_refused_naming_the_row(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text(HEADER + csv_row(0) + csv_row(1, '"quoted"tail'), encoding="utf-8")
    with pytest.raises(TraceError, match=r"row 3 \(line 3\): malformed CSV"):
        load_trace(path)


# ----------------------------------------------------------------------------- CSV field size
def test_a_prompt_longer_than_the_csv_modules_default_limit_replays(tmp_path):
    limit = csv.field_size_limit()
    prompt = "where is my order? " * 7_400  # 140,600 characters: about 30k tokens
    assert len(prompt) > 131_072
    path = tmp_path / "t.csv"
    path.write_text(HEADER + csv_row(0, prompt) + csv_row(1), encoding="utf-8")
    r = simulate("b2b-saas", trace=str(path), overrides=HASHED, seed=0)
    assert r.summary["requests"] == 2
    assert csv.field_size_limit() == limit  # not left raised for the rest of the process


def test_a_field_past_the_documented_bound_is_refused_naming_the_row(tmp_path):
    limit = csv.field_size_limit()
    path = tmp_path / "t.csv"
    path.write_text(HEADER + csv_row(0) + csv_row(1, "x" * (MAX_FIELD_CHARS + 1)), encoding="utf-8")
    with pytest.raises(TraceError, match=r"row 3 \(line 3\): a field is longer than 16,777,216 characters"):
        load_trace(path)
    assert csv.field_size_limit() == limit


# ----------------------------------------------------------------------------- JSON lines: text columns
@pytest.mark.parametrize("column", ["tenant", "plan", "prompt", "intent", "answer_key"])
def test_a_lone_surrogate_is_refused_at_load_time_naming_line_and_column(tmp_path, column):
    path = jsonl(tmp_path / "t.jsonl", [jrow(0), jrow(5, **{column: "ok\ud800"})])
    assert "\\ud800" in path.read_text(encoding="utf-8")  # valid JSON, but not Unicode text
    with pytest.raises(TraceError, match=rf"t\.jsonl, line 2: {column} holds a lone surrogate \\ud800 at character 3"):
        load_trace(path)


def test_a_lone_surrogate_prompt_is_a_scenario_error_not_a_failure_downstream(tmp_path):
    path = jsonl(tmp_path / "t.jsonl", [jrow(0), jrow(5, prompt="\udfff")])
    with pytest.raises(ScenarioError, match=r"^traffic\.trace: .*line 2: prompt holds a lone surrogate"):
        simulate("b2b-saas", trace=str(path), overrides=HASHED, seed=0)


def test_a_surrogate_pair_is_one_character_and_replays(tmp_path):
    path = jsonl(tmp_path / "t.jsonl", [jrow(0, prompt="hi \U0001F600"), jrow(5, tenant="t\U0001F600")])
    assert "\\ud83d\\ude00" in path.read_text(encoding="utf-8")
    assert simulate("b2b-saas", trace=str(path), overrides=HASHED, seed=0).summary["requests"] == 2


@pytest.mark.parametrize("column, value, kind", [
    ("prompt", ["hi"], "a list"), ("prompt", 12345, "a number"), ("tenant", 7, "a number"),
    ("tenant", {"a": 1}, "an object"), ("plan", ["paid"], "a list"), ("plan", True, "a boolean"),
    ("intent", 5, "a number"), ("intent", {"a": 1}, "an object"), ("answer_key", 7, "a number"),
    ("prompt_hash", 5, "a number"),
])
def test_a_jsonl_text_column_of_another_type_is_refused(tmp_path, column, value, kind):
    path = jsonl(tmp_path / "t.jsonl", [jrow(0), jrow(1), jrow(2, **{column: value})])
    with pytest.raises(TraceError, match=rf"t\.jsonl, line 3: {column} must be a JSON string or null \(got {kind}"):
        load_trace(path)


def test_jsonl_not_logged_values_and_token_counts_read_as_before(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(jrow(0, intent=None, answer_key=None, prompt_tokens="12")) + "\n" +
                    json.dumps(jrow(1, output_tokens=1e2)) + "\n" +
                    '{"timestamp": 1741078802, "tenant": "t1", "plan": "paid", "prompt": "hi", "intent": NaN}\n',
                    encoding="utf-8")
    traffic = load_trace(path)
    assert len(traffic) == 3 and list(traffic.prompt_tokens[:1]) == [12] and traffic.answer_tokens[1] == 100


# ----------------------------------------------------------------------------- speedup
def short_trace(tmp_path: Path, span_s: float) -> Path:
    return jsonl(tmp_path / "t.jsonl", [jrow(0), {**jrow(0), "timestamp": 1741078800 + span_s}])


@pytest.mark.parametrize("speedup, words", [
    (1e-300, "stretches the trace's 3,576 s to"),
    (1e-4, "past the simulator's 366: use a speedup of at least 0.000114"),
])
def test_a_speedup_that_leaves_the_replayable_span_is_refused(speedup, words):
    with pytest.raises(TraceError, match=r"example_trace\.csv: traffic\.speedup .*" + words):
        load_trace(TRACE, speedup=speedup)


def test_speedups_at_the_documented_bounds_replay(tmp_path):
    arrival = load_trace(TRACE).arrival_s
    span = float(arrival[-1] - arrival[0])  # the example trace's real span: 3,576 s
    assert load_trace(TRACE, speedup=span / (366 * 86_400)).horizon_s == pytest.approx(366 * 86_400)
    # no floor: two rows 10 ms apart replayed a million times faster are still two requests
    assert len(load_trace(short_trace(tmp_path, 0.01), speedup=1e6)) == 2


@pytest.mark.parametrize("speedup", [0.0, -1.0, float("nan"), float("inf")])
def test_a_speedup_that_is_not_a_positive_number_names_the_field(speedup):
    with pytest.raises(TraceError, match=r"^traffic\.speedup must be a finite number above 0"):
        load_trace(TRACE, speedup=speedup)


# ----------------------------------------------------------------------------- the command line
def test_cli_refuses_an_unclosed_quote_and_a_lone_surrogate_in_one_line(tmp_path):
    quote = tmp_path / "quote.csv"
    quote.write_text(HEADER + csv_row(0, '"unterminated,,,,,') + "".join(csv_row(m) for m in range(1, 9)),
                     encoding="utf-8")
    assert_refused(cli("--trace", str(quote)), "quote.csv, row 2 (line 2): a quoted field is never closed")
    surrogate = jsonl(tmp_path / "sur.jsonl", [jrow(0), jrow(1, tenant="t\ud800")])
    assert_refused(cli("--trace", str(surrogate)), "sur.jsonl, line 2: tenant holds a lone surrogate")


def test_cli_refuses_a_speedup_that_stretches_the_trace_past_a_year():
    assert_refused(cli("--trace", str(TRACE), "--speedup", "1e-300"), "traffic.speedup 1e-300", "at least 0.000114")


def test_a_row_with_more_cells_than_the_header_is_refused_naming_it(tmp_path):
    # csv.DictReader dropped the extra cells: an unquoted comma cut the prompt to "hello" and
    # shifted " world" into prompt_hash, silently
    path = tmp_path / "t.csv"
    path.write_text("timestamp,tenant,plan,prompt,prompt_hash\n"
                    "2025-03-04T09:00:00Z,t1,paid,hi,\n"
                    "2025-03-04T09:01:00Z,t1,paid,hello, world,\n")
    with pytest.raises(TraceError, match=r"t\.csv, row 3: 6 cells where the header names 5: an unquoted comma"):
        load_trace(path)


def test_a_trace_path_that_is_a_folder_or_nowhere_says_so(tmp_path):
    with pytest.raises(ScenarioError, match=r"^traffic\.trace: .* is a folder: a trace is a CSV or JSONL file"):
        simulate("b2b-saas", overrides={**HASHED, "traffic.trace": str(tmp_path)})
    # a relative path is looked for here and beside the scenario: the message names both (it named the preset folder's)
    with pytest.raises(ScenarioError, match=r"^traffic\.trace: a trace file: 'nope\.csv' is neither in the current "
                                            r"folder \(.*\) nor beside the scenario \(.*presets\)"):
        simulate("b2b-saas", overrides={**HASHED, "traffic.trace": "nope.csv"})


@pytest.mark.parametrize("second_line, reason", [
    (b'{"timestamp": 1741078801,', r"invalid JSON: .* \(column \d+\)"),
    (b'[1, 2]', "expected a JSON object, got list"),
    (b'{"timestamp": 1741078801, "tenant": "t1", "plan": "paid", "prompt": "caf\xe9"}', r"not UTF-8 text \(byte 73 of the line\)"),
])
def test_a_bad_jsonl_line_is_reported_as_every_jsonl_dataset_reports_it(tmp_path, second_line, reason):
    """The trace reader shares the datasets' JSONL reader: the same line-numbered message (a byte
    that is not UTF-8 is found on its own line, with its place in the line), and still a TraceError."""
    from llmlab.catalogue import CatalogueFormatError
    path = tmp_path / "t.jsonl"
    path.write_bytes(json.dumps(jrow(0)).encode() + b"\n" + second_line + b"\n")
    with pytest.raises(TraceError, match=rf"t\.jsonl, line 2: {reason}") as caught:
        load_trace(path)
    assert isinstance(caught.value, CatalogueFormatError) and caught.value.line == 2
