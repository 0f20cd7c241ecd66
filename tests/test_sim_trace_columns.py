"""A trace's column names as real exports write them.

Spreadsheets and SQL clients capitalise headers (``Timestamp``) or put a space after each comma,
and providers call the answer's length ``completion_tokens``.  The replayer matched names
exactly: a capitalised required column was "missing", and a capitalised or provider-named
``output_tokens`` was an ignored extra column, so every row replayed the catalogue's typical
answer length (200 tokens for a log that said 5) and its cost with it — silently.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmlab.sim.trace import TraceError, load_trace


def _csv(tmp_path: Path, header: str, *rows: str) -> Path:
    path = tmp_path / "t.csv"
    path.write_text(header + "\n" + "".join(r + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.mark.parametrize("header", [
    "Timestamp,Tenant,Plan,Prompt,Prompt_Tokens,Output_Tokens",
    "timestamp, tenant, plan, prompt, prompt_tokens, output_tokens",
    "TIMESTAMP,TENANT,PLAN,PROMPT,PROMPT_TOKENS,COMPLETION_TOKENS",
    "timestamp,tenant,plan,prompt,prompt_tokens,completion_tokens",
])
def test_a_header_in_another_case_or_the_providers_names_reads_every_column(tmp_path, header):
    traffic = load_trace(_csv(tmp_path, header, "2025-03-04T09:00:00Z,acme,paid,hi,11,5"))
    assert traffic.tenants == ["acme"] and traffic.texts == ["hi"]
    assert traffic.prompt_tokens.tolist() == [11] and traffic.answer_tokens.tolist() == [5]  # not 200


def test_json_lines_keys_are_read_the_same_way(tmp_path):
    path = tmp_path / "t.jsonl"
    row = {"Timestamp": 1741078800, "Tenant": "acme", "plan": "paid", "prompt": "hi", "completion_tokens": 5,
           "notes": "an extra key"}
    path.write_text(json.dumps(row) + "\n", encoding="utf-8")
    traffic = load_trace(path)
    assert traffic.tenants == ["acme"] and traffic.answer_tokens.tolist() == [5]


@pytest.mark.parametrize("header, names", [
    ("timestamp,tenant,plan,prompt,output_tokens,completion_tokens", "'output_tokens' and 'completion_tokens'"),
    ("timestamp,tenant,plan,prompt,Prompt", "'prompt' and 'Prompt'"),
])
def test_two_names_for_one_column_are_refused_naming_both(tmp_path, header, names):
    cells = ",".join(["2025-03-04T09:00:00Z", "acme", "paid", "hi", "5"])
    with pytest.raises(TraceError, match=f"names the column '\\w+' twice \\({names}\\)"):
        load_trace(_csv(tmp_path, header, cells))


def test_a_missing_column_error_shows_the_header_it_read(tmp_path):
    with pytest.raises(TraceError, match=r"missing column\(s\) \['plan', 'tenant', 'timestamp'\]; the header names "
                                         r"'timestamp\\ttenant\\tplan\\tprompt'"):
        load_trace(_csv(tmp_path, "timestamp\ttenant\tplan\tprompt", "2025-03-04T09:00:00Z\tacme\tpaid\thi"))


def test_the_spaces_around_a_tenant_plan_intent_and_answer_key_are_not_part_of_them(tmp_path):
    """``acme, paid`` (a space after each comma) was tenant ' acme' on plan ' paid', which no
    cap or limit for 'paid' matched: the replay ran the tenant uncapped, without a word."""
    traffic = load_trace(_csv(tmp_path, "timestamp, tenant, plan, prompt, intent, answer_key",
                              "2025-03-04T09:00:00Z, acme , paid, hi, ecom.order_status.en, ecom.order_status.en|id=1"))
    assert traffic.tenants == ["acme"] and traffic.tenant_plans == ["paid"]
    assert traffic.intents == ["ecom.order_status.en"] and traffic.keys == ["ecom.order_status.en|id=1"]
    assert traffic.intent_category == ["faq"]  # found in the catalogue, not an unknown " ecom…"


def test_a_bad_row_after_a_multi_line_prompt_is_named_by_its_row_and_its_line(tmp_path):
    """Row 4 starts on line 6 (a prompt with a line break, then a blank line): an editor's line
    number is what finds it, and the message says which of tenant and plan is empty."""
    path = _csv(tmp_path, "timestamp,tenant,plan,prompt",
                '2025-03-04T09:00:00Z,acme,paid,"two\nlines"', "", "2025-03-04T09:00:01Z,acme,paid,fine",
                "2025-03-04T09:00:02Z,acme,,no plan")
    with pytest.raises(TraceError,
                       match=r"t\.csv, row 4 \(line 6\): plan is empty; every row needs a tenant and a plan"):
        load_trace(path)


@pytest.mark.parametrize("stamp", ["2025-03-04 09:00:00 UTC", "2025-03-04 09:00:00.000 UTC", "2025-03-04T09:00:00 GMT"])
def test_bigquerys_utc_suffix_is_read_as_utc(tmp_path, stamp):
    """BigQuery's CSV export writes a TIMESTAMP as '2025-03-04 09:00:00 UTC': every row was refused."""
    traffic = load_trace(_csv(tmp_path, "timestamp,tenant,plan,prompt", f"{stamp},acme,paid,hi"))
    assert traffic.epoch0 == 1741078800.0


@pytest.mark.parametrize("text", ['[{"timestamp": 1741078800, "tenant": "a", "plan": "paid", "prompt": "hi"},\n'
                                  ' {"timestamp": 1741078801, "tenant": "a", "plan": "paid", "prompt": "hi"}]\n',
                                  '\ufeff  [{"timestamp": 1741078800, "tenant": "a", "plan": "paid", "prompt": "hi"}]'])
def test_a_json_array_is_refused_as_what_it_is(tmp_path, text):
    """A '.json' export is usually one array: it read 'line 1: invalid JSON: Expecting value'."""
    path = tmp_path / "log.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(TraceError, match=r"log\.json: a JSON array; a JSON trace is JSON lines, one object per line "
                                         r"\(convert it with `jq -c '\.\[\]' log\.json > log\.jsonl`\)"):
        load_trace(path)


def test_a_plan_with_no_route_is_named_with_the_tenants_that_use_it(tmp_path):
    """A log's plan column may hold one stray value among thousands of rows: the error says
    which tenants carry it, not only which plan."""
    from llmlab.sim import ScenarioError, simulate
    from trace_scenarios import trace_file

    rows = [f"2025-03-04T09:00:0{k}Z,{tenant},{plan},Where is my order?,,"
            for k, (tenant, plan) in enumerate([("acme", "paid"), ("globex", "enterprise"), ("initech", "paid")])]
    with pytest.raises(ScenarioError) as err:
        simulate("b2b-saas", trace=trace_file(tmp_path, rows), baseline=False)
    assert err.value.field == "traffic.trace"
    assert "no route for 'enterprise' (plan 'enterprise': 1 tenant, globex)" in str(err.value)
